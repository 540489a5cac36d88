"""Wiring of the process-wide defaults (sink: the store's writer; tracer: OpenTelemetry), and closing."""

from __future__ import annotations

import asyncio
import sys

from llm_ledger.executor.errors import ConfigurationError
from llm_ledger.executor.sink import EventSink, set_default_sink, set_default_sink_factory
from llm_ledger.executor.tracing import (
    ExecutionTracer,
    NoTracer,
    get_default_tracer,
    set_default_tracer_factory,
)


def _default_writer() -> EventSink:
    # Imported on first use: an application that always passes sink= never loads the store.
    from llm_ledger.store.default import make_default_writer
    from llm_ledger.store.settings import StoreConfigurationError

    try:
        return make_default_writer()
    except StoreConfigurationError as exc:
        # The call fails before any event exists, naming the variable to fix; the next call tries again.
        raise ConfigurationError(str(exc)) from None


set_default_sink_factory(_default_writer)


def _default_tracer() -> ExecutionTracer:
    # First LLM call: install OTLP export if the OTEL_* variables ask for it (unless the application
    # has its own provider). With no provider at all, spans would be no-ops: skip them entirely.
    from llm_ledger.telemetry import (
        DeferredExecutionTracer,
        OtelExecutionTracer,
        application_has_tracer_provider,
        configure_tracing,
    )

    installed = configure_tracing()
    if installed is not None and installed.tracer_provider is not None:
        return DeferredExecutionTracer(installed)  # ours: spans built off the call path
    if application_has_tracer_provider():
        return OtelExecutionTracer()  # the application's: spans made through its provider
    return NoTracer()


set_default_tracer_factory(_default_tracer)


async def aclose(wait_seconds: float = 5.0) -> None:
    """Write every event recorded by executors built without ``sink=`` (what the database does not take
    in time stays in the journal, for the next start), and export the traces of those executions, each
    within ``wait_seconds``. Both also happen at interpreter exit, the traces with a short budget; this
    is for applications that want it done, and awaited, at shutdown."""
    from llm_ledger.store.default import close_default_writers

    await asyncio.to_thread(close_default_writers, wait_seconds)
    set_default_sink(None)
    await asyncio.to_thread(_flush_traces, wait_seconds)


def _flush_traces(wait_seconds: float) -> None:
    if "llm_ledger.telemetry" not in sys.modules:
        return  # no execution asked for a tracer: there is nothing to export
    from llm_ledger.telemetry import DeferredExecutionTracer, configure_tracing

    tracer = get_default_tracer()
    if isinstance(tracer, DeferredExecutionTracer):
        tracer.flush(wait_seconds)  # spans are built off the call path: hand the last ones over
    installed = configure_tracing()
    if installed is not None and installed.tracer_provider is not None:
        installed.tracer_provider.force_flush(timeout_millis=int(wait_seconds * 1000))
