"""A completion and a stream end the same way: retries, give-up, deadlines, cancellation, internal errors.

Each behaviour is run on both calls (``generate`` and ``generate_stream``), against the fake provider
server, and the events (types and the payload values that decide the route) are spelled out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal
from uuid import UUID

import pytest

from llm_ledger import (
    AllModelsFailedError,
    DeadlineExceededError,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    execution_context,
    verify_chain,
)
from llm_ledger.events import Event, EventDraft
from llm_ledger.executor import ProviderSettings, RetryPolicy
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ProviderError, StreamInterruptedError
from llm_ledger.executor.policy import Decision
from llm_ledger.executor.routing import ModelRoute
from llm_ledger.executor.tracing import AttemptTrace, ExecutionTrace, SpanRef
from tests.fakes import Behaviour, BrokenStream, FakeProviderServer, RateLimited, Reply, Stall
from tests.fakes import ServerError as ServerFails

MESSAGES = [LLMMessage(role="user", content="refund please")]
Call = Literal["generate", "stream"]
CALLS: list[Call] = ["generate", "stream"]


async def _call(executor: LLMExecutor, call: Call) -> str:
    """The answer's text, by a completion or by reading a stream to its end."""
    with execution_context(tenant_id="acme", session_id="s"):
        if call == "generate":
            return (await executor.generate(MESSAGES)).content
        return "".join([chunk async for chunk in executor.generate_stream(MESSAGES)])


def _route(events: list[Event]) -> list[tuple[Any, ...]]:
    """Each event's type and the payload values that say what happened and what came next."""
    rows: list[tuple[Any, ...]] = []
    for event in events:
        p: Any = event.payload
        match event.event_type:
            case "AttemptStarted":
                rows.append((event.event_type, p.attempt, p.model, p.fallback_index, p.retry))
            case "AttemptFailed":
                decision = (p.next_action, p.backoff_seconds)
                rows.append((event.event_type, p.attempt, p.error_type, *decision, p.chunks_delivered))
            case "AttemptSucceeded":
                rows.append((event.event_type, p.attempt, p.model))
            case "FallbackTriggered":
                rows.append((event.event_type, p.from_index, p.to_index, p.reason))
            case "ExecutionSucceeded":
                rows.append((event.event_type, p.attempts, p.fallback_used))
            case "ExecutionFailed":
                rows.append((event.event_type, p.error_type, p.attempts, p.last_model, p.chunks_delivered))
            case _:
                rows.append((event.event_type,))
    return rows


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition was never met")


async def _cancelled_when(call: Awaitable[str], condition: Callable[[], bool]) -> None:
    task = asyncio.ensure_future(call)
    await _until(condition)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class _RetryPastTheDeadline(RetryPolicy):
    """Retries after a pause longer than the time left, which the default policy never chooses. With the
    deadline of 2 s below: the first attempt (a 429 from the local fake) has 2 s to fail, far from what a
    busy machine takes (a 0.3 s deadline was reached during the attempt once, with both cores busy)."""

    def decide(self, error: ProviderError, **_: Any) -> Decision:
        return Decision("retry", 2.2)


class _Tracer:
    """Records what the executor tells the tracing seam, in order. ``fail_on_success`` breaks it."""

    trace_id: str | None = None
    span_id: str | None = None

    def __init__(self, fail_on_success: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on_success = fail_on_success

    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> ExecutionTrace:
        self.calls.append(("start", operation))
        return self

    def attempt(
        self, number: int, client: ModelClient, fallback_index: int, retry: int, params: CallParams, stream: bool
    ) -> AttemptTrace:
        self.calls.append(("attempt", number, fallback_index, retry, stream))
        return _AttemptTracer(self)

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self.calls.append(("fallback", reason))

    def tool(self, tool_name: str, tool_call_id: str | None, context: ExecutionContext, parent: SpanRef | None) -> Any:
        raise AssertionError("no tool runs in these tests")

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> Any:
        raise AssertionError("no agent runs in these tests")

    def turn(self, name: str, context: ExecutionContext) -> Any:
        raise AssertionError("no turns in these tests")

    def succeeded(self) -> None:
        self.calls.append(("succeeded",))

    def failed(self, error_type: str, message: str) -> None:
        self.calls.append(("failed", error_type))


class _AttemptTracer:
    trace_id: str | None = None
    span_id: str | None = None

    def __init__(self, tracer: _Tracer) -> None:
        self.tracer = tracer

    def succeeded(self, completion: Completion, ttfc_ms: float | None) -> None:
        self.tracer.calls.append(("attempt succeeded", ttfc_ms is not None))
        if self.tracer.fail_on_success:
            raise RuntimeError("the tracer broke")

    def failed(self, error: ProviderError, error_type: str) -> None:
        self.tracer.calls.append(("attempt failed", error_type))


@pytest.mark.parametrize("call", CALLS)
async def test_a_retry_waits_its_backoff_then_asks_the_same_model_again(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, call: Call
) -> None:
    server.script("a", RateLimited(retry_after=0.05), Reply(text="the answer"))
    executor = LLMExecutor(
        "openai/a", max_retries=1, sink=sink, providers=providers, retry_policy=RetryPolicy(base_delay=0.001)
    )
    assert await _call(executor, call) == "the answer"
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "rate_limit", "retry", 0.05, 0),
        ("AttemptStarted", 2, "openai/a", 0, 1),
        ("AttemptSucceeded", 2, "openai/a"),
        ("ExecutionSucceeded", 2, False),
    ]


@pytest.mark.parametrize("call", CALLS)
async def test_a_chain_where_every_model_fails_raises_all_models_failed(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    fast_retries: RetryPolicy,
    call: Call,
) -> None:
    server.default("a", ServerFails(status=500))
    server.default("b", ServerFails(status=503))
    executor = LLMExecutor(
        "openai/a", fallback_models=["anthropic/b"], max_retries=0, sink=sink, providers=providers,
        retry_policy=fast_retries,
    )  # fmt: skip
    with pytest.raises(AllModelsFailedError) as raised:
        await _call(executor, call)
    assert raised.value.message.startswith("all 2 model(s) failed after 2 attempt(s): ")
    assert [e.error_type for e in raised.value.errors] == ["server_error", "server_error"]
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "server_error", "fall_back", None, 0),
        ("FallbackTriggered", 0, 1, "server_error"),
        ("AttemptStarted", 2, "anthropic/b", 1, 0),
        ("AttemptFailed", 2, "server_error", "fail", None, 0),
        ("ExecutionFailed", "all_models_failed", 2, "anthropic/b", 0),
    ]
    assert verify_chain(sink.events).ok


@pytest.mark.parametrize("call", CALLS)
async def test_the_deadline_cuts_the_attempt_that_runs_into_it(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    fast_retries: RetryPolicy,
    call: Call,
) -> None:
    server.default("a", Stall(seconds=5))
    server.default("b", Stall(seconds=5))
    executor = LLMExecutor(
        "openai/a", fallback_models=["anthropic/b"], max_retries=0, timeout_seconds=1.2,
        attempt_timeout_seconds=0.7, sink=sink, providers=providers, retry_policy=fast_retries,
    )  # fmt: skip
    with pytest.raises(DeadlineExceededError) as raised:
        await _call(executor, call)
    assert raised.value.message == "execution deadline of 1.2 s reached during the attempt"
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "timeout", "fall_back", None, 0),
        ("FallbackTriggered", 0, 1, "timeout"),
        ("AttemptStarted", 2, "anthropic/b", 1, 0),
        ("AttemptFailed", 2, "deadline_exceeded", "fail", None, 0),
        ("ExecutionFailed", "deadline_exceeded", 2, "anthropic/b", 0),
    ]
    second: Any = sink.events[4].payload
    assert second.timeout_seconds < 0.7, "the time left, not the per-attempt limit, bounds it"


@pytest.mark.parametrize("call", CALLS)
async def test_a_deadline_reached_during_a_backoff_ends_the_execution_without_another_attempt(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, call: Call
) -> None:
    server.default("a", RateLimited(retry_after=0))
    executor = LLMExecutor(
        "openai/a", timeout_seconds=2.0, sink=sink, providers=providers, retry_policy=_RetryPastTheDeadline()
    )
    with pytest.raises(DeadlineExceededError) as raised:
        await _call(executor, call)
    assert (raised.value.message, raised.value.model) == ("execution deadline of 2 s reached", "openai/a")
    assert len(server.requests_for("a")) == 1
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "rate_limit", "retry", 2.2, 0),
        ("ExecutionFailed", "deadline_exceeded", 1, "openai/a", 0),
    ]


@pytest.mark.parametrize("call", CALLS)
async def test_a_call_cancelled_during_a_backoff_records_the_execution_as_cancelled(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, call: Call
) -> None:
    server.script("a", RateLimited(retry_after=30))
    tracer = _Tracer()
    executor = LLMExecutor("openai/a", max_retries=1, sink=sink, providers=providers, tracer=tracer)
    await _cancelled_when(_call(executor, call), lambda: len(sink.events) == 3)
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "rate_limit", "retry", 30.0, 0),
        ("ExecutionFailed", "cancelled", 1, "openai/a", 0),
    ]
    operation = "generate" if call == "generate" else "generate_stream"
    assert tracer.calls == [
        ("start", operation),
        ("attempt", 1, 0, 0, call == "stream"),
        ("attempt failed", "rate_limit"),
        ("failed", "cancelled"),
    ]
    assert verify_chain(sink.events).ok


@pytest.mark.parametrize("call", CALLS)
async def test_a_call_cancelled_during_an_attempt_records_the_attempt_and_the_execution_as_cancelled(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, call: Call
) -> None:
    server.script("a", Stall(seconds=5))
    tracer = _Tracer()
    executor = LLMExecutor("openai/a", sink=sink, providers=providers, tracer=tracer)
    await _cancelled_when(_call(executor, call), lambda: bool(server.requests_for("a")))
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "cancelled", "fail", None, 0),
        ("ExecutionFailed", "cancelled", 1, "openai/a", 0),
    ]
    assert tracer.calls[2:] == [("attempt failed", "cancelled"), ("failed", "cancelled")]


async def test_a_stream_closed_after_a_chunk_records_the_attempt_and_the_execution_as_cancelled(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("a", Reply(text="one two three four", chunks=4, chunk_delay=0.01))
    tracer = _Tracer()
    executor = LLMExecutor("openai/a", fallback_models=["openai/b"], sink=sink, providers=providers, tracer=tracer)
    with execution_context(tenant_id="acme"):
        stream = executor.generate_stream(MESSAGES)
        await anext(stream)
        await anext(stream)
        await stream.aclose()
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "cancelled", "fail", None, 2),
        ("ExecutionFailed", "cancelled", 1, "openai/a", 2),
    ]
    assert tracer.calls[2:] == [("attempt failed", "cancelled"), ("failed", "cancelled")]
    assert server.requests_for("b") == []


@pytest.mark.parametrize("call", CALLS)
async def test_an_error_of_the_executor_itself_is_recorded_as_internal_and_raised(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, call: Call
) -> None:
    server.script("a", Reply(text="one two three", chunks=3))
    tracer = _Tracer(fail_on_success=True)
    executor = LLMExecutor("openai/a", fallback_models=["openai/b"], sink=sink, providers=providers, tracer=tracer)
    with pytest.raises(RuntimeError, match="the tracer broke"):
        await _call(executor, call)
    chunks = 3 if call == "stream" else 0
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptSucceeded", 1, "openai/a"),
        ("ExecutionFailed", "internal_error", 1, None, chunks),
    ]
    failed: Any = sink.events[-1].payload
    assert failed.message == "RuntimeError: the tracer broke"
    assert tracer.calls[-2:] == [("attempt succeeded", call == "stream"), ("failed", "internal_error")]
    assert server.requests_for("b") == []


class _SlowDurableSink(InMemorySink):
    """A ``DurableSink`` whose events become durable a little after they are asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, asyncio.Future[None]]] = []

    def durable(self, event: EventDraft) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, future.set_result, None)
        self.asked.append((event.event_type, future))
        return future


_DEADLINE_IN_A_BACKOFF: dict[str, Any] = {"timeout_seconds": 2.0, "retry_policy": _RetryPastTheDeadline()}


@pytest.mark.parametrize(
    ("call", "behaviour", "ending", "settings"),
    [
        ("generate", Reply(text="one two three"), "ExecutionSucceeded", {}),
        ("stream", Reply(text="one two three"), "ExecutionSucceeded", {}),
        ("generate", ServerFails(status=500), "ExecutionFailed", {}),
        ("stream", ServerFails(status=500), "ExecutionFailed", {}),
        ("stream", BrokenStream(after_chunks=2, text="one two three four"), "ExecutionFailed", {}),
        ("generate", RateLimited(retry_after=0), "ExecutionFailed", _DEADLINE_IN_A_BACKOFF),
        # The base did not wait here, unlike every other ending of a completion or a stream.
        ("stream", RateLimited(retry_after=0), "ExecutionFailed", _DEADLINE_IN_A_BACKOFF),
    ],
)
async def test_a_call_returns_or_raises_once_its_last_event_is_durable(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    fast_retries: RetryPolicy,
    call: Call,
    behaviour: Behaviour,
    ending: str,
    settings: dict[str, Any],
) -> None:
    server.default("a", behaviour)
    sink = _SlowDurableSink()
    settings = {"max_retries": 0, "retry_policy": fast_retries, **settings}
    executor = LLMExecutor("openai/a", sink=sink, providers=providers, **settings)
    with contextlib.suppress(ProviderError):
        await _call(executor, call)
    assert [(event_type, future.done()) for event_type, future in sink.asked] == [(ending, True)]
    assert sink.events[-1].event_type == ending


class _ObservedStream:
    """A model client whose stream says how far it got and when it was closed: ``yielded`` counts the
    chunks it has handed out, ``closed_with`` is the number of events in the sink when it was closed
    (None while open). After its ``chunks`` it waits for ever (``hang``) or ends."""

    server_address: str | None = None
    server_port: int | None = None
    secrets: tuple[str, ...] = ()

    def __init__(self, route: ModelRoute, sink: InMemorySink, chunks: Sequence[str], hang: bool) -> None:
        self.route = route
        self.sink = sink
        self.chunks = chunks
        self.hang = hang
        self.yielded = 0
        self.closed_with: int | None = None

    async def complete(self, messages: Sequence[LLMMessage], params: CallParams) -> Completion:
        raise NotImplementedError

    async def stream(
        self, messages: Sequence[LLMMessage], params: CallParams, result: Completion
    ) -> AsyncIterator[str]:
        try:
            for chunk in self.chunks:
                await asyncio.sleep(0)
                self.yielded += 1
                yield chunk
            if self.hang:
                await asyncio.Event().wait()
        finally:
            self.closed_with = len(self.sink.events)


def _observed(
    sink: InMemorySink, chunks: Sequence[str], hang: bool = False
) -> tuple[LLMExecutor, list[_ObservedStream]]:
    made: list[_ObservedStream] = []

    def factory(route: ModelRoute, _providers: Any) -> ModelClient:
        made.append(_ObservedStream(route, sink, chunks, hang))
        return made[-1]

    return LLMExecutor("openai/a", fallback_models=["openai/b"], sink=sink, client_factory=factory), made


async def test_a_stream_passes_each_chunk_on_before_asking_the_model_for_the_next() -> None:
    sink = InMemorySink()
    executor, clients = _observed(sink, chunks=["chunk 0 ", "chunk 1 ", "chunk 2 "])
    seen: list[tuple[str, int]] = []
    with execution_context(tenant_id="acme"):
        async for chunk in executor.generate_stream(MESSAGES):
            seen.append((chunk, clients[0].yielded))
    assert seen == [("chunk 0 ", 1), ("chunk 1 ", 2), ("chunk 2 ", 3)]
    assert sink.events[-1].event_type == "ExecutionSucceeded"


async def _closed_by_aclose(stream: AsyncGenerator[str, None]) -> None:
    await anext(stream)
    await stream.aclose()


async def _closed_by_leaving_async_for(stream: AsyncGenerator[str, None]) -> None:
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break


async def _cancelled_awaiting_a_chunk(stream: AsyncGenerator[str, None]) -> None:
    await anext(stream)
    task = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("close", [_closed_by_aclose, _closed_by_leaving_async_for, _cancelled_awaiting_a_chunk])
async def test_a_stream_the_caller_leaves_closes_the_model_stream_before_recording_the_cancel(
    close: Callable[[AsyncGenerator[str, None]], Awaitable[None]],
) -> None:
    sink = InMemorySink()
    executor, clients = _observed(sink, chunks=["chunk 0 "], hang=True)
    with execution_context(tenant_id="acme"):
        await close(executor.generate_stream(MESSAGES))
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, "cancelled", "fail", None, 1),
        ("ExecutionFailed", "cancelled", 1, "openai/a", 1),
    ]
    assert [client.closed_with for client in clients] == [2, None], "closed at once, before the cancel is recorded"


async def test_an_empty_chunk_from_the_model_neither_reaches_the_caller_nor_counts_as_delivered() -> None:
    sink = InMemorySink()
    executor, _ = _observed(sink, chunks=["", "one ", "", "two"], hang=True)
    with execution_context(tenant_id="acme"):
        stream = executor.generate_stream(MESSAGES)
        assert [await anext(stream), await anext(stream)] == ["one ", "two"]
        await stream.aclose()
    assert _route(sink.events)[-1] == ("ExecutionFailed", "cancelled", 1, "openai/a", 2)


async def test_a_stream_interrupted_after_a_chunk_raises_with_the_model_error_as_its_cause(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.script("a", BrokenStream(after_chunks=2, text="one two three four"))
    executor = LLMExecutor(
        "openai/a", fallback_models=["openai/b"], max_retries=1, sink=sink, providers=providers,
        retry_policy=fast_retries,
    )  # fmt: skip
    with pytest.raises(StreamInterruptedError) as raised:
        await _call(executor, "stream")
    assert raised.value.__cause__ is raised.value.cause
    assert raised.value.chunks_delivered == 2
    error_type = raised.value.cause.error_type
    assert _route(sink.events) == [
        ("ExecutionStarted",),
        ("AttemptStarted", 1, "openai/a", 0, 0),
        ("AttemptFailed", 1, error_type, "fail", None, 2),
        ("ExecutionFailed", "stream_interrupted", 1, "openai/a", 2),
    ]
    assert server.requests_for("b") == []
