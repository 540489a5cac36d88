"""The OTLP test receivers against the real OpenTelemetry SDK and its OTLP exporters (gRPC and HTTP).

No global provider is set: every test builds its own TracerProvider / MeterProvider, talks to the
receiver through the provider object and shuts it down (exporters with short timeouts) before asserting.
"""

from __future__ import annotations

import gzip
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Literal, cast

import grpc  # type: ignore[import-untyped]
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.telemetry.receivers import (
    AttributeValue,
    GrpcOtlpReceiver,
    HistogramPoint,
    HttpOtlpReceiver,
    ReceivedEvent,
    closed_endpoint,
    decode_any_value,
    neutralise_otel_environment,
)

Protocol = Literal["grpc", "http"]
PROTOCOLS: list[Protocol] = ["grpc", "http"]
Receiver = GrpcOtlpReceiver | HttpOtlpReceiver

SERVICE = "llm-ledger-tests"
# Bounds far from the noise of a loaded machine: what normally takes milliseconds gets a minute to happen,
# and "promptly" means well before the deadlines of 60 s (or the stall without end) the tests set against it.
ARRIVAL_SECONDS = 60.0
PROMPTLY = 30.0

pytestmark = pytest.mark.timeout(4 * ARRIVAL_SECONDS)
"""The tests' own bounded waits decide, not the per-test timeout: a test waits for at most two of them."""

CHAT_ATTRIBUTES: dict[str, AttributeValue] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
}


@pytest.fixture(autouse=True)
def _clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    neutralise_otel_environment(monkeypatch)


def _receiver(protocol: Protocol, *, stall: bool = False) -> Receiver:
    return GrpcOtlpReceiver(stall=stall) if protocol == "grpc" else HttpOtlpReceiver(stall=stall)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> Protocol:
    return cast(Protocol, request.param)


@pytest.fixture
def receiver(protocol: Protocol) -> Iterator[Receiver]:
    with _receiver(protocol) as r:
        yield r


def _resource() -> Resource:
    # Created per test: Resource.create reads OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME.
    return Resource.create({"service.name": SERVICE, "deployment.environment.name": "test"})


def _span_exporter(
    protocol: Protocol, endpoint: str, *, timeout: float = 2.0, compression: str | None = None
) -> SpanExporter:
    if protocol == "grpc":
        grpc_compression = {None: None, "gzip": grpc.Compression.Gzip}[compression]
        return GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=timeout, compression=grpc_compression)
    http_compression = {None: None, "gzip": HttpCompression.Gzip, "deflate": HttpCompression.Deflate}[compression]
    return HttpSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=timeout, compression=http_compression)


def _metric_exporter(protocol: Protocol, endpoint: str, *, timeout: float = 2.0) -> MetricExporter:
    if protocol == "grpc":
        return GrpcMetricExporter(endpoint=endpoint, insecure=True, timeout=timeout)
    return HttpMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=timeout)


def _finished_span(name: str = "lonely span") -> ReadableSpan:
    """An ended SDK span, to hand to an exporter directly (the provider has no processor)."""
    provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
    span = provider.get_tracer("tests.telemetry").start_span(name)
    span.end()
    provider.shutdown()
    assert isinstance(span, ReadableSpan)
    return span


def _export_in_thread(exporter: SpanExporter, results: list[SpanExportResult | BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(exporter.export([_finished_span()]))
        except BaseException as error:  # noqa: BLE001 - reported to the test through results
            results.append(error)

    thread = threading.Thread(target=run, name="test-export", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True], ids=["simple", "batch"])
def test_parent_and_client_child_span_arrive_decoded(protocol: Protocol, receiver: Receiver, batch: bool) -> None:
    exporter = _span_exporter(protocol, receiver.endpoint)
    processor: SpanProcessor = (
        BatchSpanProcessor(exporter, schedule_delay_millis=50, export_timeout_millis=2_000)
        if batch
        else SimpleSpanProcessor(exporter)
    )
    provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        tracer = provider.get_tracer("llm_ledger.tests", "0.1.0")
        with (
            tracer.start_as_current_span("invoke_agent ledger") as parent,
            tracer.start_as_current_span(
                "chat gpt-4o-mini",
                kind=SpanKind.CLIENT,
                attributes={
                    **CHAT_ATTRIBUTES,
                    "gen_ai.usage.input_tokens": 12,
                    "gen_ai.request.temperature": 0.25,
                    "gen_ai.request.stream": False,
                    "gen_ai.response.finish_reasons": ["stop", "length"],
                },
            ) as child,
        ):
            child.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
            child.set_status(Status(StatusCode.ERROR, "rate limited"))
    finally:
        provider.shutdown()

    spans = receiver.wait_for_spans(2, timeout=ARRIVAL_SECONDS)
    assert len(spans) == 2
    got_parent = receiver.span("invoke_agent ledger")
    got_child = receiver.span("chat gpt-4o-mini")

    trace_id = format(child.get_span_context().trace_id, "032x")
    assert len(trace_id) == 32
    assert got_child.trace_id == got_parent.trace_id == trace_id
    assert got_parent.span_id == format(parent.get_span_context().span_id, "016x")
    assert got_child.span_id == format(child.get_span_context().span_id, "016x")
    assert got_child.parent_span_id == got_parent.span_id
    assert got_parent.parent_span_id is None

    assert got_parent.kind == "INTERNAL"
    assert got_child.kind == "CLIENT"
    assert got_child.attributes == {
        **CHAT_ATTRIBUTES,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.request.temperature": 0.25,
        "gen_ai.request.stream": False,
        "gen_ai.response.finish_reasons": ["stop", "length"],
    }
    assert got_parent.attributes == {}
    assert got_child.status_code == "ERROR"
    assert got_child.status_message == "rate limited"
    assert got_parent.status_code == "UNSET"
    assert got_child.events == [("gen_ai.choice", {"index": 0, "finish_reason": "stop"})]
    assert got_child.events[0] == ReceivedEvent("gen_ai.choice", {"index": 0, "finish_reason": "stop"})

    assert got_child.resource["service.name"] == SERVICE
    assert got_child.resource["telemetry.sdk.language"] == "python"
    assert got_child.scope_name == "llm_ledger.tests"
    assert got_parent.start_ns <= got_child.start_ns <= got_child.end_ns <= got_parent.end_ns

    if not batch:
        assert len(receiver.trace_requests()) == 2  # SimpleSpanProcessor: one Export per span
    user_agent = receiver.request_headers("traces")[0]["user-agent"]
    assert "OTel-OTLP-Exporter-Python" in user_agent


@pytest.mark.parametrize(
    ("protocol", "compression"),
    [("grpc", "gzip"), ("http", "gzip"), ("http", "deflate")],
)
def test_compressed_exports_are_decoded(protocol: Protocol, compression: str) -> None:
    with _receiver(protocol) as receiver:
        exporter = _span_exporter(protocol, receiver.endpoint, compression=compression)
        try:
            assert exporter.export([_finished_span("compressed")]) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        (span,) = receiver.wait_for_spans(1, timeout=ARRIVAL_SECONDS)
        assert span.name == "compressed"
        if protocol == "http":
            assert receiver.request_headers("traces")[0]["content-encoding"] == compression


def test_wait_for_spans_reports_what_arrived(receiver: Receiver) -> None:
    with pytest.raises(AssertionError, match=r"expected at least 1 spans within 0.1s; 0 arrived: nothing"):
        receiver.wait_for_spans(1, timeout=0.1)
    with pytest.raises(AssertionError, match="exactly one span named 'missing'"):
        receiver.span("missing")


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------


def test_gen_ai_histograms_arrive_with_their_attributes(protocol: Protocol, receiver: Receiver) -> None:
    reader = PeriodicExportingMetricReader(
        _metric_exporter(protocol, receiver.endpoint), export_interval_millis=60_000, export_timeout_millis=2_000
    )
    provider = MeterProvider(metric_readers=[reader], resource=_resource(), shutdown_on_exit=False)
    try:
        meter = provider.get_meter("llm_ledger", "0.1.0")
        duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s", description="GenAI duration")
        tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
        duration.record(0.5, CHAT_ATTRIBUTES)
        duration.record(1.25, CHAT_ATTRIBUTES)
        tokens.record(12, {**CHAT_ATTRIBUTES, "gen_ai.token.type": "input"})
        tokens.record(30, {**CHAT_ATTRIBUTES, "gen_ai.token.type": "output"})
    finally:
        # One export, at shutdown: the 60 s interval never elapses.
        provider.shutdown(timeout_millis=3_000)

    receiver.wait_for_metric("gen_ai.client.token.usage", timeout=ARRIVAL_SECONDS)
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} <= receiver.metric_names()
    assert receiver.histogram_points("gen_ai.client.operation.duration") == [HistogramPoint(CHAT_ATTRIBUTES, 2, 1.75)]
    token_points = sorted(receiver.histogram_points("gen_ai.client.token.usage"), key=lambda p: str(p.attributes))
    assert token_points == [
        ({**CHAT_ATTRIBUTES, "gen_ai.token.type": "input"}, 1, 12.0),
        ({**CHAT_ATTRIBUTES, "gen_ai.token.type": "output"}, 1, 30.0),
    ]

    (metric,) = [m for m in receiver.metrics() if m.name == "gen_ai.client.operation.duration"]
    assert (metric.kind, metric.unit, metric.description) == ("histogram", "s", "GenAI duration")
    assert metric.temporality == "CUMULATIVE"
    assert metric.scope_name == "llm_ledger"
    assert metric.resource["service.name"] == SERVICE
    (point,) = metric.points
    assert (point.min, point.max) == (0.5, 1.25)
    assert sum(point.bucket_counts) == 2
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1


def test_histogram_points_rejects_a_metric_of_another_kind(protocol: Protocol, receiver: Receiver) -> None:
    reader = PeriodicExportingMetricReader(_metric_exporter(protocol, receiver.endpoint), export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader], resource=_resource(), shutdown_on_exit=False)
    try:
        provider.get_meter("llm_ledger").create_counter("ledger.events").add(3, {"kind": "attempt"})
    finally:
        provider.shutdown(timeout_millis=3_000)
    (metric,) = receiver.wait_for_metric("ledger.events", timeout=ARRIVAL_SECONDS)
    assert (metric.kind, metric.monotonic, metric.points[0].value) == ("sum", True, 3)
    with pytest.raises(AssertionError, match="arrived as a sum"):
        receiver.histogram_points("ledger.events")


# --------------------------------------------------------------------------------------------------------
# Failure modes
# --------------------------------------------------------------------------------------------------------


def test_stalled_receiver_makes_the_export_time_out(protocol: Protocol) -> None:
    receiver = _receiver(protocol, stall=True).start()
    try:
        exporter = _span_exporter(protocol, receiver.endpoint, timeout=0.5)
        try:
            started = time.monotonic()
            result = exporter.export([_finished_span()])
            elapsed = time.monotonic() - started
        finally:
            exporter.shutdown()
        assert result is SpanExportResult.FAILURE
        # The stall never ends by itself: only the exporter's 0.5 s deadline can have ended the call.
        assert elapsed < PROMPTLY
        assert receiver.export_attempts >= 1
        assert receiver.spans() == []
    finally:
        started = time.monotonic()
        receiver.stop()
        assert time.monotonic() - started < PROMPTLY


def test_stopping_a_stalled_receiver_does_not_wait_for_the_held_call(protocol: Protocol) -> None:
    receiver = _receiver(protocol, stall=True).start()
    # The held call would last the exporter's whole deadline: a stop that waited for it would take 60 s.
    exporter = _span_exporter(protocol, receiver.endpoint, timeout=60.0)
    results: list[SpanExportResult | BaseException] = []
    thread = _export_in_thread(exporter, results)
    try:
        receiver.wait_for_attempts(1, timeout=ARRIVAL_SECONDS)
        started = time.monotonic()
        receiver.stop()
        assert time.monotonic() - started < PROMPTLY
        exporter.shutdown()  # ends the exporter's retries against the now closed port
        thread.join(ARRIVAL_SECONDS)
        assert not thread.is_alive()
        assert results == [SpanExportResult.FAILURE]
        assert receiver.spans() == []
    finally:
        receiver.stop()
        exporter.shutdown()
        thread.join(ARRIVAL_SECONDS)


def test_releasing_a_stall_answers_the_held_call(protocol: Protocol) -> None:
    with _receiver(protocol, stall=True) as receiver:
        exporter = _span_exporter(protocol, receiver.endpoint, timeout=60.0)
        results: list[SpanExportResult | BaseException] = []
        thread = _export_in_thread(exporter, results)
        try:
            receiver.wait_for_attempts(1, timeout=ARRIVAL_SECONDS)
            assert receiver.stalled
            receiver.set_stall(False)
            thread.join(ARRIVAL_SECONDS)
            assert results == [SpanExportResult.SUCCESS]
            assert [s.name for s in receiver.spans()] == ["lonely span"]
        finally:
            exporter.shutdown()
            thread.join(ARRIVAL_SECONDS)
        receiver.clear()
        assert (receiver.spans(), receiver.trace_requests(), receiver.export_attempts) == ([], [], 0)


def test_closed_endpoint_fails_fast(protocol: Protocol) -> None:
    endpoint = closed_endpoint()
    assert endpoint.startswith("http://127.0.0.1:")
    exporter = _span_exporter(protocol, endpoint, timeout=0.5)
    try:
        started = time.monotonic()
        assert exporter.export([_finished_span()]) is SpanExportResult.FAILURE
        assert time.monotonic() - started < PROMPTLY
    finally:
        exporter.shutdown()


def test_restart_keeps_the_port(protocol: Protocol) -> None:
    receiver = _receiver(protocol)
    with receiver:
        endpoint = receiver.endpoint
    assert not receiver.running
    with receiver:
        assert receiver.endpoint == endpoint
        exporter = _span_exporter(protocol, receiver.endpoint)
        try:
            assert exporter.export([_finished_span()]) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert len(receiver.wait_for_spans(1, timeout=ARRIVAL_SECONDS)) == 1


# --------------------------------------------------------------------------------------------------------
# HTTP protocol details and decoding
# --------------------------------------------------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def test_http_receiver_protocol_errors_and_gzip() -> None:
    with HttpOtlpReceiver() as receiver:
        protobuf = {"Content-Type": "application/x-protobuf"}
        payload = ExportTraceServiceRequest().SerializeToString()
        assert _post(f"{receiver.endpoint}/v1/logs", payload, protobuf)[0] == 404
        assert _post(f"{receiver.endpoint}/v1/traces", b"{}", {"Content-Type": "application/json"})[0] == 415
        assert _post(f"{receiver.endpoint}/v1/traces", b"\xff\xff\xff", protobuf)[0] == 400
        assert _post(f"{receiver.endpoint}/v1/traces", b"not gzip", {**protobuf, "Content-Encoding": "gzip"})[0] == 400
        assert _post(f"{receiver.endpoint}/v1/traces", payload, {**protobuf, "Content-Encoding": "br"})[0] == 415
        assert receiver.trace_requests() == []

        status, body, content_type = _post(
            f"{receiver.endpoint}/v1/traces", gzip.compress(payload), {**protobuf, "Content-Encoding": "gzip"}
        )
        assert (status, body, content_type) == (200, b"", "application/x-protobuf")
        assert len(receiver.trace_requests()) == 1


def test_decode_any_value_covers_every_case() -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
                KeyValue(key="bytes", value=AnyValue(bytes_value=b"\x00\x01")),
                KeyValue(key="unset", value=AnyValue()),
                KeyValue(key="double", value=AnyValue(double_value=1.5)),
                KeyValue(key="bool", value=AnyValue(bool_value=True)),
                KeyValue(key="str", value=AnyValue(string_value="s")),
            ]
        )
    )
    assert decode_any_value(nested) == {
        "list": [1],
        "bytes": b"\x00\x01",
        "unset": None,
        "double": 1.5,
        "bool": True,
        "str": "s",
    }
