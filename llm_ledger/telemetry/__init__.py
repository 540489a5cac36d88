"""OpenTelemetry for llm-ledger: providers from the standard OTEL_* variables, and GenAI spans.
See docs/ARCHITECTURE.md for why spans are built off the call path."""

from llm_ledger.telemetry.deferred import DeferredExecutionTracer
from llm_ledger.telemetry.setup import (
    EXIT_BUDGET_SECONDS,
    ExportCounters,
    Telemetry,
    application_has_tracer_provider,
    build_telemetry,
    configure_tracing,
)
from llm_ledger.telemetry.spans import OtelExecutionTracer

__all__ = [
    "EXIT_BUDGET_SECONDS",
    "DeferredExecutionTracer",
    "ExportCounters",
    "OtelExecutionTracer",
    "Telemetry",
    "application_has_tracer_provider",
    "build_telemetry",
    "configure_tracing",
]
