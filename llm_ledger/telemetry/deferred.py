"""GenAI spans made off the call path, for the providers that ``configure_tracing`` installs.

Making two SDK spans and three histogram records costs an LLM call 0.3 ms in context (measured: an
executor at 1.25x a bare Agno call with them, 1.09x without). When llm-ledger owns the tracer
provider it can do better: a call only notes ids and timestamps, and a background thread builds the
finished spans (``ReadableSpan``, with those ids and times) and hands them to the batch processor,
and records the metrics. The spans are the same as ``OtelExecutionTracer``'s; only when they are
built differs. Spans of an execution are emitted when it ends; a tool execution's and an agent run's
too (a run's span reaches the exporter after its children's, which a trace's backend does not mind).
A parent given by its ids (``SpanRef``: the current run, the execution that asked for a tool) becomes a
non-recording parent ``SpanContext`` in the same trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple
from uuid import UUID

from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from llm_ledger._metadata import __version__
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ProviderError
from llm_ledger.executor.tracing import SpanRef, current_run
from llm_ledger.telemetry import spans as conventions
from llm_ledger.telemetry.parenting import (
    NOT_SAMPLED,
    SAMPLED,
    SampledOutRuns,
    new_span_id,
    new_trace_id,
    parent_context,
)
from llm_ledger.telemetry.setup import Telemetry
from llm_ledger.telemetry.turns import CurrentTurn

log = logging.getLogger("llm_ledger.telemetry")


class _Attempt:
    """What a call noted of an attempt; the executor reads its ids (hex) for the attempt's events."""

    __slots__ = ("client", "completion", "end_ns", "error", "error_type", "fallback_index", "number", "params",
                 "retry", "span_id", "span_id_int", "start_ns", "stream", "trace_id", "ttfc_ms")  # fmt: skip

    def __init__(self, execution: _Execution, number: int, client: ModelClient, fallback_index: int, retry: int,
                 params: CallParams, stream: bool) -> None:  # fmt: skip
        self.number, self.client, self.fallback_index, self.retry = number, client, fallback_index, retry
        self.params, self.stream = params, stream
        self.span_id_int = new_span_id()
        self.span_id = format(self.span_id_int, "016x") if execution.trace_id else None
        self.trace_id = execution.trace_id
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.completion: Completion | None = None
        self.ttfc_ms: float | None = None
        self.error: ProviderError | None = None
        self.error_type: str | None = None

    def succeeded(self, completion: Completion, ttfc_ms: float | None) -> None:
        self.end_ns = time.time_ns()
        self.completion, self.ttfc_ms = completion, ttfc_ms

    def failed(self, error: ProviderError, error_type: str) -> None:
        self.end_ns = time.time_ns()
        self.error, self.error_type = error, error_type


class _Fallback(NamedTuple):
    """A switch of model the call noted (``_Execution.fallback``), made into a span event on the execution's
    span by the background thread; the time is the call's, so the event sits where it happened."""

    from_model: str
    to_model: str
    reason: str
    at_ns: int


class _Execution:
    """What a call noted of an execution (ids, times, its attempts and fallbacks), built into spans by the
    background thread once it ends (``DeferredExecutionTracer.submit``)."""

    __slots__ = ("_owner", "attempts", "chain", "context", "end_ns", "error_message", "error_type",
                 "execution_id", "fallbacks", "operation", "parent", "sampled", "span_id", "span_id_int",
                 "start_ns", "trace_id", "trace_id_int")  # fmt: skip

    def __init__(self, owner: DeferredExecutionTracer, execution_id: UUID, operation: str, context: ExecutionContext,
                 chain: tuple[str, ...], parent: SpanContext | None, sampled: bool, trace_id: int) -> None:  # fmt: skip
        self._owner = owner
        self.execution_id, self.operation, self.context, self.chain = execution_id, operation, context, chain
        self.parent, self.sampled = parent, sampled
        self.trace_id_int = trace_id
        self.span_id_int = new_span_id()
        self.trace_id = format(trace_id, "032x") if sampled else None
        self.span_id = format(self.span_id_int, "016x") if sampled else None
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.attempts: list[_Attempt] = []
        self.fallbacks: list[_Fallback] = []
        self.error_type: str | None = None
        self.error_message: str | None = None

    @property
    def ref(self) -> SpanRef:
        """The execution as a parent (``tracing.span_ref``), sampled or not."""
        return SpanRef(format(self.trace_id_int, "032x"), format(self.span_id_int, "016x"), self.sampled)

    def attempt(self, number: int, client: ModelClient, fallback_index: int, retry: int, params: CallParams,
                stream: bool) -> _Attempt:  # fmt: skip
        attempt = _Attempt(self, number, client, fallback_index, retry, params, stream)
        self.attempts.append(attempt)
        return attempt

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self.fallbacks.append(_Fallback(from_model, to_model, reason, time.time_ns()))

    def succeeded(self) -> None:
        self.end_ns = time.time_ns()
        self._owner.submit(self)

    def failed(self, error_type: str, message: str) -> None:
        self.end_ns = time.time_ns()
        self.error_type, self.error_message = error_type, message
        self._owner.submit(self)


class _Span:
    """What a call noted of a tool execution or an agent run: one span, built by the background thread once
    it ends. ``attributes`` is the function of ``spans`` that says what it holds, and its arguments: run
    there, off the call path. A tool's ids go into its events, so they are there only when it is sampled;
    a run's parent its children and go into no event, so they are there always (``expose_ids``), and a
    sampled-out run is remembered while it runs."""

    __slots__ = ("_owner", "arguments", "attributes", "end_ns", "error_message", "error_type", "expose_ids", "name",
                 "parent", "sampled", "span_id", "span_id_int", "start_ns", "trace_id", "trace_id_int")  # fmt: skip

    def __init__(self, owner: DeferredExecutionTracer, name: str, attributes: Callable[..., dict[str, Any]],
                 arguments: tuple[Any, ...], parent: SpanContext | None, sampled: bool, trace_id: int, *,
                 expose_ids: bool) -> None:  # fmt: skip
        self._owner = owner
        self.name, self.attributes, self.arguments = name, attributes, arguments
        self.parent, self.sampled, self.expose_ids = parent, sampled, expose_ids
        self.trace_id_int = trace_id
        self.span_id_int = new_span_id()
        shown = sampled or expose_ids
        self.trace_id = format(trace_id, "032x") if shown else None
        self.span_id = format(self.span_id_int, "016x") if shown else None
        if expose_ids and not sampled and self.span_id is not None:
            owner.sampled_out.add(self.span_id)
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.error_type: str | None = None
        self.error_message: str | None = None

    @property
    def ref(self) -> SpanRef:
        return SpanRef(format(self.trace_id_int, "032x"), format(self.span_id_int, "016x"), self.sampled)

    def succeeded(self) -> None:
        self._end()

    def failed(self, error_type: str, message: str) -> None:
        if not self.end_ns:
            self.error_type, self.error_message = error_type, message
        self._end()

    def _end(self) -> None:
        if self.end_ns:  # a second end is ignored
            return
        self.end_ns = time.time_ns()
        if self.expose_ids and not self.sampled and self.span_id is not None:
            self._owner.sampled_out.discard(self.span_id)
        if self.sampled:
            self._owner.submit(self)


class DeferredExecutionTracer:
    """Spans and metrics built in a background thread from what each call noted."""

    def __init__(self, telemetry: Telemetry) -> None:
        assert telemetry.tracer_provider is not None and telemetry.span_processor is not None
        self._processor: SpanProcessor = telemetry.span_processor
        self._resource = telemetry.tracer_provider.resource
        self._sampler = telemetry.tracer_provider.sampler
        self._scope = InstrumentationScope("llm_ledger", __version__)
        meter = metrics.get_meter("llm_ledger", __version__, telemetry.meter_provider)
        self._instruments = conventions.Instruments(meter)
        self.sampled_out = SampledOutRuns()
        self._queue: deque[_Execution | _Span] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="llm-ledger-spans", daemon=True)
        self._thread.start()

    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> _Execution:
        parent = self._parent(current_run.get())
        trace_id = parent.trace_id if parent else new_trace_id()
        sampled = self._sampled(parent, trace_id, operation)
        return _Execution(self, execution_id, operation, context, chain, parent, sampled, trace_id)

    def tool(
        self, tool_name: str, tool_call_id: str | None, context: ExecutionContext, parent: SpanRef | None
    ) -> _Span:
        under = self._parent(current_run.get() or parent)
        trace_id = under.trace_id if under else new_trace_id()
        name = conventions.tool_span_name(tool_name)
        return _Span(self, name, conventions.tool_attributes, (tool_name, tool_call_id, context), under,
                     self._sampled(under, trace_id, name), trace_id, expose_ids=False)  # fmt: skip

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> _Span:
        under = self._parent(current_run.get())
        trace_id = under.trace_id if under else new_trace_id()
        name = conventions.run_span_name(agent_name)
        return _Span(self, name, conventions.run_attributes, (agent_name, agent_id, context), under,
                     self._sampled(under, trace_id, name), trace_id, expose_ids=True)  # fmt: skip

    def turn(self, name: str, context: ExecutionContext) -> CurrentTurn:
        under = self._parent(current_run.get())
        trace_id = under.trace_id if under else new_trace_id()
        span_name = conventions.turn_span_name(name)
        span = _Span(self, span_name, conventions.turn_attributes, (name, context), under,
                     self._sampled(under, trace_id, span_name), trace_id, expose_ids=False)  # fmt: skip
        ids = SpanContext(trace_id, span.span_id_int, False, SAMPLED if span.sampled else NOT_SAMPLED)
        return CurrentTurn(span, NonRecordingSpan(ids))

    def _parent(self, ref: SpanRef | None) -> SpanContext | None:
        """A span's parent: ``ref`` when given, else OpenTelemetry's current span, else none (a root)."""
        if ref is not None:
            return parent_context(ref, self.sampled_out)
        current = trace.get_current_span().get_span_context()
        return current if current.is_valid else None

    def _sampled(self, parent: SpanContext | None, trace_id: int, name: str) -> bool:
        """The sampler's decision, except under a sampled-out parent: then sampled out, whatever the sampler
        (a trace is kept or dropped whole)."""
        if parent is None:
            result = self._sampler.should_sample(None, trace_id, name, SpanKind.INTERNAL)
        elif not parent.trace_flags.sampled:
            return False
        else:
            context = trace.set_span_in_context(NonRecordingSpan(parent))
            result = self._sampler.should_sample(context, trace_id, name, SpanKind.INTERNAL)
        return result.decision is Decision.RECORD_AND_SAMPLE

    def submit(self, finished: _Execution | _Span) -> None:
        self._idle.clear()
        self._queue.append(finished)
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every finished execution has been handed to the span processor."""
        self._wake.set()
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                finished = self._queue.popleft()
                try:
                    if isinstance(finished, _Span):
                        self._materialize_span(finished)
                    else:
                        self._materialize(finished)
                except Exception:
                    log.exception("llm-ledger: a span could not be built")
            if not self._queue:
                self._idle.set()

    def _materialize(self, execution: _Execution) -> None:
        ledger = conventions.ledger_attributes(execution.execution_id, execution.context)
        for attempt in execution.attempts:
            self._record_metrics(attempt)
        if not execution.sampled:
            return
        parent_context = SpanContext(execution.trace_id_int, execution.span_id_int, False, SAMPLED)
        for attempt in execution.attempts:
            attributes = conventions.attempt_attributes(ledger, attempt.number, attempt.client,
                                                        attempt.fallback_index, attempt.retry, attempt.params,
                                                        attempt.stream)  # fmt: skip
            events: tuple[Event, ...] = ()
            if attempt.completion is not None:
                attributes.update(conventions.response_attributes(attempt.completion, attempt.ttfc_ms))
                status = Status(StatusCode.UNSET)
            else:
                error = attempt.error
                attributes[conventions.ERROR_TYPE] = attempt.error_type or "unknown"
                message = error.message if error is not None else ""
                status = Status(StatusCode.ERROR, message)
                events = (Event("exception", {"exception.type": type(error).__name__, "exception.message": message},
                                attempt.end_ns),)  # fmt: skip
            self._processor.on_end(
                ReadableSpan(
                    name=conventions.attempt_name(attempt.client),
                    context=SpanContext(execution.trace_id_int, attempt.span_id_int, False, SAMPLED),
                    parent=parent_context,
                    resource=self._resource,
                    attributes=attributes,
                    events=events,
                    kind=SpanKind.CLIENT,
                    status=status,
                    start_time=attempt.start_ns,
                    end_time=attempt.end_ns or execution.end_ns,
                    instrumentation_scope=self._scope,
                )
            )
        attributes = conventions.execution_attributes(ledger, execution.chain)
        if execution.attempts:
            last = execution.attempts[-1]
            attributes.update(conventions.answer_attributes(last.client, last.completion))
        status = Status(StatusCode.UNSET)
        if execution.error_type is not None:
            attributes[conventions.ERROR_TYPE] = execution.error_type
            status = Status(StatusCode.ERROR, execution.error_message)
        fallbacks = tuple(
            Event(
                conventions.FALLBACK_EVENT,
                conventions.fallback_attributes(edge.from_model, edge.to_model, edge.reason),
                edge.at_ns,
            )
            for edge in execution.fallbacks
        )
        self._processor.on_end(
            ReadableSpan(
                name=conventions.execution_name(execution.operation, execution.context),
                context=parent_context,
                parent=execution.parent,
                resource=self._resource,
                attributes=attributes,
                events=fallbacks,
                kind=SpanKind.INTERNAL,
                status=status,
                start_time=execution.start_ns,
                end_time=execution.end_ns,
                instrumentation_scope=self._scope,
            )
        )

    def _materialize_span(self, span: _Span) -> None:
        attributes: dict[str, Any] = span.attributes(*span.arguments)
        status = Status(StatusCode.UNSET)
        if span.error_type is not None:
            attributes[conventions.ERROR_TYPE] = span.error_type
            status = Status(StatusCode.ERROR, span.error_message)
        self._processor.on_end(
            ReadableSpan(
                name=span.name,
                context=SpanContext(span.trace_id_int, span.span_id_int, False, SAMPLED),
                parent=span.parent,
                resource=self._resource,
                attributes=attributes,
                kind=SpanKind.INTERNAL,
                status=status,
                start_time=span.start_ns,
                end_time=span.end_ns,
                instrumentation_scope=self._scope,
            )
        )

    def _record_metrics(self, attempt: _Attempt) -> None:
        base = conventions.metric_attributes(attempt.client)
        seconds = ((attempt.end_ns or time.time_ns()) - attempt.start_ns) / 1e9
        if attempt.completion is None:
            self._instruments.duration.record(seconds, {**base, conventions.ERROR_TYPE: attempt.error_type or ""})
            return
        conventions.record_success(self._instruments, base, seconds, attempt.completion)
