"""Pipeline configuration: overrides resolved per call; bad files named with the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_ledger import ConfigurationError, InMemorySink, LLMExecutor, LLMMessage, PipelineConfig, execution_context
from llm_ledger.executor import ProviderSettings
from tests.fakes import FakeProviderServer

PIPELINE = """
[defaults]
max_retries = 1
timeout_seconds = 30

[pipeline.generation]
model = "groq/llama-3.3-70b"
fallback_models = ["openrouter/claude-step-or"]
temperature = 0.4

[pipeline.enforcement]
model = "groq/llama-enforce"

[agents.support_premium.pipeline.generation]
model = "openai/gpt-agent"
max_tokens = 900

[tenants.acme.agents.support_premium.pipeline.generation]
model = "openai/gpt-tenant-agent"
"""


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE)
    return path


def test_the_chain_is_resolved_tenant_agent_then_agent_then_step(pipeline_file: Path) -> None:
    config = PipelineConfig.load(pipeline_file)
    step = config.resolve("generation")
    assert step.chain == ("groq/llama-3.3-70b", "openrouter/claude-step-or")
    assert (step.max_retries, step.timeout_seconds, step.temperature) == (1, 30.0, 0.4)

    agent = config.resolve("generation", tenant_id="globex", agent_id="support_premium")
    assert agent.chain == ("openai/gpt-agent", "openrouter/claude-step-or"), "fallbacks are inherited"
    assert agent.max_tokens == 900

    tenant_agent = config.resolve("generation", tenant_id="acme", agent_id="support_premium")
    assert tenant_agent.model == "openai/gpt-tenant-agent"
    assert tenant_agent.max_tokens == 900, "keys merge across levels"
    assert config.resolve("generation", tenant_id="acme", agent_id="basic").model == "groq/llama-3.3-70b"


async def test_an_executor_from_configuration_calls_the_model_of_the_current_context(
    pipeline_file: Path, server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    executor = LLMExecutor.from_config(pipeline_file, "generation", sink=sink, providers=providers)
    messages = [LLMMessage(role="user", content="hi")]
    answered = []
    for tenant, agent in [("acme", "support_premium"), ("globex", "support_premium"), ("acme", "basic")]:
        with execution_context(tenant_id=tenant, agent_id=agent):
            answered.append((await executor.generate(messages)).model)
    assert answered == ["openai/gpt-tenant-agent", "openai/gpt-agent", "groq/llama-3.3-70b"]
    assert [r.model for r in server.requests] == ["gpt-tenant-agent", "gpt-agent", "llama-3.3-70b"]
    assert server.requests[2].body["temperature"] == 0.4
    assert server.requests[0].body.get("max_tokens", server.requests[0].body.get("max_completion_tokens")) == 900
    assert {e.step for e in sink.events} == {"generation"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pipeline.generation\nmodel = 'x'", "not valid TOML"),
        ("[pipeline.generation]\nmodle = 'openai/x'", "unknown key 'pipeline.generation.modle'"),
        ("[pipelines.generation]\nmodel = 'openai/x'", "unknown key 'pipelines'"),
        ("[pipeline.generation]\nmodel = 'azure/x'", "unknown provider 'azure'"),
        ("[pipeline.generation]\nmodel = 'openai/'", "empty or padded model id"),
        (
            "[pipeline.generation]\nmodel = 'openai/x'\nmax_retries = 'two'",
            "'pipeline.generation.max_retries' must be int",
        ),
        ("[pipeline.generation]\nmodel = 'openai/x'\ncapture = 'everything'", "capture' must be one of"),
        ("[pipeline.generation]\nfallback_models = ['openai/x']", "pipeline.generation has no 'model'"),
        (
            "[pipeline.generation]\nmodel = 'openai/x'\n[agents.a.pipeline.generaton]\nmodel = 'openai/y'",
            "agents.a.pipeline.generaton overrides a step",
        ),
        (
            "[pipeline.generation]\nmodel = 'openai/x'\n[tenants.t.agents.a.pipline.generation]\nmodel = 'openai/y'",
            "unknown key 'tenants.t.agents.a.pipline'",
        ),
    ],
)
def test_bad_configuration_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as raised:
        PipelineConfig.load(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_a_missing_file_and_a_missing_step_are_clear_errors(tmp_path: Path, pipeline_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        PipelineConfig.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigurationError, match=r"no \[pipeline.context_extraction\]"):
        LLMExecutor.from_config(pipeline_file, "context_extraction")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("bedrock/claude", "unknown provider 'bedrock'"),
        ("openai/", "empty"),
        ("gpt-4.1", "no provider prefix"),
        ("", "non-empty"),
    ],
)
def test_bad_model_strings_fail_at_construction(model: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LLMExecutor(model)
    with pytest.raises(ConfigurationError, match=message):
        LLMExecutor("openai/gpt-4.1", fallback_models=[model])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pipeline.generation]\nmodel = 'openai/x'\ntimeout_seconds = nan", "'pipeline.generation.timeout_seconds'"),
        ("[pipeline.generation]\nmodel = 'openai/x'\ntimeout_seconds = inf", "'pipeline.generation.timeout_seconds'"),
        ("[pipeline.generation]\nmodel = 'openai/x'\ntemperature = nan", "'pipeline.generation.temperature'"),
        ("[pipeline.generation]\nmodel = 'openai/x'\ntemperature = -inf", "'pipeline.generation.temperature'"),
        (
            "[defaults]\nattempt_timeout_seconds = inf\n[pipeline.generation]\nmodel = 'openai/x'",
            "'defaults.attempt_timeout_seconds'",
        ),
        (
            "[pipeline.generation]\nmodel = 'openai/x'\n[agents.a.pipeline.generation]\ntemperature = nan",
            "'agents.a.pipeline.generation.temperature'",
        ),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "numbers.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as raised:
        PipelineConfig.load(path)
    assert str(path) in str(raised.value)
    assert f"{expected} must be a finite number" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pipeline.generation.model]\nid = 'openai/x'", "'pipeline.generation.model' must be str"),
        ("[pipeline.generation]\nmodel = { id = 'openai/x' }", "'pipeline.generation.model' must be str"),
        ("[pipeline.generation]\nmodel = 'openai/x'\n[pipeline.generation.max_retries]", "max_retries' must be int"),
        (
            "[pipeline.generation]\nmodel = 'openai/x'\nfallback_models = [['openai/y']]",
            "'pipeline.generation.fallback_models' must list strings",
        ),
        ("[[pipeline.generation]]\nmodel = 'openai/x'", "'pipeline.generation' must be a table, not list"),
        ("pipeline = 'openai/x'", "'pipeline' must be a table, not str"),
        ("[pipeline]\ngeneration = 'openai/x'", "'pipeline.generation' must be a table, not str"),
        ("[pipeline.generation]\nmodel = 'openai/x'\n[tenants.t]\nagents = 3", "'tenants.t.agents' must be a table"),
        ("[pipeline.generation]\nmodel = 'openai/x'\ncapture = 'bogus'", "'pipeline.generation.capture' must be"),
        ("[defaults]\ncapture = 'bogus'\n[pipeline.generation]\nmodel = 'openai/x'", "'defaults.capture' must be"),
    ],
)
def test_a_table_where_a_value_belongs_and_a_value_where_a_table_belongs_are_named(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "nesting.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as raised:
        LLMExecutor.from_config(path, "generation")
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_a_directory_is_not_a_configuration_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        LLMExecutor.from_config(tmp_path, "generation")
    assert str(raised.value) == f"{tmp_path}: is a directory, not a pipeline configuration file"


def test_an_unreadable_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a usable path"):
        PipelineConfig.load(f"{tmp_path}/pipe\0line.toml")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match=f"{blocker}/pipeline.toml: cannot read the pipeline configuration"):
        PipelineConfig.load(blocker / "pipeline.toml")
