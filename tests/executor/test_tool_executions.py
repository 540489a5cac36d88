"""Recording a tool's execution (``record_tool_call``, ``run_tool_call``): its own stream of events, linked to
the call and the execution that asked, inheriting that execution's context, capture policy, scrubber and
span; failures, cancellations and results without a JSON form; the wait for durability on ``async with``;
and many tenants at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import pytest

from llm_ledger import (
    InMemorySink,
    InvalidInputError,
    LLMExecutor,
    LLMMessage,
    ToolCall,
    ToolSpec,
    execution_context,
    record_tool_call,
    run_tool_call,
    set_default_sink,
    verify_chain,
)
from llm_ledger.events import Event, EventDraft
from llm_ledger.executor.content import keyring_of
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.tool_executions import AskingExecutions
from llm_ledger.executor.tracing import SpanRef
from tests.digests import keyed
from tests.executor.ledger import Ledger
from tests.revealed import revealed_event

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"
QUESTION = [LLMMessage(role="user", content="weather in Paris?")]


def get_weather(city: str, days: int = 1) -> str:
    """Today's weather in a city."""
    return f"sunny in {city} for {days} day(s)"


async def get_weather_later(city: str, days: int = 1) -> dict[str, Any]:
    """The same, by an async function returning a value that is not text."""
    await asyncio.sleep(0)
    return {"city": city, "sky": "clear"}


WEATHER = ToolSpec.from_function(get_weather)


@pytest.fixture
def default_sink() -> Iterator[InMemorySink]:
    """The process's default sink, where tool executions go unless given ``sink=``."""
    sink = InMemorySink()
    set_default_sink(sink)
    yield sink
    set_default_sink(None)


@dataclass
class _Span:
    trace_id: str
    span_id: str
    ended: list[tuple[str, ...]] = field(default_factory=list)

    def attempt(self, *args: object) -> _Span:
        return self

    def fallback(self, *args: object) -> None:
        pass

    def succeeded(self, *args: object) -> None:
        self.ended.append(("succeeded",))

    def failed(self, error_type: Any = None, message: Any = None) -> None:
        self.ended.append(("failed", str(getattr(error_type, "error_type", error_type)), str(message)))


class _Tracer:
    """A tracer that hands out numbered spans and remembers how each tool span was asked for."""

    def __init__(self) -> None:
        self.count = 0
        self.tools: list[tuple[str, str | None, ExecutionContext, SpanRef | None, _Span]] = []

    def _span(self) -> _Span:
        self.count += 1
        return _Span(trace_id=f"{self.count:032x}", span_id=f"{self.count:016x}")

    def start(self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]) -> Any:
        return self._span()

    def tool(self, name: str, call_id: str | None, context: ExecutionContext, parent: SpanRef | None) -> Any:
        span = self._span()
        self.tools.append((name, call_id, context, parent, span))
        return span

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> Any:
        return self._span()

    def turn(self, name: str, context: ExecutionContext) -> Any:
        return self._span()


def _tool_streams(sink: InMemorySink) -> list[list[Event]]:
    """The tool streams the sink took, their captured texts decrypted (this process made the keys)."""
    keys = keyring_of(sink).get
    return [
        [revealed_event(event, keys) for event in sink.stream(sid)]
        for sid in sink.stream_ids()
        if sink.stream(sid)[0].event_type == "ToolCallStarted"
    ]


async def _asked(sink: InMemorySink, tracer: Any = None, **context: Any) -> tuple[ToolCall, UUID]:
    """A tool call asked for by a mock model, under ``context``; the call and its execution's id."""
    executor = LLMExecutor(
        "mock/agent?p50_ms=0&tool_use=1", sink=sink, capture=context.pop("capture", None), tracer=tracer
    )
    with execution_context(**context):
        response = await executor.generate(QUESTION, tools=[WEATHER])
    (call,) = response.tool_calls
    return call, response.execution_id


# --- success, failure, cancellation --------------------------------------------------------------------


async def test_a_tool_run_is_a_stream_of_its_own_linked_to_the_call_and_the_asking_execution(
    default_sink: InMemorySink,
) -> None:
    tracer = _Tracer()
    call, execution_id = await _asked(
        default_sink, tracer, tenant_id="acme", agent_id="support", session_id="s1", step="generation"
    )

    # Outside any execution_context: the context is the asking execution's.
    async with record_tool_call(call, tracer=tracer) as run:
        run.result = get_weather(**call.arguments)

    (stream,) = _tool_streams(default_sink)
    assert [e.event_type for e in stream] == ["ToolCallStarted", "ToolCallSucceeded"]
    assert all(e.stream_id == run.tool_execution_id != execution_id for e in stream)
    assert {(e.tenant_id, e.agent_id, e.session_id, e.step) for e in stream} == {
        ("acme", "support", "s1", "generation")
    }
    started: Any = stream[0].payload
    assert (started.tool_name, started.tool_call_id, started.execution_id) == ("get_weather", call.id, execution_id)
    assert started.capture == "hash"
    assert started.arguments.digest == keyed("acme", call.arguments_json.encode()) and started.arguments.text is None
    assert (started.arguments.sha256, started.arguments.digest_alg) == (None, "hmac-sha256")
    succeeded: Any = stream[1].payload
    assert succeeded.result.digest == keyed("acme", b"sunny in mock for 1 day(s)")
    assert succeeded.latency_ms >= 0
    assert verify_chain(stream).ok

    (name, call_id, context, parent, span) = tracer.tools[0]
    assert (name, call_id, context.tenant_id) == ("get_weather", call.id, "acme")
    asking_started = default_sink.stream(execution_id)[0]
    assert parent == SpanRef(asking_started.trace_id or "", asking_started.span_id or ""), "under the asking span"
    assert {(e.trace_id, e.span_id) for e in stream} == {(span.trace_id, span.span_id)} == {(run.trace_id, run.span_id)}
    assert span.ended == [("succeeded",)]


async def test_the_current_execution_context_wins_over_the_asking_executions(default_sink: InMemorySink) -> None:
    call, _ = await _asked(default_sink, tenant_id="acme", step="generation")
    with execution_context(tenant_id="acme", agent_id="tools", step="tool_execution"):
        async with record_tool_call(call) as run:
            run.result = "ok"
    assert run.context == ExecutionContext("acme", "tools", step="tool_execution")
    assert {(e.agent_id, e.step) for e in _tool_streams(default_sink)[0]} == {("tools", "tool_execution")}


def test_a_tool_that_raises_is_recorded_failed_with_its_text_scrubbed_and_encrypted_and_the_error_propagates() -> None:
    sink = InMemorySink()
    recording = record_tool_call("get_weather", {"city": ""}, tool_call_id="c7", capture="full", sink=sink)
    with execution_context(tenant_id="acme"), pytest.raises(ValueError, match="no city"), recording:
        raise ValueError(f"no city given (key {SECRET})")
    (stream_id,) = sink.stream_ids()
    stored = sink.stream(stream_id)  # as stored: encrypted
    started, failed = (e.payload for e in stored)
    assert (started.tool_call_id, started.execution_id) == ("c7", None)  # type: ignore[union-attr]
    assert (failed.error_type, failed.error_class) == ("tool_error", "ValueError")  # type: ignore[union-attr]
    assert failed.message == "the tool raised ValueError (its text is kept in error_text, encrypted)"  # type: ignore[union-attr]
    assert failed.error_text.text is None and failed.error_text.encrypted is not None  # type: ignore[union-attr]
    assert "no city" not in stored[1].model_dump_json(), "the text is stored encrypted only"
    assert failed.error_text.encrypted.key_id == started.arguments.encrypted.key_id  # type: ignore[union-attr]
    opened: Any = _tool_streams(sink)[0][1].payload
    assert opened.error_text.text == "no city given (key [REDACTED])"
    assert opened.error_text.digest == keyed("acme", f"no city given (key {SECRET})".encode())
    assert verify_chain(stored).ok


@pytest.mark.parametrize("capture", ["hash", "none"])
def test_a_tool_failure_keeps_a_digest_of_its_text_as_of_its_arguments(capture: str) -> None:
    """Under ``hash`` the exception's text is digested (keyed) as the arguments are, and never kept; under
    ``none``, its sizes alone."""
    sink = InMemorySink()
    with (
        execution_context(tenant_id="acme"),
        pytest.raises(KeyError),
        record_tool_call("lookup", {"order": 7}, capture=capture, sink=sink),
    ):
        raise KeyError("no order 7")
    started, failed = (e.payload for e in _tool_streams(sink)[0])
    text = str(KeyError("no order 7"))
    assert failed.message == f"the tool raised KeyError (its text is kept under capture 'full' only, not {capture!r})"  # type: ignore[union-attr]
    record: Any = failed.error_text  # type: ignore[union-attr]
    assert (record.text, record.encrypted, record.chars) == (None, None, len(text))
    assert record.digest == (keyed("acme", text.encode()) if capture == "hash" else None)
    assert (record.digest is None) == (started.arguments.digest is None)  # type: ignore[union-attr]


def test_an_exception_whose_text_cannot_be_read_is_still_recorded_and_raised() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    sink = InMemorySink()
    with (
        execution_context(tenant_id="acme"),
        pytest.raises(Unprintable),
        record_tool_call("lookup", {}, capture="full", sink=sink),
    ):
        raise Unprintable
    failed: Any = _tool_streams(sink)[0][-1].payload
    assert (failed.error_type, failed.error_class) == ("tool_error", "Unprintable")
    assert failed.error_text.text == "(the text of the Unprintable could not be read: its __str__ raised RuntimeError)"


async def test_a_cancelled_tool_run_is_recorded_as_cancelled() -> None:
    sink = InMemorySink()
    entered = asyncio.Event()

    async def slow_tool() -> None:
        async with record_tool_call("slow", sink=sink):
            entered.set()
            await asyncio.sleep(30)

    with execution_context(tenant_id="acme"):
        task = asyncio.create_task(slow_tool())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    failed: Any = _tool_streams(sink)[0][-1].payload
    assert (failed.error_type, failed.error_class) == ("cancelled", "CancelledError")


async def test_capture_scrubber_and_overrides_come_from_the_asking_execution(default_sink: InMemorySink) -> None:
    call, _ = await _asked(default_sink, tenant_id="acme", capture="full")
    async with record_tool_call(call) as run:
        run.result = f"token {SECRET}"
    started, succeeded = (e.payload for e in _tool_streams(default_sink)[0])
    assert started.capture == "full"  # type: ignore[union-attr]
    assert started.arguments.text == call.arguments_json  # type: ignore[union-attr]
    assert succeeded.result.text == "token [REDACTED]"  # type: ignore[union-attr]

    async with record_tool_call(call, capture="none") as run:
        run.result = "x"
    started = _tool_streams(default_sink)[1][0].payload
    assert (started.capture, started.arguments.sha256) == ("none", None)  # type: ignore[union-attr]


async def test_results_are_kept_as_text_json_or_repr() -> None:
    sink = InMemorySink()

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    results: list[Any] = ["plain text", {"b": [1, 2.5, None]}, None, {1: "non-string key"}, Opaque()]
    with execution_context(tenant_id="acme"):
        for result in results:
            with record_tool_call("t", sink=sink, capture="full") as run:
                run.result = result
    texts = [stream[-1].payload.result.text for stream in _tool_streams(sink)]  # type: ignore[union-attr]
    assert texts == ["plain text", '{"b":[1,2.5,null]}', "null", "{1: 'non-string key'}", '"<opaque>"']


# --- durability ----------------------------------------------------------------------------------------


class _ControlledDurableSink(InMemorySink):
    """A ``DurableSink`` whose events become durable when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[EventDraft, asyncio.Future[None]]] = []

    def durable(self, event: EventDraft) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self.asked.append((event, future))
        return future


async def test_async_with_returns_only_once_the_terminal_event_is_durable() -> None:
    sink = _ControlledDurableSink()

    async def run_tool() -> str:
        async with record_tool_call("get_weather", {"city": "Paris"}, sink=sink) as run:
            run.result = "sunny"
        return "left the block"

    with execution_context(tenant_id="acme"):
        task = asyncio.create_task(run_tool())
        for _ in range(100):
            if sink.asked:
                break
            await asyncio.sleep(0)
        ((event, future),) = sink.asked
        assert event.event_type == "ToolCallSucceeded"
        await asyncio.sleep(0.01)
        assert not task.done(), "still waiting for durability"
        future.set_result(None)
        assert await task == "left the block"


def test_a_plain_with_does_not_wait_for_durability() -> None:
    sink = _ControlledDurableSink()
    with execution_context(tenant_id="acme"), record_tool_call("t", sink=sink) as run:
        run.result = 1
    assert sink.asked == [] and len(sink) == 2


# --- run_tool_call -------------------------------------------------------------------------------------


async def test_run_tool_call_runs_a_sync_or_async_function_and_records_it(default_sink: InMemorySink) -> None:
    call, execution_id = await _asked(default_sink, tenant_id="acme", capture="full")
    assert await run_tool_call(call, get_weather) == "sunny in mock for 1 day(s)"
    assert await run_tool_call(call, get_weather_later) == {"city": "mock", "sky": "clear"}

    def broken(city: str) -> str:
        raise KeyError(city)

    with pytest.raises(KeyError):
        await run_tool_call(call, broken)
    endings = [(s[-1].event_type, s[0].payload.execution_id) for s in _tool_streams(default_sink)]  # type: ignore[union-attr]
    assert endings == [
        ("ToolCallSucceeded", execution_id),
        ("ToolCallSucceeded", execution_id),
        ("ToolCallFailed", execution_id),
    ]
    second: Any = _tool_streams(default_sink)[1][-1].payload
    assert json.loads(second.result.text) == {"city": "mock", "sky": "clear"}


# --- input and the registry ----------------------------------------------------------------------------


def test_bad_tool_names_ids_and_arguments_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="tool name"):
        record_tool_call("bad\x00name")
    with pytest.raises(InvalidInputError, match="tool name must not be empty"):
        record_tool_call("")
    with pytest.raises(InvalidInputError, match="execution_id must be a UUID"):
        record_tool_call("t", execution_id="not-a-uuid")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="arguments must be a mapping"):
        record_tool_call("t", [1, 2])  # type: ignore[arg-type]


def test_a_recording_records_one_execution() -> None:
    recording = record_tool_call("t", sink=InMemorySink())
    with execution_context(tenant_id="acme"):
        with recording:
            pass
        with pytest.raises(RuntimeError, match="one tool execution"), recording:
            pass


def test_the_registry_keeps_the_last_executions_only() -> None:
    registry = AskingExecutions(capacity=3)
    ids = [uuid4() for _ in range(5)]
    for index, execution_id in enumerate(ids):
        registry.add(execution_id, ExecutionContext(f"t{index}"), "hash", None, None)  # type: ignore[arg-type]
    assert len(registry) == 3
    assert [registry.get(i) is not None for i in ids] == [False, False, True, True, True]
    assert registry.get(ids[4]).context.tenant_id == "t4"  # type: ignore[union-attr]


def test_an_unknown_asking_execution_and_no_context_fall_back_to_the_default_tenant() -> None:
    sink = InMemorySink()
    with record_tool_call("t", execution_id=uuid4(), sink=sink):
        pass
    assert {e.tenant_id for e in sink.events} == {"default"}


# --- many at once --------------------------------------------------------------------------------------


async def test_50_concurrent_executions_and_tool_runs_under_different_tenants_mix_nothing(
    default_sink: InMemorySink,
) -> None:
    executor = LLMExecutor("mock/agent?p50_ms=2&p99_ms=20&tool_use=1", sink=default_sink)

    async def turn(index: int) -> tuple[str, UUID, list[UUID]]:
        tenant = f"tenant-{index}"
        with execution_context(tenant_id=tenant, session_id=f"s{index}"):
            response = await executor.generate([LLMMessage(role="user", content=f"question {index}")], tools=[WEATHER])
        # The tool runs outside the context: it must find the asking execution's own.
        runs = []
        for call in response.tool_calls:
            async with record_tool_call(call) as run:
                await asyncio.sleep(0.001 * (index % 5))
                run.result = f"result for {tenant}"
            runs.append(run.tool_execution_id)
        return tenant, response.execution_id, runs

    outcomes = await asyncio.gather(*(turn(i) for i in range(50)))

    for tenant, execution_id, runs in outcomes:
        assert {e.tenant_id for e in default_sink.stream(execution_id)} == {tenant}
        assert len(runs) == 1
        stream = default_sink.stream(runs[0])
        assert {(e.tenant_id, e.session_id) for e in stream} == {(tenant, f"s{tenant.split('-')[1]}")}
        started: Any = stream[0].payload
        assert started.execution_id == execution_id
        result: Any = stream[1].payload
        # Each under its own tenant's key: the 50 keys differ, and each digest is its tenant's.
        assert result.result.digest == keyed(tenant, f"result for {tenant}".encode())
        assert verify_chain(stream).ok
    assert len(_tool_streams(default_sink)) == 50


# --- into a real ledger --------------------------------------------------------------------------------


async def test_a_tool_conversation_reaches_the_store_whole_with_every_chain_intact(ledger: Ledger) -> None:
    """Through the buffered writer (sealing, journal, the store as the least-privilege login): the
    execution that asked, the tool runs (one failed) and the execution that got the results back."""
    executor = LLMExecutor("mock/agent?p50_ms=0&tool_use=1", sink=ledger.writer, capture="full")
    time_tool = ToolSpec(name="get_time", parameters={"type": "object", "properties": {}})
    with execution_context(tenant_id="acme", session_id="s1", step="generation"):
        asked = await executor.generate(QUESTION, tools=[WEATHER, time_tool])
        weather, clock = asked.tool_calls
        async with record_tool_call(weather, sink=ledger.writer) as run:
            run.result = get_weather(**weather.arguments)
        with pytest.raises(TimeoutError):
            async with record_tool_call(clock, sink=ledger.writer):
                raise TimeoutError("the clock service did not answer")
        answered = await executor.generate(
            [
                *QUESTION,
                LLMMessage(role="assistant", tool_calls=asked.tool_calls),
                LLMMessage(role="tool", content=str(run.result), tool_call_id=weather.id, name=weather.name),
                LLMMessage(role="tool", content="error: no answer", tool_call_id=clock.id, name=clock.name),
            ],
            tools=[WEATHER, time_tool],
        )

    stats = ledger.settle()
    assert stats.rejected == 0 and ledger.rejected() == "", ledger.rejected()
    streams: dict[UUID, list[Event]] = {}
    as_stored: dict[UUID, list[Event]] = {}
    for stored in ledger.store.read_session("s1", tenant_id="acme"):
        as_stored.setdefault(stored.stream_id, []).append(stored)
        event = revealed_event(stored, keyring_of(ledger.writer).get)
        streams.setdefault(event.stream_id, []).append(event)
    kinds = sorted(tuple(e.event_type for e in stream) for stream in streams.values())
    assert kinds == [
        ("ExecutionStarted", "AttemptStarted", "AttemptSucceeded", "ExecutionSucceeded"),
        ("ExecutionStarted", "AttemptStarted", "AttemptSucceeded", "ExecutionSucceeded"),
        ("ToolCallStarted", "ToolCallFailed"),
        ("ToolCallStarted", "ToolCallSucceeded"),
    ]
    assert all(verify_chain(stream).ok for stream in as_stored.values())
    stored_asked: Any = streams[asked.execution_id]
    assert [c.id for c in stored_asked[2].payload.tool_calls] == [weather.id, clock.id]
    stored_answered: Any = streams[answered.execution_id]
    assert stored_answered[0].payload.input.messages[1].tool_calls[1].id == clock.id
    tools_run = {s[0].payload.tool_call_id: s for s in streams.values() if s[0].event_type == "ToolCallStarted"}
    assert tools_run[weather.id][0].stream_id == run.tool_execution_id
    failed: Any = tools_run[clock.id][1].payload
    assert (failed.error_type, failed.error_class) == ("tool_error", "TimeoutError")
    assert {e.step for stream in streams.values() for e in stream} == {"generation"}


async def test_a_tool_run_goes_to_the_sink_and_tracer_of_the_executor_that_asked(default_sink: InMemorySink) -> None:
    """An executor built with ``sink=`` keeps its tools' events beside its executions', not in the default."""
    own_sink = InMemorySink()
    tracer = _Tracer()
    call, _ = await _asked(own_sink, tracer, tenant_id="acme")
    await run_tool_call(call, get_weather)
    assert len(_tool_streams(own_sink)) == 1
    assert _tool_streams(default_sink) == []
    assert [name for name, *_ in tracer.tools] == ["get_weather"]


@pytest.mark.parametrize("capture", ["hash", "none"])
def test_a_failed_tools_text_is_kept_only_under_capture_full(capture: str) -> None:
    # The exception's text is the tool's own words, which quote its arguments as often as not: under a
    # policy that keeps no argument, neither the event nor the span may hold it.
    sink, tracer = InMemorySink(), _Tracer()
    recording = record_tool_call(
        "lookup_customer", {"email": "jane@example.com"}, capture=capture, sink=sink, tracer=tracer
    )
    with execution_context(tenant_id="acme"), pytest.raises(LookupError), recording:
        raise LookupError("no customer with the e-mail 'jane@example.com'")
    started, failed = (e.payload for e in _tool_streams(sink)[0])
    assert "jane" not in started.model_dump_json()
    assert (failed.error_type, failed.error_class) == ("tool_error", "LookupError")  # type: ignore[union-attr]
    assert "jane" not in failed.message and "LookupError" in failed.message  # type: ignore[union-attr]
    (*_, span) = tracer.tools[0]
    assert all("jane" not in str(part) for ended in span.ended for part in ended)
