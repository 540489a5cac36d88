"""Wiring of the process-wide defaults (sink: the store's writer; tracer: OpenTelemetry), and closing."""

from __future__ import annotations

import asyncio

from llm_ledger.executor.sink import EventSink, set_default_sink, set_default_sink_factory
from llm_ledger.executor.tracing import ExecutionTracer, NoTracer, set_default_tracer_factory


def _default_writer() -> EventSink:
    # Imported on first use: an application that always passes sink= never loads the store.
    from llm_ledger.store.default import make_default_writer

    return make_default_writer()


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
    """Write (or spool) every event recorded by executors built without ``sink=``, within
    ``wait_seconds``. It also happens at interpreter exit; this is for applications that want it
    done, and awaited, at shutdown."""
    from llm_ledger.store.default import close_default_writers

    await asyncio.to_thread(close_default_writers, wait_seconds)
    set_default_sink(None)
