"""Bad input is refused at the door; what a provider sends is made storable: a stream is always whole.

Each case runs the real executor against the fake provider server, records through the real buffered
writer into the real store (PostgreSQL as the least-privilege writer login, and SQLite), and has
``audit verify`` check the stream. Before, each of these ended with the caller told "success" while the
writer set one event of the stream aside in ``rejected.jsonl`` and ``audit verify`` called the honest
stream BROKEN (a position gap).
"""

from __future__ import annotations

import math
import uuid

import pytest

from llm_ledger import AllModelsFailedError, InMemorySink, LLMExecutor, LLMMessage, execution_context
from llm_ledger.events.storable import MAX_CAPTURED_BYTES, MAX_RETRY_AFTER_SECONDS
from llm_ledger.executor import (
    ConfigurationError,
    InvalidInputError,
    InvalidRequestError,
    ProviderSettings,
    RetryPolicy,
)
from tests.digests import keyed
from tests.executor.ledger import Ledger
from tests.fakes import FakeProviderServer, RateLimited, Reply
from tests.fakes import ServerError as ServerFails
from tests.revealed import made_here, revealed_event

HELLO = [LLMMessage(role="user", content="hello")]


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def _assert_whole(ledger: Ledger, tenant: str, execution_id: uuid.UUID, count: int) -> None:
    stats = ledger.settle()
    assert stats.rejected == 0 and ledger.rejected() == "", ledger.rejected()
    events = ledger.stream(execution_id)
    assert [e.stream_position for e in events] == list(range(count))
    report = ledger.verify(tenant)
    assert report.ok, [str(f) for f in report.findings]


# --- refused at the door -----------------------------------------------------------------------------


def _refused(executor: LLMExecutor, messages: list[LLMMessage], server: FakeProviderServer, **kwargs: object) -> str:
    sink = executor.sink
    assert isinstance(sink, InMemorySink)
    with execution_context(tenant_id="acme"), pytest.raises(InvalidInputError) as raised:
        executor.generate_stream(messages, **kwargs)  # type: ignore[arg-type]
    assert sink.events == [], "no event exists"
    assert server.requests == [], "no provider was called"
    assert isinstance(raised.value, InvalidRequestError) and isinstance(raised.value, ValueError)
    return str(raised.value)


@pytest.mark.parametrize("capture", ["none", "hash", "full"])
async def test_a_lone_surrogate_in_a_message_is_refused_before_any_event(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, capture: str
) -> None:
    executor = LLMExecutor("openai/m-1", sink=sink, providers=providers, capture=capture)
    messages = [LLMMessage(role="system", content="rules"), LLMMessage(role="user", content="hi \ud83d there")]
    with execution_context(tenant_id="acme"), pytest.raises(InvalidInputError) as raised:
        await executor.generate(messages)
    assert raised.value.field == "messages[1].content"
    assert "lone surrogate (U+D83D) at index 3" in str(raised.value)
    assert sink.events == [] and server.requests == []


async def test_a_nul_in_captured_content_is_refused(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    executor = LLMExecutor("openai/m-1", sink=sink, providers=providers, capture="full")
    message = _refused(executor, [LLMMessage(role="user", content="a\x00b")], server)
    assert message.startswith("messages[0].content contains a NUL character (U+0000) at index 1")


async def test_a_nul_in_content_that_is_only_digested_is_recorded_whole(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger
) -> None:
    tenant = _tenant()
    executor = LLMExecutor("openai/m-1", sink=ledger.writer, providers=providers, capture="hash")
    with execution_context(tenant_id=tenant):
        response = await executor.generate([LLMMessage(role="user", content="a\x00b")])
    _assert_whole(ledger, tenant, response.execution_id, 4)


async def test_captured_content_over_what_an_event_holds_is_refused(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    executor = LLMExecutor("openai/m-1", sink=sink, providers=providers, capture="full")
    big = LLMMessage(role="user", content="x" * (MAX_CAPTURED_BYTES + 1))
    message = _refused(executor, [big], server)
    assert f"one event holds at most {MAX_CAPTURED_BYTES}" in message and "capture 'hash'" in message


async def test_content_just_under_the_limit_is_recorded_whole(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger
) -> None:
    tenant = _tenant()
    server.default("m-1", Reply(text="ok"))
    executor = LLMExecutor("openai/m-1", sink=ledger.writer, providers=providers, capture="full")
    with execution_context(tenant_id=tenant):
        response = await executor.generate([LLMMessage(role="user", content="é" * (MAX_CAPTURED_BYTES // 2 - 64))])
    _assert_whole(ledger, tenant, response.execution_id, 4)


@pytest.mark.parametrize(
    ("context", "field"),
    [({"tenant_id": "ac\x00me"}, "execution context tenant_id"), ({"tenant_id": "t", "session_id": "s\udc00"},
     "execution context session_id"), ({"tenant_id": "t", "agent_id": "a" * 1025}, "execution context agent_id")],
)  # fmt: skip
async def test_an_unstorable_context_is_refused(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    context: dict[str, str],
    field: str,
) -> None:
    executor = LLMExecutor("openai/m-1", sink=sink, providers=providers)
    with execution_context(**context), pytest.raises(InvalidInputError) as raised:
        await executor.generate(HELLO)
    assert raised.value.field == field
    assert sink.events == [] and server.requests == []


@pytest.mark.parametrize(
    ("options", "field"),
    [({"stop_sequences": ["ok", "st\x00p"]}, "stop_sequences[1]"), ({"temperature": math.nan}, "temperature"),
     ({"temperature": math.inf}, "temperature"), ({"temperature": 10**400}, "temperature"),
     ({"max_tokens": 10**30}, "max_tokens"), ({"stop_sequences": "###"}, "stop_sequences")],
)  # fmt: skip
async def test_unstorable_parameters_are_refused(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    options: dict[str, object],
    field: str,
) -> None:
    executor = LLMExecutor("openai/m-1", sink=sink, providers=providers)
    _refused(executor, HELLO, server, **options)
    with execution_context(tenant_id="acme"), pytest.raises(InvalidInputError) as raised:
        await executor.generate(HELLO, **options)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_a_nul_in_a_model_string_is_a_configuration_error(providers: dict[str, ProviderSettings]) -> None:
    with pytest.raises(ConfigurationError, match="model string 1 contains a NUL character"):
        LLMExecutor("openai/m-1", fallback_models=["openai/m\x00-2"], providers=providers)


@pytest.mark.parametrize("value", [10**20, -1, "3"])
def test_a_retry_count_beyond_exact_integers_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_retries must be an integer from 0 to 2"):
        LLMExecutor("mock/m", max_retries=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_non_finite_timeout_is_a_configuration_error(value: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout_seconds must be a finite number"):
        LLMExecutor("mock/m", timeout_seconds=value)
    with pytest.raises(ConfigurationError, match="attempt_timeout_seconds must be a finite number"):
        LLMExecutor("mock/m", attempt_timeout_seconds=value)


# --- provider-supplied values made storable -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "recorded"),
    [("inf", MAX_RETRY_AFTER_SECONDS), ("1e400", MAX_RETRY_AFTER_SECONDS), ("31536000", MAX_RETRY_AFTER_SECONDS),
     ("nan", None), ("-5", 0), ("-inf", 0)],
)  # fmt: skip
async def test_a_retry_after_no_event_can_hold_is_clamped_and_the_stream_is_whole(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    ledger: Ledger,
    header: str,
    recorded: float | None,
) -> None:
    tenant = _tenant()
    server.script("m-1", RateLimited(retry_after_header=header))
    server.default("m-2", Reply(text="from the fallback"))
    executor = LLMExecutor(
        "openai/m-1",
        fallback_models=["openai/m-2"],
        max_retries=1,
        sink=ledger.writer,
        providers=providers,
        retry_policy=RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=1.0),
    )
    with execution_context(tenant_id=tenant):
        response = await executor.generate(HELLO)
    assert response.content == "from the fallback" or recorded in (None, 0)
    ledger.settle()
    events = ledger.stream(response.execution_id)
    failed = next(e for e in events if e.event_type == "AttemptFailed")
    assert failed.payload.retry_after_seconds == recorded
    _assert_whole(ledger, tenant, response.execution_id, len(events))


async def test_a_usage_of_ten_to_the_thirty_tokens_is_recorded_as_unknown(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger
) -> None:
    tenant = _tenant()
    server.default("m-1", Reply(text="ok", input_tokens=10**30, output_tokens=3))
    executor = LLMExecutor("openai/m-1", sink=ledger.writer, providers=providers)
    with execution_context(tenant_id=tenant):
        response = await executor.generate(HELLO)
    _assert_whole(ledger, tenant, response.execution_id, 4)
    assert response.usage is None
    assert all(getattr(e.payload, "usage", None) is None for e in ledger.stream(response.execution_id))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_provider_ids_and_names_with_nul_or_megabytes_are_made_storable(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger, provider: str
) -> None:
    tenant = _tenant()
    server.default(
        "m-1",
        Reply(text="ok", response_model="gpt\x00-evil", response_id="id-" + "x" * 2_000_000),
    )
    executor = LLMExecutor(f"{provider}/m-1", sink=ledger.writer, providers=providers)
    with execution_context(tenant_id=tenant):
        response = await executor.generate(HELLO)
    _assert_whole(ledger, tenant, response.execution_id, 4)
    succeeded = next(e for e in ledger.stream(response.execution_id) if e.event_type == "AttemptSucceeded")
    payload = succeeded.payload
    assert payload.response_model == "gpt\ufffd-evil"
    assert payload.response_id is not None
    assert len(payload.response_id) == 1024 and payload.response_id.endswith("…[truncated]")


async def test_a_megabyte_error_page_is_cut_and_the_stream_is_whole(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger
) -> None:
    tenant = _tenant()
    server.default("m-1", ServerFails(status=502, message="<html>" + "x" * 2_000_000))
    executor = LLMExecutor("openai/m-1", max_retries=0, sink=ledger.writer, providers=providers)
    with execution_context(tenant_id=tenant), pytest.raises(AllModelsFailedError):
        await executor.generate(HELLO)
    ledger.settle()
    (execution_id,) = {e.stream_id for e in ledger.store.read_tenant(tenant)}
    _assert_whole(ledger, tenant, execution_id, 4)
    failed = ledger.stream(execution_id)[2]
    assert failed.payload.message.startswith("<html>xxx") and len(failed.payload.message) == 8192  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "kept"),
    [("answer \ud800 with a lone surrogate", "answer \ufffd with a lone surrogate"), ("a\x00b", "a\ufffdb"),
     ("y" * (MAX_CAPTURED_BYTES + 10), None)],
    ids=["surrogate", "nul", "over-an-event"],
)  # fmt: skip
async def test_an_answer_captured_in_full_is_made_storable(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger, text: str, kept: str | None
) -> None:
    tenant = _tenant()
    server.default("m-1", Reply(text=text))
    executor = LLMExecutor("openai/m-1", sink=ledger.writer, providers=providers, capture="full")
    with execution_context(tenant_id=tenant):
        response = await executor.generate(HELLO)
    assert response.content == text, "the caller gets the answer as it came"
    _assert_whole(ledger, tenant, response.execution_id, 4)
    final = revealed_event(ledger.stream(response.execution_id)[-1], made_here)
    output = final.payload.output  # type: ignore[union-attr]
    assert output.text == kept and output.chars == len(text) and output.sha256 is None
    assert output.digest == keyed(tenant, text.encode("utf-8", "surrogatepass")), "keyed, over the text as it came"


def test_a_chain_longer_than_an_event_holds_is_a_configuration_error() -> None:
    """2,000 fallbacks of 1,000 characters made an ExecutionStarted event of 2 MB: the writer set it aside."""
    with pytest.raises(ConfigurationError, match="a chain has 17 models"):
        LLMExecutor("mock/m", fallback_models=[f"mock/m{i}" for i in range(16)])


async def test_the_largest_call_the_door_admits_is_recorded_whole(ledger: Ledger) -> None:
    """Every identifier at its longest, every character escaped in JSON (6 bytes), the captured messages at
    their limit: the ExecutionStarted event still fits (RESERVED_EVENT_BYTES holds)."""
    long = "\x01" * 1024
    chain = [f"mock/{i:02d}" + "\x01" * 1016 for i in range(16)]
    tenant = _tenant()
    executor = LLMExecutor(chain[0], fallback_models=chain[1:], sink=ledger.writer, capture="full")
    content = "\x01" * (MAX_CAPTURED_BYTES // 6 - 64)
    with execution_context(tenant_id=tenant, agent_id=long, session_id=long, turn_id=long):
        response = await executor.generate([LLMMessage(role="user", content=content)], stop_sequences=[long] * 16)
    _assert_whole(ledger, tenant, response.execution_id, 4)
