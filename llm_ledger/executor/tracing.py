"""The tracing seam: what the executor tells a tracer about an execution and its attempts.

The executor knows nothing of OpenTelemetry; ``llm_ledger.telemetry`` implements this protocol with
GenAI spans. With no tracer configured the no-op below costs a few attribute lookups per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ProviderError


class AttemptTrace(Protocol):
    """One attempt's span. ``trace_id``/``span_id`` (hex) go into the attempt's events."""

    trace_id: str | None
    span_id: str | None

    def succeeded(self, completion: Completion, ttfc_ms: float | None) -> None: ...

    def failed(self, error: ProviderError, error_type: str) -> None: ...


class ExecutionTrace(Protocol):
    """One execution's span, parent of its attempts' spans."""

    trace_id: str | None
    span_id: str | None

    def attempt(
        self, number: int, client: ModelClient, fallback_index: int, retry: int, params: CallParams, stream: bool
    ) -> AttemptTrace: ...

    def fallback(self, from_model: str, to_model: str, reason: str) -> None: ...

    def succeeded(self) -> None: ...

    def failed(self, error_type: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SpanRef:
    """A span by its ids (hex), to parent another span on: an execution's, or an agent run's.

    ``sampled`` False says the span is not exported: its children are sampled out too, so that a trace is
    kept or dropped whole (a tracer also remembers the agent runs it sampled out, whose ids it hands out
    for this, so a ref built from a run's ids alone is enough)."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def __post_init__(self) -> None:
        if not _is_hex_id(self.trace_id, 32):
            raise ValueError(f"SpanRef.trace_id must be 32 lowercase hex digits, not zero: {self.trace_id!r}")
        if not _is_hex_id(self.span_id, 16):
            raise ValueError(f"SpanRef.span_id must be 16 lowercase hex digits, not zero: {self.span_id!r}")


def _is_hex_id(value: object, digits: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == digits
        and value.strip("0123456789abcdef") == ""
        and value.strip("0") != ""
    )


class ToolTrace(Protocol):
    """One tool execution's span (``execute_tool {name}``). ``trace_id``/``span_id`` go into its events."""

    trace_id: str | None
    span_id: str | None

    def succeeded(self) -> None: ...

    def failed(self, error_type: str, message: str) -> None: ...


class RunTrace(Protocol):
    """An agent run's span (``invoke_agent {name}``): while it is current (``current_run``), it is the
    parent of the executions and the tool executions started in it. Its ids are there to parent those on
    (they go into no event), so a tracer gives them even when the run is sampled out: its children are
    then sampled out with it."""

    trace_id: str | None
    span_id: str | None

    def succeeded(self) -> None: ...

    def failed(self, error_type: str, message: str) -> None: ...


TurnTrace = RunTrace
"""One turn's span (``invoke_workflow {name}``, ``turns.turn_span``), of an agent run's shape: from its start
until it ends it is the caller's current span, so the executions, agent runs and tool executions of the turn
hang under it, in one trace."""


class ExecutionTracer(Protocol):
    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> ExecutionTrace:
        """An execution's span: under the current run (``current_run``) when there is one, else under
        whatever span is current in OpenTelemetry's context, else a root."""
        ...

    def tool(
        self, tool_name: str, tool_call_id: str | None, context: ExecutionContext, parent: SpanRef | None
    ) -> ToolTrace:
        """A tool execution's span: under the current run when there is one, else under ``parent`` (the
        span of the execution that asked for the call: ``span_ref`` of its trace), else under whatever
        span is current in OpenTelemetry's context, else a root."""
        ...

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> RunTrace:
        """An agent run's span: under the current run when there is one (an agent run by another's tool),
        else under whatever span is current in OpenTelemetry's context, else a root."""
        ...


@runtime_checkable
class TurnTracer(Protocol):
    """What a tracer has beyond ``ExecutionTracer`` to give a turn its span (``turns.turn_span``); the
    tracers of ``llm_ledger.telemetry`` have it. Not part of ``ExecutionTracer``, so that a tracer written
    before turns had spans still serves: ``turn_span`` makes no span with it."""

    def turn(self, name: str, context: ExecutionContext) -> TurnTrace:
        """A turn's span, made the current span until it ends: under the current run when there is one, else
        under whatever span is current in OpenTelemetry's context, else a root. While it is current, no run
        is (``current_run``): the turn's executions hang under it, or under a span the caller opened in it."""
        ...


current_run: ContextVar[SpanRef | None] = ContextVar("llm_ledger_current_run", default=None)
"""The agent run in progress in this context, set by whoever drives the run (``llm_ledger.agno``)."""


def span_ref(trace: ExecutionTrace | RunTrace) -> SpanRef | None:
    """The span of ``trace`` to parent others on (``current_run``, a tool's ``parent``).

    The trace's own ``ref`` when it has one: the tracers of ``llm_ledger.telemetry`` give one even for a
    span that is sampled out (whose ``trace_id``/``span_id`` are None, as its events must carry no ids of
    a span that does not exist), so that its children are sampled out with it rather than starting
    traces of their own. Else a ref from its ids, when it has them."""
    ref = getattr(trace, "ref", None)
    if isinstance(ref, SpanRef):
        return ref
    trace_id, span_id = trace.trace_id, trace.span_id
    return SpanRef(trace_id, span_id) if trace_id and span_id else None


class _NoTrace:
    trace_id: str | None = None
    span_id: str | None = None

    def attempt(self, *args: object) -> _NoTrace:
        return self

    def succeeded(self, *args: object) -> None:
        return None

    def failed(self, *args: object) -> None:
        return None

    def fallback(self, *args: object) -> None:
        return None


_NO_TRACE = _NoTrace()


class NoTracer:
    """Records nothing."""

    def start(self, *args: object) -> ExecutionTrace:
        return _NO_TRACE

    def tool(self, *args: object) -> ToolTrace:
        return _NO_TRACE

    def agent_run(self, *args: object) -> RunTrace:
        return _NO_TRACE

    def turn(self, *args: object) -> TurnTrace:
        return _NO_TRACE


_default_tracer: ExecutionTracer | None = None
_default_factory: Callable[[], ExecutionTracer] = NoTracer
_lock = threading.Lock()


def set_default_tracer_factory(factory: Callable[[], ExecutionTracer]) -> None:
    """How the default tracer is made on first use (the package sets it to OpenTelemetry's)."""
    global _default_factory, _default_tracer
    with _lock:
        _default_factory, _default_tracer = factory, None


def get_default_tracer() -> ExecutionTracer:
    global _default_tracer
    tracer = _default_tracer  # made once: no lock on every call after that
    if tracer is not None:
        return tracer
    with _lock:
        if _default_tracer is None:
            _default_tracer = _default_factory()
        return _default_tracer
