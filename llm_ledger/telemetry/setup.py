"""Tracer and meter providers from the standard OTEL_* variables, that never hold the process up.

Measured with the SDK's defaults and no collector: ``shutdown()`` blocks 30 s and ``force_flush()``
35-50 s (and still returns True), and the default 2,048-span queue drops half the spans of a tight
loop even with a healthy collector. So: a larger queue, exporter timeouts of a few seconds, the SDK's
own exit hooks off, and an exit hook of ours that gives the exporters at most ``EXIT_BUDGET_SECONDS``.
Spans that could not be exported are counted and reported once.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from llm_ledger.environment import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
    variable,
)

log = logging.getLogger("llm_ledger.telemetry")

EXIT_BUDGET_SECONDS = 0.75
QUEUE_SIZE = 65_536
EXPORT_TIMEOUT_SECONDS = 5.0


@dataclass
class ExportCounters:
    """Spans handed to the exporter, exported, and lost (export failed, or the queue was full)."""

    submitted: int = 0
    exported: int = 0
    failed: int = 0

    @property
    def dropped(self) -> int:
        return self.submitted - self.exported


class _CountingExporter(SpanExporter):
    """Counts what the wrapped exporter manages to send, and says once when it starts failing."""

    def __init__(self, inner: SpanExporter, counters: ExportCounters) -> None:
        self._inner = inner
        self._counters = counters
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:  # noqa: BLE001 - an exporter that raises has failed like any other
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._counters.exported += len(spans)
        else:
            self._counters.failed += len(spans)
            if not self._warned:
                self._warned = True
                log.warning(
                    "llm-ledger: spans cannot be exported to the OTLP endpoint; they are dropped "
                    "(the events in the store are unaffected)"
                )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingProcessor(BatchSpanProcessor):
    def __init__(self, exporter: SpanExporter, counters: ExportCounters) -> None:
        super().__init__(
            _CountingExporter(exporter, counters),
            max_queue_size=QUEUE_SIZE,
            max_export_batch_size=512,
            schedule_delay_millis=500,
        )
        self._counters = counters

    def on_end(self, span: ReadableSpan) -> None:
        self._counters.submitted += 1
        super().on_end(span)


@dataclass
class Telemetry:
    """What ``configure_tracing`` installed."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    counters: ExportCounters
    span_processor: BatchSpanProcessor | None = None

    def shutdown(self, budget_seconds: float = EXIT_BUDGET_SECONDS) -> None:
        """Flush and stop, giving up after ``budget_seconds`` (the exporter threads are daemons)."""
        providers = [p for p in (self.tracer_provider, self.meter_provider) if p is not None]
        done = threading.Event()

        def stop() -> None:
            for provider in providers:
                with contextlib.suppress(Exception):  # best effort, at exit
                    provider.shutdown()
            done.set()

        threading.Thread(target=stop, name="llm-ledger-otel-shutdown", daemon=True).start()
        done.wait(budget_seconds)
        if self.counters.dropped > 0:
            log.warning("llm-ledger: %d of %d spans were not exported", self.counters.dropped, self.counters.submitted)


_installed: Telemetry | None = None
_lock = threading.Lock()


def _endpoint_configured(env: Mapping[str, str] | None, signal: str) -> bool:
    if (OTEL_SDK_DISABLED.get(env) or "").lower() == "true":
        return False
    if variable(f"OTEL_{signal.upper()}_EXPORTER").value(env).lower() == "none":
        return False
    return bool(
        variable(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT").get(env) or OTEL_EXPORTER_OTLP_ENDPOINT.get(env)
    )


def _protocol(env: Mapping[str, str] | None, signal: str) -> str:
    protocol = variable(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL").get(env) or OTEL_EXPORTER_OTLP_PROTOCOL.value(
        env
    )
    protocol = protocol.lower()
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (use grpc or http/protobuf)")
    return protocol


def _timeout(env: Mapping[str, str] | None) -> float | None:
    # The exporters read OTEL_EXPORTER_OTLP_TIMEOUT themselves; only the default is shortened.
    return None if OTEL_EXPORTER_OTLP_TIMEOUT.get(env) else EXPORT_TIMEOUT_SECONDS


def _endpoint(env: Mapping[str, str] | None, signal: str, protocol: str) -> str | None:
    """The signal's endpoint as the OTLP exporter specification derives it (the exporters do the same
    from os.environ; this also serves an explicit mapping)."""
    specific = variable(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT").get(env)
    if specific:
        return specific
    base = OTEL_EXPORTER_OTLP_ENDPOINT.get(env)
    if not base or protocol == "grpc":
        return base
    return f"{base.rstrip('/')}/v1/{signal}"


def _exporter(env: Mapping[str, str] | None, signal: str) -> Any:
    """The OTLP exporter of ``signal`` ("traces" or "metrics") for the configured protocol and endpoint."""
    protocol = _protocol(env, signal)
    endpoint = _endpoint(env, signal, protocol)
    kind = "trace_exporter" if signal == "traces" else "metric_exporter"
    name = "OTLPSpanExporter" if signal == "traces" else "OTLPMetricExporter"
    if protocol == "grpc":
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{kind}")
        insecure = endpoint.startswith("http://") if endpoint else None
        return getattr(module, name)(endpoint=endpoint, insecure=insecure, timeout=_timeout(env))
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{kind}")
    return getattr(module, name)(endpoint=endpoint, timeout=_timeout(env))


def application_has_tracer_provider() -> bool:
    """Whether something other than OpenTelemetry's default no-op proxy is installed."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class _FirstOnly(logging.Filter):
    """Lets the first record of each message through, and no repeat."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def _quiet_sdk_logs() -> None:
    # The OTLP exporters log every failed attempt and retry, and the batch processor every dropped
    # span: thousands of lines when the collector is down. Ours says it once, with the count at exit.
    for name in ("opentelemetry.exporter.otlp", "opentelemetry.sdk._shared_internal"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _FirstOnly) for f in logger.filters):
            logger.addFilter(_FirstOnly())
    logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)


def build_telemetry(environ: Mapping[str, str] | None, *, traces: bool = True, metrics_too: bool = True) -> Telemetry:
    """Tracer and meter providers exporting OTLP as ``environ`` says, without installing them."""
    _quiet_sdk_logs()
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the default name is ours.
    named = OTEL_SERVICE_NAME.is_set(environ) or "service.name=" in (OTEL_RESOURCE_ATTRIBUTES.get(environ) or "")
    resource = Resource.create({} if named else {"service.name": "llm-ledger"})
    counters = ExportCounters()
    tracer_provider = processor = None
    if traces:
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        processor = _CountingProcessor(_exporter(environ, "traces"), counters)
        tracer_provider.add_span_processor(processor)
    meter_provider = None
    if metrics_too:
        reader = PeriodicExportingMetricReader(_exporter(environ, "metrics"), export_interval_millis=10_000)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    return Telemetry(tracer_provider, meter_provider, counters, processor)


def configure_tracing(environ: Mapping[str, str] | None = None) -> Telemetry | None:
    """Install tracer (and meter) providers exporting OTLP as the OTEL_* variables say.

    Does nothing, and returns None, when no OTLP endpoint is configured, or when the application has
    already installed a tracer provider (the executor then uses that one, unchanged). Called again,
    it returns what it installed the first time.
    """
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        wants_traces = _endpoint_configured(environ, "traces") and not application_has_tracer_provider()
        wants_metrics = _endpoint_configured(environ, "metrics") and not isinstance(
            metrics.get_meter_provider(), MeterProvider
        )
        if not wants_traces and not wants_metrics:
            return None
        installed = build_telemetry(environ, traces=wants_traces, metrics_too=wants_metrics)
        if installed.tracer_provider is not None:
            trace.set_tracer_provider(installed.tracer_provider)
        if installed.meter_provider is not None:
            metrics.set_meter_provider(installed.meter_provider)
        atexit.register(installed.shutdown)
        _installed = installed
        return installed
