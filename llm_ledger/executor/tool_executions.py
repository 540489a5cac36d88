"""Recording a tool's execution: ``record_tool_call`` (a context manager, ``with`` or ``async with``) and
``run_tool_call`` (records and runs a function in one line), for whoever runs the tools a model asked for
(Focal's ToolExecutor, an Agno Agent's tool hooks).

Each tool execution is a stream of its own (a new uuid7 as its ``stream_id``): ``ToolCallStarted``, then
``ToolCallSucceeded`` or ``ToolCallFailed``, naming the tool call id and the execution that asked. Its
context, capture policy, scrubber and parent span are the asking execution's unless given: the
executions that offered tools are kept in a bounded registry (``asking_executions``), filled when each
one starts (``ExecutionHistory.started``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel

from llm_ledger.events import (
    DEFAULT_CAPTURE,
    CapturePolicy,
    DigestKey,
    DigestSecret,
    EventDraft,
    Scrubber,
    StreamHeader,
    parse_capture_policy,
    uuid7,
)
from llm_ledger.events import values as payloads
from llm_ledger.events.values import JsonDict, JsonPayload
from llm_ledger.executor.admission import check_identifier
from llm_ledger.executor.clock import Clock, checked_clock, system_clock
from llm_ledger.executor.content import content_subject
from llm_ledger.executor.context import DEFAULT_TENANT, ExecutionContext, get_execution_context
from llm_ledger.executor.digest_secret import default_digest_secret
from llm_ledger.executor.errors import CANCELLED, InvalidInputError
from llm_ledger.executor.recorder import StreamRecorder
from llm_ledger.executor.sink import EventSink, get_default_sink, until_durable
from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.tracing import ExecutionTracer, SpanRef, ToolTrace, get_default_tracer

log = logging.getLogger("llm_ledger.executor")

TOOL_ERROR = "tool_error"
"""The error type of a tool execution that raised."""

MAX_ASKING_EXECUTIONS = 10_000


@dataclass(frozen=True, slots=True)
class AskingExecution:
    """What a tool execution inherits from the execution that asked for it."""

    context: ExecutionContext
    capture: CapturePolicy
    scrubber: Scrubber
    span: SpanRef | None
    sink: EventSink | None = None
    """The asking executor's sink, so that a tool's events go where its execution's went."""
    tracer: ExecutionTracer | None = None
    clock: Clock = system_clock
    """The asking executor's clock, so that a tool's events are stamped in its execution's time."""
    digest_secret: DigestSecret | None = None
    """The asking executor's digest secret, when it was given one (the process's otherwise)."""


class AskingExecutions:
    """The last ``capacity`` executions that offered tools, by execution id: a dict and a deque of the
    ids in insertion order, under a lock (executions start on any thread's event loop). Bounded, so a
    long-running process keeps no more than ``capacity`` entries; a tool run for an execution forgotten
    since falls back to the current context and the defaults."""

    def __init__(self, capacity: int = MAX_ASKING_EXECUTIONS) -> None:
        self._by_id: dict[UUID, AskingExecution] = {}
        self._order: deque[UUID] = deque()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(
        self,
        execution_id: UUID,
        context: ExecutionContext,
        capture: CapturePolicy,
        scrubber: Scrubber,
        span: SpanRef | None,
        sink: EventSink | None = None,
        tracer: ExecutionTracer | None = None,
        clock: Clock = system_clock,
        digest_secret: DigestSecret | None = None,
    ) -> None:
        entry = AskingExecution(context, capture, scrubber, span, sink, tracer, clock, digest_secret)
        with self._lock:
            if execution_id not in self._by_id:
                self._order.append(execution_id)
                if len(self._order) > self._capacity:
                    del self._by_id[self._order.popleft()]
            self._by_id[execution_id] = entry

    def get(self, execution_id: UUID | None) -> AskingExecution | None:
        if execution_id is None:
            return None
        with self._lock:
            return self._by_id.get(execution_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)


asking_executions = AskingExecutions()
"""The process's registry of the executions that offered tools."""


@dataclass(slots=True)
class ToolRun:
    """The tool execution in progress, given by ``record_tool_call``: set ``result`` to what the tool
    returned (a ``str`` is kept as is, anything else as its JSON text; a value with no JSON form as its
    ``repr``). ``tool_execution_id`` is the id of its event stream; ``trace_id``/``span_id`` its span's."""

    tool_name: str
    tool_call_id: str | None
    execution_id: UUID | None
    """The execution whose answer asked for the call (None for a tool run unasked)."""
    tool_execution_id: UUID
    context: ExecutionContext
    trace_id: str | None
    span_id: str | None
    result: Any = None


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def result_text(result: Any) -> str:
    """A tool's result as the ledger keeps it: a ``str`` as is, anything else as its JSON text (orjson,
    other values as their ``str``), and what cannot be encoded (a dict with non-string keys, a cycle, an
    integer beyond 64 bits) as its ``repr``."""
    if isinstance(result, str):
        return result
    try:
        return orjson.dumps(result, default=_json_default).decode()
    except (orjson.JSONEncodeError, TypeError, ValueError):
        return repr(result)


def _arguments_text(arguments: Mapping[str, Any] | str | None) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    if not isinstance(arguments, Mapping):
        raise InvalidInputError("arguments", f"must be a mapping, a JSON text or None, not {type(arguments).__name__}")
    return result_text(dict(arguments))


def _started_payload(
    tool_name: str,
    tool_call_id: str | None,
    execution_id: UUID | None,
    arguments: str,
    capture: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None,
) -> JsonDict:
    return payloads.tool_call_started(
        tool_name=tool_name,
        tool_call_id=tool_call_id,
        execution_id=execution_id,
        arguments=payloads.output_values(arguments, capture, scrubber, digest_key),
        capture=capture,
    )


def _succeeded_payload(
    tool_name: str,
    latency_ms: float,
    result: str,
    capture: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None,
) -> JsonDict:
    return payloads.tool_call_succeeded(
        tool_name=tool_name,
        latency_ms=latency_ms,
        result=payloads.output_values(result, capture, scrubber, digest_key),
    )


def _failed_payload(
    tool_name: str,
    latency_ms: float,
    error: str,
    error_class: str,
    capture: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None,
) -> JsonDict:
    """``ToolCallFailed`` of a tool that raised: its class in ``message``; its text, the tool's own words,
    which quote its arguments as often as not ("no customer 'jane@example.com'"), in ``error_text``, kept
    as the arguments are (a digest, or the scrubbed text, encrypted with them, by policy)."""
    return payloads.tool_call_failed(
        tool_name=tool_name,
        latency_ms=latency_ms,
        error_type=TOOL_ERROR,
        error_class=error_class,
        message=_error_message(error_class, capture),
        error_text=payloads.output_values(error, capture, scrubber, digest_key),
    )


def _exception_text(error: BaseException) -> str:
    """``str(error)``, or a sentence saying it could not be had: a tool's exception whose ``__str__`` raises
    still gets its terminal event (and the caller still gets the exception)."""
    try:
        return str(error)
    except Exception as broken:  # noqa: BLE001 - whatever it raises, the run is recorded
        return f"(the text of the {type(error).__name__} could not be read: its __str__ raised {type(broken).__name__})"


def _error_message(error_class: str, capture: CapturePolicy) -> str:
    if capture == "full":
        return f"the tool raised {error_class} (its text is kept in error_text, encrypted)"
    return f"the tool raised {error_class} (its text is kept under capture 'full' only, not {capture!r})"


def _span_message(error: BaseException) -> str:
    """What the span keeps of a tool's exception: its class alone, whatever the capture policy. The
    policy is the ledger's; a span goes to a collector it does not govern, and carries no arguments."""
    return f"the tool raised {type(error).__name__} (its text is in the ledger under capture 'full' only)"


def _digest_secret(asking: AskingExecution | None) -> DigestSecret:
    given = asking.digest_secret if asking is not None else None
    return given if given is not None else default_digest_secret.get()


_warned_no_context = False


def _fallback_context() -> ExecutionContext:
    global _warned_no_context
    if not _warned_no_context:
        _warned_no_context = True
        log.warning(
            "llm-ledger: a tool execution was recorded without an execution context or a known asking "
            "execution; its events are recorded under tenant %r.",
            DEFAULT_TENANT,
        )
    return ExecutionContext(tenant_id=DEFAULT_TENANT)


class ToolCallRecording:
    """The recording of one tool execution (``record_tool_call``): a context manager for ``with`` and
    ``async with``, used once. ``async with`` waits on exit until the terminal event is durable in the
    sink (as an execution does before it returns); a plain ``with`` cannot wait, and does not."""

    def __init__(
        self,
        tool_name: str,
        arguments: str,
        tool_call_id: str | None,
        execution_id: UUID | None,
        capture: CapturePolicy | None,
        sink: EventSink | None,
        tracer: ExecutionTracer | None,
        clock: Clock | None = None,
    ) -> None:
        self._tool_name = tool_name
        self._arguments = arguments
        self._tool_call_id = tool_call_id
        self._execution_id = execution_id
        self._capture = capture
        self._sink = sink
        self._tracer = tracer
        self._clock = clock
        self._run: ToolRun | None = None
        self._recorder: StreamRecorder | None = None
        self._trace: ToolTrace | None = None
        self._policy: tuple[CapturePolicy, Scrubber, DigestKey | None] = (DEFAULT_CAPTURE, Scrubber(), None)
        self._started = 0.0
        self.terminal: EventDraft | None = None
        """The last event (``ToolCallSucceeded`` or ``ToolCallFailed``), once recorded."""

    # --- the two protocols --------------------------------------------------------------------------

    def __enter__(self) -> ToolRun:
        return self._start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._finish(error)

    async def __aenter__(self) -> ToolRun:
        return self._start()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._finish(error)
        if not isinstance(error, asyncio.CancelledError):
            # A cancelled task does not wait (an execution cancelled does not either): it is leaving.
            await until_durable(self.sink, self.terminal)

    @property
    def sink(self) -> EventSink:
        if self._sink is None:
            asking = asking_executions.get(self._execution_id)
            self._sink = asking.sink if asking is not None and asking.sink is not None else get_default_sink()
        return self._sink

    # --- what happens ---------------------------------------------------------------------------

    def _start(self) -> ToolRun:
        if self._run is not None:
            raise RuntimeError("a record_tool_call(...) records one tool execution; make a new one for the next")
        asking = asking_executions.get(self._execution_id)
        context = get_execution_context() or (asking.context if asking else None) or _fallback_context()
        if context.step is None and asking is not None and asking.context.step is not None:
            # The asking execution took its executor's step_name: its tool calls count under that step.
            context = context.with_step(asking.context.step)
        capture = self._capture or (asking.capture if asking else DEFAULT_CAPTURE)
        scrubber = asking.scrubber if asking else Scrubber()
        digest_key = None if capture == "none" else _digest_secret(asking).tenant_key(context.tenant_id)
        self._policy = (capture, scrubber, digest_key)
        tool_execution_id = uuid7()
        tracer = self._tracer or (asking.tracer if asking else None) or get_default_tracer()
        trace = tracer.tool(self._tool_name, self._tool_call_id, context, asking.span if asking else None)
        self._trace = trace
        self._recorder = StreamRecorder(
            StreamHeader(
                stream_id=tool_execution_id,
                tenant_id=context.tenant_id,
                agent_id=context.agent_id,
                session_id=context.session_id,
                turn_id=context.turn_id,
                step=context.step,
                content=content_subject(self.sink, context, capture),
            ),
            self.sink,
            self._clock or (asking.clock if asking is not None else system_clock),
        )
        self._recorder.record(
            "ToolCallStarted",
            JsonPayload(
                _started_payload,
                self._tool_name,
                self._tool_call_id,
                self._execution_id,
                self._arguments,
                capture,
                scrubber,
                digest_key,
            ),
            trace_id=trace.trace_id,
            span_id=trace.span_id,
        )
        self._run = ToolRun(
            tool_name=self._tool_name,
            tool_call_id=self._tool_call_id,
            execution_id=self._execution_id,
            tool_execution_id=tool_execution_id,
            context=context,
            trace_id=trace.trace_id,
            span_id=trace.span_id,
        )
        self._started = time.perf_counter()
        return self._run

    def _finish(self, error: BaseException | None) -> None:
        assert self._run is not None and self._recorder is not None and self._trace is not None
        latency = round((time.perf_counter() - self._started) * 1000, 3)
        capture, scrubber, digest_key = self._policy
        trace = self._trace
        if error is None:
            payload = JsonPayload(
                _succeeded_payload,
                self._tool_name,
                latency,
                result_text(self._run.result),
                capture,
                scrubber,
                digest_key,
            )
            self.terminal = self._recorder.record(
                "ToolCallSucceeded", payload, trace_id=trace.trace_id, span_id=trace.span_id
            )
            trace.succeeded()
            return
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            error_type, span_message = CANCELLED, "cancelled by the caller"
            payload = JsonPayload(
                payloads.tool_call_failed,
                tool_name=self._tool_name,
                latency_ms=latency,
                error_type=error_type,
                error_class=type(error).__name__,
                message=span_message,
            )
        else:
            error_type, span_message = TOOL_ERROR, _span_message(error)
            payload = JsonPayload(
                _failed_payload,
                self._tool_name,
                latency,
                _exception_text(error),
                type(error).__name__,
                capture,
                scrubber,
                digest_key,
            )
        self.terminal = self._recorder.record("ToolCallFailed", payload, trace_id=trace.trace_id, span_id=trace.span_id)
        trace.failed(error_type, span_message)


def record_tool_call(
    call: ToolCall | str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    tool_call_id: str | None = None,
    execution_id: UUID | None = None,
    capture: CapturePolicy | str | None = None,
    sink: EventSink | None = None,
    tracer: ExecutionTracer | None = None,
    clock: Clock | None = None,
) -> ToolCallRecording:
    """Record the execution of a tool, as ``with`` or ``async with``; it gives a ``ToolRun`` whose
    ``result`` the block sets::

        async with record_tool_call(call) as run:      # call: a ToolCall of LLMResponse.tool_calls
            run.result = await lookup(**call.arguments)

    ``call`` is the ``ToolCall`` the model asked for (its name, id, arguments and asking execution), or
    a tool's name, with ``arguments`` (a mapping or their JSON text) and, if a model asked for it,
    ``tool_call_id`` and ``execution_id``; the keywords override what a ``ToolCall`` says. An exception
    in the block is recorded (``ToolCallFailed``, error type ``tool_error``, its class in ``message``, its
    text in ``error_text`` under the capture policy of the arguments, which it may quote) and
    propagates; a cancellation is recorded as ``cancelled``.

    The events' context is the current ``execution_context`` if set (with the asking execution's step
    when it names none), else the asking execution's; the
    capture policy (of the arguments and the result), the scrubber and the parent span are the asking
    execution's unless ``capture=`` is given; so are the sink and the tracer (an executor built with
    ``sink=`` gets its tools' events too), else the process's defaults, and the clock that stamps the
    events unless ``clock=`` is given (the system's for a tool run unasked; a simulation's must return
    aware datetimes, as ``LLMExecutor(clock=)``'s). ``async with`` returns once the
    last event is durable; plain ``with`` does not wait."""
    call_id: str | None
    if isinstance(call, ToolCall):
        name = call.name
        call_id = tool_call_id if tool_call_id is not None else call.id
        asked_by = execution_id if execution_id is not None else call.execution_id
        text = call.arguments_json if arguments is None else _arguments_text(arguments)
    else:
        name, call_id, asked_by, text = call, tool_call_id, execution_id, _arguments_text(arguments)
    _check_text("tool name", name)
    if call_id is not None:
        _check_text("tool_call_id", call_id)
    if asked_by is not None and not isinstance(asked_by, UUID):
        raise InvalidInputError("execution_id", f"must be a UUID (an execution's id), not {type(asked_by).__name__}")
    policy = parse_capture_policy(capture) if capture is not None else None
    checked = checked_clock(clock) if clock is not None else None
    return ToolCallRecording(name, text, call_id, asked_by, policy, sink, tracer, checked)


def _check_text(field: str, value: str) -> None:
    check_identifier(field, value)
    if not value:
        raise InvalidInputError(field, "must not be empty")


async def run_tool_call(call: ToolCall, function: Callable[..., Any], /) -> Any:
    """Run ``function(**call.arguments)`` (a sync or an async function) and record it
    (``record_tool_call``); returns what it returned, or raises what it raised, once recorded durably.

    A sync function runs on the event loop's thread, as a direct call would (give a blocking one to
    ``asyncio.to_thread`` inside an async function)."""
    if not isinstance(call, ToolCall):
        raise InvalidInputError("call", f"must be a ToolCall, not {type(call).__name__}")
    async with record_tool_call(call) as run:
        result = function(**call.arguments)
        if inspect.isawaitable(result):
            result = await result
        run.result = result
    return result
