"""A turn's span as the caller's current span (``TurnTracer.turn``), for both tracers.

What starts in a turn (its executions, agent runs, and spans of the caller's own) finds its parent where
it finds the caller's spans, in OpenTelemetry's context: so the live and the deferred tracer parent it
alike, and a span the caller opens inside the turn (a step of its own) sits between the two. No agent
run is current while the turn is (``current_run``): one that was, when the turn began inside it, is the
turn's parent, and the turn's executions hang under the turn, not beside it.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from llm_ledger.executor.tracing import SpanRef, ToolTrace, current_run


class CurrentTurn:
    """A turn's span, OpenTelemetry's current span from its start until it ends. ``span`` is the tracer's
    own trace of it (a one-span trace, as an agent run's); ``current`` what children see as their parent
    (the span itself, or for the deferred tracer a non-recording span with its ids)."""

    __slots__ = ("_run_token", "_span", "_token", "span_id", "trace_id")

    def __init__(self, span: ToolTrace, current: Span) -> None:
        self._span = span
        self.trace_id, self.span_id = span.trace_id, span.span_id
        self._token: Token[Context] | None = otel_context.attach(trace.set_span_in_context(current))
        self._run_token: Token[SpanRef | None] | None = current_run.set(None)

    def succeeded(self) -> None:
        self._leave()
        self._span.succeeded()

    def failed(self, error_type: str, message: str) -> None:
        self._leave()
        self._span.failed(error_type, message)

    def _leave(self) -> None:
        if self._token is None or self._run_token is None:  # a second end is ignored, as the span ignores it
            return
        token, run_token, self._token, self._run_token = self._token, self._run_token, None, None
        try:
            # What OpenTelemetry's detach does (its default runtime context keeps the context in a
            # ContextVar), without the error it logs for a token of another contextvars context: the turn
            # then ends in another context than it began in (an async generator holding it, closed by
            # asyncio's finalizer in a task of its own). That context is not the one the turn changed,
            # and a normal end is no error.
            token.var.reset(token)
        except ValueError:
            return
        current_run.reset(run_token)
