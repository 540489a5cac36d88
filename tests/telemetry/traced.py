"""An executor tracer exporting to a real OTLP receiver, for the tests of this package: either spans made
through the OpenTelemetry API on providers of the application's (``api``), or the deferred spans of the
providers ``build_telemetry`` makes (``deferred``); over gRPC or HTTP. And the executors the tests trace
with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage
from llm_ledger.executor import RetryPolicy
from llm_ledger.executor.tracing import ExecutionTracer
from llm_ledger.telemetry import DeferredExecutionTracer, OtelExecutionTracer, Telemetry, build_telemetry
from tests.telemetry.receivers import GrpcOtlpReceiver, HttpOtlpReceiver

TRACERS = ["grpc/api", "http/api", "grpc/deferred", "http/deferred"]
"""The fixture parameters: protocol/how the spans are made."""
MESSAGES = [LLMMessage(role="user", content="Which rules apply?")]
NO_WAIT = RetryPolicy(base_delay=0, jitter=0)


@dataclass
class Traced:
    receiver: GrpcOtlpReceiver | HttpOtlpReceiver
    tracer: ExecutionTracer
    tracer_provider: TracerProvider
    flush: Callable[[], None]


def traced_executor(traced: Traced, sink: InMemorySink, model: str, *fallbacks: str, step: str) -> LLMExecutor:
    """An executor of ``model`` (falling back to ``fallbacks``) tracing to ``traced``: no retries, no waits."""
    return LLMExecutor(model, fallback_models=list(fallbacks), step_name=step, max_retries=0, sink=sink,
                       retry_policy=NO_WAIT, tracer=traced.tracer)  # fmt: skip


class DropsSpansNamed(Sampler):
    """Samples out every span whose name starts with ``prefix`` and samples in everything else, whatever its
    parent: so that a child of a sampled-out span is dropped only because the tracer keeps a trace whole,
    never by the sampler."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if name.startswith(self.prefix):
            return SamplingResult(Decision.DROP)
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"DropsSpansNamed({self.prefix!r})"


def _providers(kind: str, endpoint: str, sampler: Sampler | None) -> tuple[TracerProvider, MeterProvider]:
    spans: SpanExporter
    metrics: MetricExporter
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        spans, metrics = (
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            OTLPMetricExporter(endpoint=endpoint, insecure=True),
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        spans, metrics = HttpSpans(endpoint=f"{endpoint}/v1/traces"), HttpMetrics(endpoint=f"{endpoint}/v1/metrics")
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(metrics, export_interval_millis=100)])
    return tracer_provider, meter_provider


@contextmanager
def traced_to(param: str, sampler: Sampler | None = None) -> Iterator[Traced]:
    """A receiver and a tracer exporting to it, as ``param`` (one of ``TRACERS``) says; ``sampler``
    replaces the providers' default one (ParentBased(ALWAYS_ON))."""
    protocol, how = param.split("/")
    receiver_class = GrpcOtlpReceiver if protocol == "grpc" else HttpOtlpReceiver
    with receiver_class() as receiver:
        if how == "api":
            tracer_provider, meter_provider = _providers(protocol, receiver.endpoint, sampler)
            api_tracer = OtelExecutionTracer(tracer_provider, meter_provider)

            def flush_api() -> None:
                tracer_provider.force_flush()
                meter_provider.force_flush(timeout_millis=5000)

            try:
                yield Traced(receiver, api_tracer, tracer_provider, flush_api)
            finally:
                tracer_provider.shutdown()
                meter_provider.shutdown(timeout_millis=2000)
            return
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if protocol == "grpc" else "http/protobuf",
        }
        telemetry = build_telemetry(env)
        assert telemetry.tracer_provider is not None and telemetry.meter_provider is not None
        built = telemetry.tracer_provider
        if sampler is not None:  # the deferred tracer asks the provider's sampler, as configure_tracing made it
            provider = TracerProvider(resource=built.resource, sampler=sampler, shutdown_on_exit=False)
            telemetry = Telemetry(provider, telemetry.meter_provider, telemetry.counters, telemetry.span_processor)
        deferred = DeferredExecutionTracer(telemetry)
        spans_provider, metrics_provider = telemetry.tracer_provider, telemetry.meter_provider
        assert spans_provider is not None and metrics_provider is not None

        def flush_deferred() -> None:
            assert deferred.flush()
            assert telemetry.span_processor is not None
            telemetry.span_processor.force_flush()
            metrics_provider.force_flush(timeout_millis=5000)

        try:
            yield Traced(receiver, deferred, spans_provider, flush_deferred)
        finally:
            telemetry.shutdown()
            if built is not spans_provider:
                built.shutdown()  # the one that holds the span processor
