"""A turn's span as the caller's current span (``ExecutionTracer.turn``), for both tracers.

What starts in a turn (its executions, agent runs, and spans of the caller's own) finds its parent where
it finds the caller's spans, in OpenTelemetry's context: so the live and the deferred tracer parent it
alike, and a span the caller opens inside the turn (a step of its own) sits between the two.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from llm_ledger.executor.tracing import ToolTrace


class CurrentTurn:
    """A turn's span, OpenTelemetry's current span from its start until it ends. ``span`` is the tracer's
    own trace of it (a one-span trace, as a tool execution's); ``current`` what children see as their
    parent (the span itself, or for the deferred tracer a non-recording span with its ids)."""

    __slots__ = ("_span", "_token", "span_id", "trace_id")

    def __init__(self, span: ToolTrace, current: Span) -> None:
        self._span = span
        self.trace_id, self.span_id = span.trace_id, span.span_id
        self._token: Token[Context] | None = otel_context.attach(trace.set_span_in_context(current))

    def succeeded(self) -> None:
        self._leave()
        self._span.succeeded()

    def failed(self, error_type: str, message: str) -> None:
        self._leave()
        self._span.failed(error_type, message)

    def _leave(self) -> None:
        if self._token is not None:  # a second end is ignored, as the span ignores it
            otel_context.detach(self._token)
            self._token = None
