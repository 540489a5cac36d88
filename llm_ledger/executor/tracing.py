"""The tracing seam: what the executor tells a tracer about an execution and its attempts.

The executor knows nothing of OpenTelemetry; ``llm_ledger.telemetry`` implements this protocol with
GenAI spans. With no tracer configured the no-op below costs a few attribute lookups per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol
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
    """A span by its ids (hex), to parent another span on: an execution's, or an agent run's."""

    trace_id: str
    span_id: str


class ToolTrace(Protocol):
    """One tool execution's span (``execute_tool {name}``). ``trace_id``/``span_id`` go into its events."""

    trace_id: str | None
    span_id: str | None

    def succeeded(self) -> None: ...

    def failed(self, error_type: str, message: str) -> None: ...


class RunTrace(Protocol):
    """An agent run's span (``invoke_agent {name}``): while it is current (``current_run``), it is the
    parent of the executions and the tool executions started in it."""

    trace_id: str | None
    span_id: str | None

    def succeeded(self) -> None: ...

    def failed(self, error_type: str, message: str) -> None: ...


class ExecutionTracer(Protocol):
    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> ExecutionTrace:
        """An execution's span; its parent is the current run's (``current_run``), if any."""
        ...

    def tool(
        self, tool_name: str, tool_call_id: str | None, context: ExecutionContext, parent: SpanRef | None
    ) -> ToolTrace:
        """A tool execution's span: under the current run when there is one, else under ``parent`` (the
        span of the execution that asked for the call), else a root."""
        ...

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> RunTrace:
        """An agent run's span, under whatever span is current in OpenTelemetry's context."""
        ...


current_run: ContextVar[SpanRef | None] = ContextVar("llm_ledger_current_run", default=None)
"""The agent run in progress in this context, set by whoever drives the run (``llm_ledger.agno``)."""


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
