"""Every error class, mapped from both APIs, through the real Agno classes and SDKs."""

from __future__ import annotations

import pytest

from llm_ledger import (
    AllModelsFailedError,
    AuthenticationError,
    ContentFilterError,
    ContextLengthError,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    TimeoutError,
    execution_context,
)
from llm_ledger.executor import InvalidRequestError, ProviderSettings, RetryPolicy
from llm_ledger.executor.errors import ProviderConnectionError, ProviderError
from tests.conftest import API_KEYS
from tests.fakes import (
    BadRequest,
    Behaviour,
    ContentFiltered,
    ContextOverflow,
    Disconnect,
    FakeProviderServer,
    NotFound,
    Overloaded,
    RateLimited,
    Reply,
    Stall,
    Unauthorized,
    refused_base_url,
)
from tests.fakes import ServerError as ServerFails

PROVIDERS = ["openai", "openrouter", "groq", "anthropic"]
MESSAGES = [LLMMessage(role="user", content="hello")]

CASES: list[tuple[str, Behaviour, type[ProviderError], int | None]] = [
    ("rate limit", RateLimited(retry_after=0.02), RateLimitError, 429),
    ("bad key", Unauthorized(echo_key=True), AuthenticationError, 401),
    ("server error", ServerFails(status=500), ServerError, 500),
    ("bad gateway", ServerFails(status=502), ServerError, 502),
    ("context overflow", ContextOverflow(), ContextLengthError, 400),
    ("invalid request", BadRequest("temperature must be <= 2"), InvalidRequestError, 400),
    ("unknown model", NotFound(), ModelNotFoundError, 404),
    ("content filtered", ContentFiltered(), ContentFilterError, None),
    ("stall past the timeout", Stall(seconds=60), TimeoutError, None),
    ("connection dropped", Disconnect(), ProviderConnectionError, None),
]


async def _single_failure(
    executor: LLMExecutor,
) -> ProviderError:
    with (
        execution_context(tenant_id="acme", agent_id="support", session_id="s-1"),
        pytest.raises(AllModelsFailedError) as raised,
    ):
        await executor.generate(MESSAGES)
    error = raised.value.last_error
    assert error is not None
    return error


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("case", "behaviour", "expected", "status"), CASES, ids=[c[0] for c in CASES])
async def test_provider_failure_is_classified(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    provider: str,
    case: str,
    behaviour: Behaviour,
    expected: type[ProviderError],
    status: int | None,
) -> None:
    server.script("m-1", behaviour)
    # The attempt timeout must not decide the other cases: an answer on a busy machine can take over a
    # second. Against the 60 s stall it is still the only way the call can end early.
    executor = LLMExecutor(
        f"{provider}/m-1", max_retries=0, attempt_timeout_seconds=5.0, sink=sink, providers=providers
    )
    error = await _single_failure(executor)

    assert type(error) is expected, f"{case} on {provider}: {error!r}"
    assert error.status_code == status
    assert error.model == f"{provider}/m-1" and error.provider == provider
    failed = [e for e in sink.events if e.event_type == "AttemptFailed"]
    assert [e.payload.error_type for e in failed] == [expected.error_type]
    if status is not None:
        assert failed[0].payload.request_id, "the provider's request id is recorded"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retry_after_is_read_from_the_response(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, provider: str
) -> None:
    server.script("m-1", RateLimited(retry_after=0.25))
    executor = LLMExecutor(f"{provider}/m-1", max_retries=0, sink=sink, providers=providers)
    error = await _single_failure(executor)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == pytest.approx(0.25)


async def test_anthropic_overloaded_is_a_rate_limit(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("m-1", Overloaded())
    executor = LLMExecutor("anthropic/m-1", max_retries=0, sink=sink, providers=providers)
    error = await _single_failure(executor)
    assert isinstance(error, RateLimitError) and error.status_code == 529


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refused_connection_is_a_connection_error(sink: InMemorySink, provider: str) -> None:
    base_url = refused_base_url("" if provider in ("anthropic", "groq") else "/v1")
    executor = LLMExecutor(
        f"{provider}/m-1",
        max_retries=0,
        sink=sink,
        providers={provider: ProviderSettings(api_key=API_KEYS[provider], base_url=base_url)},
    )
    error = await _single_failure(executor)
    assert isinstance(error, ProviderConnectionError)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_key_echoed_by_the_provider_never_reaches_an_event_or_an_error(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, provider: str
) -> None:
    server.script("m-1", Unauthorized(echo_key=True))
    executor = LLMExecutor(f"{provider}/m-1", max_retries=0, sink=sink, providers=providers, capture="full")
    error = await _single_failure(executor)

    key = API_KEYS[provider]
    assert server.requests_for("m-1")[0].api_key == key, "the provider did receive the key"
    assert key not in str(error) and key not in repr(error.args)
    assert all(key not in str(e.__cause__) for e in [error] if e.__cause__ is not None)
    for event in sink.events:
        assert key not in event.model_dump_json(), event.event_type
        assert key[:12] not in event.model_dump_json(), "no recognisable prefix of the key either"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_usage_is_a_token_usage_for_every_provider(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, provider: str
) -> None:
    server.script("m-1", Reply(text="four words of answer", input_tokens=11, output_tokens=4))
    executor = LLMExecutor(f"{provider}/m-1", sink=sink, providers=providers)
    with execution_context(tenant_id="acme"):
        response = await executor.generate(MESSAGES)
    assert response.content == "four words of answer"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (
        11,
        4,
        15,
    )
    assert response.request_id is not None
    assert response.finish_reason in ("stop", "end_turn")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_usage_is_a_token_usage_for_every_provider(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, provider: str
) -> None:
    server.script("m-1", Reply(text="streamed answer in parts", input_tokens=9, output_tokens=5))
    executor = LLMExecutor(f"{provider}/m-1", sink=sink, providers=providers)
    with execution_context(tenant_id="acme"):
        chunks = [chunk async for chunk in executor.generate_stream(MESSAGES)]
    assert "".join(chunks) == "streamed answer in parts"
    succeeded = sink.events[-1]
    assert succeeded.event_type == "ExecutionSucceeded"
    usage = succeeded.payload.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, 5)


async def test_a_missing_api_key_is_a_recorded_authentication_failure_that_falls_back(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    without_groq_key = {**providers, "groq": ProviderSettings(base_url=providers["groq"].base_url)}
    executor = LLMExecutor(
        "groq/m-1",
        fallback_models=["openai/m-2"],
        sink=sink,
        providers=without_groq_key,
        retry_policy=RetryPolicy(base_delay=0.001),
    )
    with execution_context(tenant_id="acme"):
        response = await executor.generate(MESSAGES)
    assert response.model == "openai/m-2"
    assert server.requests_for("m-1") == [], "no request is sent without a key"
    failed = next(e for e in sink.events if e.event_type == "AttemptFailed")
    assert failed.payload.error_type == "authentication"
    assert "GROQ_API_KEY" in failed.payload.message


async def test_agno_does_not_print_the_failures_the_executor_records(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server.script("m-1", Unauthorized(echo_key=True))
    executor = LLMExecutor("openai/m-1", fallback_models=["openai/m-2"], sink=sink, providers=providers)
    with execution_context(tenant_id="acme"):
        await executor.generate(MESSAGES)
    out, err = capfd.readouterr()
    assert API_KEYS["openai"] not in out + err
    assert "401" not in out + err


async def test_credentials_and_endpoints_come_from_the_providers_usual_variables(
    server: FakeProviderServer, sink: InMemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-000001")
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment-02")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    executor = LLMExecutor("openai/env-a", fallback_models=["anthropic/env-b"], sink=sink)
    server.script("env-a", Unauthorized(echo_key=False))
    with execution_context(tenant_id="acme"):
        response = await executor.generate(MESSAGES)
    assert response.model == "anthropic/env-b"
    assert server.requests_for("env-a")[0].api_key == "sk-from-the-environment-000001"
    assert server.requests_for("env-b")[0].api_key == "sk-ant-from-the-environment-02"


async def test_arguments_win_over_the_environment(
    server: FakeProviderServer, sink: InMemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk_from_the_environment_00003")
    monkeypatch.setenv("GROQ_BASE_URL", refused_base_url(""))
    executor = LLMExecutor(
        "groq/arg-a",
        sink=sink,
        providers={"groq": ProviderSettings(api_key="gsk_from_the_arguments_000004", base_url=server.groq_base_url)},
    )
    with execution_context(tenant_id="acme"):
        await executor.generate(MESSAGES)
    assert server.requests_for("arg-a")[0].api_key == "gsk_from_the_arguments_000004"
