"""The retry and fallback layers Agno would add around an ``AuditedModel`` are refused, when the run's
model loop starts and before any event, with an error naming what to change; so is what the executor
cannot carry (a provider's built-in tool, media, a native response format) and a bad chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from agno.agent import Agent
from agno.models.fallback import FallbackConfig
from agno.run.agent import RunErrorEvent
from agno.run.base import RunStatus

from llm_ledger.agno import AuditedModel
from llm_ledger.executor import ConfigurationError, InMemorySink
from tests.agno.test_audited_model import TENANT, audited, executions, get_time, get_weather

FALLBACK = "mock/agno-tools"


async def _refused(agent: Agent, sink: InMemorySink, *words: str) -> None:
    output = await agent.arun("What is the weather?", session_state=dict(TENANT))
    assert output.status == RunStatus.error
    message = str(output.content)
    for word in words:
        assert word in message, message
    assert len(sink) == 0, "refused before any execution"


async def test_retries_on_the_audited_model_are_refused() -> None:
    sink = InMemorySink()
    model = audited(sink=sink)
    model.retries = 2
    agent = Agent(name="planner", model=model, tools=[get_weather, get_time])
    await _refused(agent, sink, "AuditedModel.retries=2", "max_retries=")


@pytest.mark.parametrize("build", ["init", "from_config"])
def test_retries_given_to_the_audited_model_are_refused_naming_max_retries(build: str, tmp_path: Path) -> None:
    # As the README writes it, AuditedModel(retries=...): not a TypeError of the executor's constructor.
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[pipeline.generation]\nmodel = "{FALLBACK}"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"AuditedModel\(retries=2\).*max_retries="):
        if build == "init":
            AuditedModel(FALLBACK, retries=2)
        else:
            AuditedModel.from_config(config, step_name="generation", retries=2)


async def test_agno_fallback_models_around_an_audited_model_are_refused() -> None:
    sink = InMemorySink()
    agent = Agent(
        name="planner",
        model=audited(sink=sink),
        fallback_models=[AuditedModel(FALLBACK, sink=sink)],
        tools=[get_weather, get_time],
    )
    await _refused(agent, sink, "Agent 'planner'", "fallback_models=[...]")


async def test_an_agno_fallback_config_is_refused() -> None:
    sink = InMemorySink()
    agent = Agent(
        name="planner",
        model=audited(sink=sink),
        fallback_config=FallbackConfig(on_rate_limit=[AuditedModel(FALLBACK, sink=sink)]),
        tools=[get_weather, get_time],
    )
    await _refused(agent, sink, "fallback_config=")


async def test_run_level_retries_are_refused() -> None:
    sink = InMemorySink()
    agent = Agent(
        name="planner", model=audited(sink=sink), retries=1, delay_between_retries=0, tools=[get_weather, get_time]
    )
    await _refused(agent, sink, "retries=1", "set retries=0")


def test_the_refusals_hold_in_sync_and_streamed_runs() -> None:
    sink = InMemorySink()
    agent = Agent(
        name="planner",
        model=audited(sink=sink),
        fallback_models=[AuditedModel(FALLBACK, sink=sink)],
        tools=[get_weather, get_time],
    )
    output = agent.run("hi", session_state=dict(TENANT))
    assert output.status == RunStatus.error and "fallback" in str(output.content)
    events = agent.run("hi", session_state=dict(TENANT), stream=True)
    errors = [event for event in events if isinstance(event, RunErrorEvent)]
    assert errors and "fallback" in str(errors[0].content)
    assert len(sink) == 0


async def test_a_model_without_agno_layers_runs() -> None:
    """The control of the tests above: the same agent, without the refused layer, runs."""
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])
    output = await agent.arun("What is the weather?", session_state=dict(TENANT))
    assert output.status == RunStatus.completed
    assert len(executions(sink)) == 2


async def test_a_providers_builtin_tool_is_refused() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[{"type": "web_search_preview"}])
    output = await agent.arun("hi", session_state=dict(TENANT))
    assert output.status == RunStatus.error
    assert "tools[0] is not a function tool ('web_search_preview')" in str(output.content)
    assert len(sink) == 0


async def test_media_is_refused() -> None:
    from agno.media import Image

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink))
    output = await agent.arun("hi", images=[Image(url="https://example.com/a.png")], session_state=dict(TENANT))
    assert output.status == RunStatus.error
    assert "carries media" in str(output.content)


def test_bad_chains_are_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        AuditedModel(["mock/a", "mock/b"], fallback_models=["mock/c"])
    with pytest.raises(ConfigurationError, match="non-empty list"):
        AuditedModel([])
    config = tmp_path / "pipeline.toml"
    config.write_text('[pipeline.generation]\nmodel = "mock/a"\nfallback_models = ["mock/b"]\n')
    with pytest.raises(ConfigurationError):
        AuditedModel.from_config(config, step_name="missing")
    model = AuditedModel.from_config(config, step_name="generation", sink=InMemorySink())
    assert model.id == "mock/a" and model.executor.fallback_models == ("mock/b",)


async def test_an_audited_model_as_the_fallback_of_an_agno_model_is_refused() -> None:
    """Agno would call it only after its own model failed, a failure the ledger never saw."""
    from agno.models.openai import OpenAIChat

    sink = InMemorySink()
    unreachable = OpenAIChat(id="gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    agent = Agent(name="planner", model=unreachable, fallback_models=[audited(sink=sink)])
    await _refused(agent, sink, "fallback_models=[...]")


async def test_a_run_whose_agent_is_not_on_the_stack_is_said_so(caplog: pytest.LogCaptureFixture) -> None:
    """The refusals read the Agent from Agno's frames; when a run's model loop is driven without them
    (here: by hand, with the run's output), the refusals cannot be checked, and a warning says so."""
    from agno.models.message import Message
    from agno.run.agent import RunOutput

    import llm_ledger.agno.model as model_module

    model_module._warned_unseen_owner = False
    sink = InMemorySink()
    model = audited(["mock/agno-tools"], sink=sink)
    run = RunOutput(run_id="r-1", session_id="s-1", session_state={"tenant_id": "acme"})

    with caplog.at_level("WARNING", logger="llm_ledger.agno"):
        await model.aresponse([Message(role="user", content="hi")], run_response=run)
        await model.aresponse([Message(role="user", content="hi")], run_response=run)

    warnings = [record for record in caplog.records if "not on the call stack" in record.getMessage()]
    assert len(warnings) == 1, "once"
    assert {execution[0].tenant_id for execution in executions(sink)} == {"acme"}, "the run's state is still read"
