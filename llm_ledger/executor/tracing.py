"""The tracing seam: what the executor tells a tracer about an execution and its attempts.

The executor knows nothing of OpenTelemetry; ``llm_ledger.telemetry`` implements this protocol with
GenAI spans. With no tracer configured the no-op below costs a few attribute lookups per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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


class ExecutionTracer(Protocol):
    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> ExecutionTrace: ...


class _NoTrace:
    trace_id = None
    span_id = None

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
        return _NO_TRACE  # type: ignore[return-value]


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
