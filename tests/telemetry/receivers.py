"""In-process OTLP receivers for tests: what a collector would see, decoded into plain Python values.

Two receivers with the same read API, both on 127.0.0.1 with an OS-assigned port:

* :class:`GrpcOtlpReceiver`: a real OTLP/gRPC server (``grpcio`` + the generated services of
  ``opentelemetry-proto``) for ``opentelemetry.exporter.otlp.proto.grpc`` exporters::

      with GrpcOtlpReceiver() as receiver:
          exporter = OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True, timeout=2)
          ...
          (span,) = receiver.wait_for_spans(1)

* :class:`HttpOtlpReceiver`: OTLP/HTTP with binary protobuf (``POST /v1/traces``, ``POST /v1/metrics``,
  ``Content-Type: application/x-protobuf``, optional ``Content-Encoding: gzip`` or ``deflate``) for
  ``opentelemetry.exporter.otlp.proto.http`` exporters. The HTTP exporters take the *full* signal URL:
  ``OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")``. OTLP/JSON is not supported (415).

Read API (both receivers, thread-safe): :meth:`~_OtlpReceiver.spans`, :meth:`~_OtlpReceiver.wait_for_spans`,
:meth:`~_OtlpReceiver.spans_named`, :meth:`~_OtlpReceiver.span`, :meth:`~_OtlpReceiver.metrics`,
:meth:`~_OtlpReceiver.metric_names`, :meth:`~_OtlpReceiver.histogram_points`,
:meth:`~_OtlpReceiver.wait_for_metric`, the raw protobuf requests (:meth:`~_OtlpReceiver.trace_requests`,
:meth:`~_OtlpReceiver.metric_requests`), the transport headers of each stored request
(:meth:`~_OtlpReceiver.request_headers`) and :meth:`~_OtlpReceiver.clear`.

Metrics are stored as received: with the SDK's default CUMULATIVE temporality every export repeats the
running totals, so a ``force_flush()`` followed by ``shutdown()`` yields each point twice. Export once
(``MeterProvider.shutdown``) or look at the last point.

Failure modes for robustness tests:

* ``stall=True``: every Export call is accepted, counted in :attr:`~_OtlpReceiver.export_attempts`, then
  held without an answer until :meth:`~_OtlpReceiver.set_stall` ``(False)`` releases it, the client gives
  up (deadline, closed connection), or the receiver stops. Stalled requests are stored only if released
  while the client still waits. ``stop()`` never waits for them (gRPC ``server.stop(grace=0)``).
* :func:`closed_endpoint`: an ``http://127.0.0.1:<port>`` URL where nothing listens.

The exporters read many environment variables (``OTEL_EXPORTER_OTLP_*`` endpoint, headers, timeout,
compression, certificates, insecure, metric temporality and default histogram aggregation; ``OTEL_SDK_DISABLED``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ... for the SDK) and proxies (``http_proxy`` etc.:
``requests`` for OTLP/HTTP, grpc core for OTLP/gRPC). :func:`neutralise_otel_environment` removes them
for one test.
"""

from __future__ import annotations

import gzip
import os
import select
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Self, TypeAlias, cast
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import (
    MetricsServiceServicer,
    add_MetricsServiceServicer_to_server,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = [
    "AttributeValue",
    "GrpcOtlpReceiver",
    "HistogramPoint",
    "HttpOtlpReceiver",
    "ReceivedEvent",
    "ReceivedMetric",
    "ReceivedPoint",
    "ReceivedSpan",
    "closed_endpoint",
    "decode_any_value",
    "decode_attributes",
    "neutralise_otel_environment",
]

AttributeValue: TypeAlias = "str | bool | int | float | bytes | list[AttributeValue] | dict[str, AttributeValue] | None"
Signal = Literal["traces", "metrics"]

_POLL_INTERVAL: Final[float] = 0.02
_STALL_POLL_INTERVAL: Final[float] = 0.05
_STOP_TIMEOUT: Final[float] = 5.0

# --------------------------------------------------------------------------------------------------------
# Decoded values
# --------------------------------------------------------------------------------------------------------


class ReceivedEvent(NamedTuple):
    """A span event: compares equal to the plain tuple ``(name, attributes)``."""

    name: str
    attributes: dict[str, AttributeValue]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector received it. ``kind`` is the OTLP name without its prefix ("INTERNAL",
    "SERVER", "CLIENT", "PRODUCER", "CONSUMER", "UNSPECIFIED"); ``status_code`` is "UNSET", "OK" or
    "ERROR". Frozen but not hashable (it holds dicts)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    attributes: dict[str, AttributeValue]
    status_code: str
    status_message: str
    events: list[ReceivedEvent]
    resource: dict[str, AttributeValue]
    scope_name: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point. Gauge/sum points have ``value``; histogram, exponential histogram and summary
    points have ``count`` and ``sum`` (``None`` when the exporter left it out); explicit-bucket histograms
    also ``bucket_counts``, ``explicit_bounds``, ``min`` and ``max``."""

    attributes: dict[str, AttributeValue]
    start_ns: int
    time_ns: int
    value: int | float | None = None
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()


@dataclass(frozen=True)
class ReceivedMetric:
    """One metric of one export request. ``kind`` is the OTLP data case: "gauge", "sum", "histogram",
    "exponential_histogram" or "summary"; ``temporality`` is "CUMULATIVE", "DELTA" or ``None`` (gauge,
    summary); ``monotonic`` is set for sums only."""

    name: str
    kind: str
    unit: str
    description: str
    temporality: str | None
    monotonic: bool | None
    points: list[ReceivedPoint]
    resource: dict[str, AttributeValue]
    scope_name: str


class HistogramPoint(NamedTuple):
    """``(attributes, count, sum)`` of one histogram data point."""

    attributes: dict[str, AttributeValue]
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: (attributes, count, sum)
    sum: float | None


def decode_any_value(value: AnyValue) -> AttributeValue:
    """An OTLP ``AnyValue`` as a Python value: arrays become lists, kvlists dicts, unset ``None``."""
    case = value.WhichOneof("value")
    if case == "string_value":
        return value.string_value
    if case == "bool_value":
        return value.bool_value
    if case == "int_value":
        return value.int_value
    if case == "double_value":
        return value.double_value
    if case == "array_value":
        return [decode_any_value(item) for item in value.array_value.values]
    if case == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    if case == "bytes_value":
        return value.bytes_value
    if case is None:
        return None
    raise ValueError(f"unsupported AnyValue case {case!r}")


def decode_attributes(attributes: Iterable[KeyValue]) -> dict[str, AttributeValue]:
    return {kv.key: decode_any_value(kv.value) for kv in attributes}


def _enum_suffix(full_name: str, prefix: str) -> str:
    return full_name.removeprefix(prefix)


def _decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=_enum_suffix(Span.SpanKind.Name(span.kind), "SPAN_KIND_"),
                        attributes=decode_attributes(span.attributes),
                        status_code=_enum_suffix(Status.StatusCode.Name(span.status.code), "STATUS_CODE_"),
                        status_message=span.status.message,
                        events=[ReceivedEvent(e.name, decode_attributes(e.attributes)) for e in span.events],
                        resource=dict(resource),
                        scope_name=scope_spans.scope.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                )
    return spans


def _temporality(value: int) -> str:
    return _enum_suffix(AggregationTemporality.Name(value), "AGGREGATION_TEMPORALITY_")


def _decode_metric(metric: Metric, resource: dict[str, AttributeValue], scope_name: str) -> ReceivedMetric:
    kind = metric.WhichOneof("data") or "unset"
    points: list[ReceivedPoint] = []
    temporality: str | None = None
    monotonic: bool | None = None
    if kind in ("gauge", "sum"):
        number = metric.gauge if kind == "gauge" else metric.sum
        for p in number.data_points:
            value: int | float | None
            value_case = p.WhichOneof("value")
            value = p.as_int if value_case == "as_int" else p.as_double if value_case == "as_double" else None
            points.append(
                ReceivedPoint(decode_attributes(p.attributes), p.start_time_unix_nano, p.time_unix_nano, value=value)
            )
        if kind == "sum":
            temporality = _temporality(metric.sum.aggregation_temporality)
            monotonic = metric.sum.is_monotonic
    elif kind == "histogram":
        temporality = _temporality(metric.histogram.aggregation_temporality)
        for h in metric.histogram.data_points:
            points.append(
                ReceivedPoint(
                    decode_attributes(h.attributes),
                    h.start_time_unix_nano,
                    h.time_unix_nano,
                    count=h.count,
                    sum=h.sum if h.HasField("sum") else None,
                    min=h.min if h.HasField("min") else None,
                    max=h.max if h.HasField("max") else None,
                    bucket_counts=tuple(h.bucket_counts),
                    explicit_bounds=tuple(h.explicit_bounds),
                )
            )
    elif kind == "exponential_histogram":
        temporality = _temporality(metric.exponential_histogram.aggregation_temporality)
        for e in metric.exponential_histogram.data_points:
            points.append(
                ReceivedPoint(
                    decode_attributes(e.attributes),
                    e.start_time_unix_nano,
                    e.time_unix_nano,
                    count=e.count,
                    sum=e.sum if e.HasField("sum") else None,
                    min=e.min if e.HasField("min") else None,
                    max=e.max if e.HasField("max") else None,
                )
            )
    elif kind == "summary":
        for s in metric.summary.data_points:
            points.append(
                ReceivedPoint(
                    decode_attributes(s.attributes), s.start_time_unix_nano, s.time_unix_nano, count=s.count, sum=s.sum
                )
            )
    return ReceivedMetric(
        name=metric.name,
        kind=kind,
        unit=metric.unit,
        description=metric.description,
        temporality=temporality,
        monotonic=monotonic,
        points=points,
        resource=dict(resource),
        scope_name=scope_name,
    )


def _decode_metrics(request: ExportMetricsServiceRequest) -> list[ReceivedMetric]:
    metrics: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = decode_attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                metrics.append(_decode_metric(metric, resource, scope_metrics.scope.name))
    return metrics


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def closed_endpoint() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (a port bound, then released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


_PROXY_VARIABLES: Final[tuple[str, ...]] = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "grpc_proxy",
    "no_grpc_proxy",
)


def neutralise_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove, for one test, every ``OTEL_*`` variable (exporter endpoint/headers/timeout/compression/
    certificates/insecure, metric temporality and histogram aggregation, SDK disabled, sampler, resource,
    batch and limit settings...) and the proxy variables, and make 127.0.0.1/localhost bypass any proxy."""
    for name in list(os.environ):
        if name.upper().startswith("OTEL_") or name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --------------------------------------------------------------------------------------------------------
# Common storage and read API
# --------------------------------------------------------------------------------------------------------


class _OtlpReceiver:
    """Storage, stall control and the read API shared by both receivers."""

    def __init__(self, *, stall: bool = False, port: int = 0) -> None:
        self._cond = threading.Condition()
        self._trace_requests: list[ExportTraceServiceRequest] = []
        self._metric_requests: list[ExportMetricsServiceRequest] = []
        self._headers: list[tuple[Signal, dict[str, str]]] = []
        self._attempts = 0
        self._released = threading.Event()
        if not stall:
            self._released.set()
        self._running = False
        self._port = port

    # -- lifecycle (subclasses implement _serve/_shutdown) --------------------------------------------

    def _serve(self, port: int) -> int:
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Listen on 127.0.0.1 (OS-assigned port; after a ``stop()`` the same port again)."""
        if self._running:
            return self
        self._port = self._serve(self._port)
        self._running = True
        return self

    def stop(self) -> None:
        """Stop listening, cancel in-flight and stalled calls, without waiting for them. Idempotent."""
        if not self._running:
            return
        self._running = False
        stalled = not self._released.is_set()
        self._released.set()  # wake stalled handlers: they see the receiver stopped and give up
        try:
            self._shutdown()
        finally:
            if stalled:
                self._released.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the receiver was never started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (the HTTP exporters need ``/v1/traces`` or ``/v1/metrics`` appended)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._running

    # -- stall control -------------------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        return not self._released.is_set()

    def set_stall(self, stall: bool) -> None:
        """Start or stop stalling; ``False`` also releases the calls being held (answered normally if their
        client still waits)."""
        if stall:
            self._released.clear()
        else:
            self._released.set()

    @property
    def export_attempts(self) -> int:
        """Export calls that reached the receiver with a valid request, including stalled ones."""
        with self._cond:
            return self._attempts

    def wait_for_attempts(self, count: int, timeout: float = 60.0) -> int:
        """Wait until at least ``count`` Export calls arrived (stalled or not); AssertionError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._attempts >= count, timeout):
                raise AssertionError(f"expected {count} export attempts within {timeout}s, got {self._attempts}")
            return self._attempts

    def _accept(
        self,
        signal: Signal,
        request: ExportTraceServiceRequest | ExportMetricsServiceRequest,
        headers: dict[str, str],
        client_waiting: Callable[[], bool],
    ) -> bool:
        """Count the attempt, hold it while stalled, store it. False: do not answer (stopped, client gone)."""
        with self._cond:
            self._attempts += 1
            self._cond.notify_all()
        held = False
        while not self._released.wait(_STALL_POLL_INTERVAL):
            held = True
            if not client_waiting() or not self._running:
                return False
        if not self._running or (held and not client_waiting()):
            return False  # a stopping receiver answers nothing, even calls that were not held
        with self._cond:
            if isinstance(request, ExportTraceServiceRequest):
                self._trace_requests.append(request)
            else:
                self._metric_requests.append(request)
            self._headers.append((signal, headers))
            self._cond.notify_all()
        return True

    # -- read API ------------------------------------------------------------------------------------

    def trace_requests(self) -> list[ExportTraceServiceRequest]:
        with self._cond:
            return list(self._trace_requests)

    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        with self._cond:
            return list(self._metric_requests)

    def request_headers(self, signal: Signal | None = None) -> list[dict[str, str]]:
        """Per stored request, in arrival order: the HTTP headers (lower-case names) or the gRPC
        invocation metadata (e.g. ``user-agent``, custom exporter headers)."""
        with self._cond:
            return [dict(h) for s, h in self._headers if signal is None or s == signal]

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        spans: list[ReceivedSpan] = []
        for request in self.trace_requests():
            spans.extend(_decode_spans(request))
        return spans

    def _span_count(self) -> int:
        return sum(
            len(scope.spans)
            for request in self._trace_requests
            for rs in request.resource_spans
            for scope in rs.scope_spans
        )

    def wait_for_spans(self, count: int, timeout: float = 60.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans arrived and return all spans; AssertionError listing what
        arrived otherwise."""
        with self._cond:
            arrived = self._cond.wait_for(lambda: self._span_count() >= count, timeout)
        spans = self.spans()
        if not arrived:
            summary = ", ".join(f"{s.name!r} ({s.kind})" for s in spans) or "nothing"
            raise AssertionError(
                f"expected at least {count} spans within {timeout}s; {len(spans)} arrived: {summary} "
                f"(export attempts: {self.export_attempts})"
            )
        return spans

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.name == name]

    def span(self, name: str) -> ReceivedSpan:
        """The one span called ``name``; AssertionError if there are none or several."""
        found = self.spans_named(name)
        if len(found) != 1:
            names = sorted({s.name for s in self.spans()})
            raise AssertionError(f"expected exactly one span named {name!r}, found {len(found)} (names: {names})")
        return found[0]

    def metrics(self) -> list[ReceivedMetric]:
        """Every metric of every export request, in arrival order (cumulative re-sends included)."""
        metrics: list[ReceivedMetric] = []
        for request in self.metric_requests():
            metrics.extend(_decode_metrics(request))
        return metrics

    def metric_names(self) -> set[str]:
        return {m.name for m in self.metrics()}

    def histogram_points(self, name: str) -> list[HistogramPoint]:
        """``(attributes, count, sum)`` of every point of the (explicit or exponential) histogram ``name``,
        over all exports. AssertionError if a metric with that name arrived with another data kind."""
        points: list[HistogramPoint] = []
        for metric in self.metrics():
            if metric.name != name:
                continue
            if metric.kind not in ("histogram", "exponential_histogram"):
                raise AssertionError(f"metric {name!r} arrived as a {metric.kind}, not a histogram")
            points.extend(HistogramPoint(p.attributes, p.count or 0, p.sum) for p in metric.points)
        return points

    def wait_for_metric(self, name: str, timeout: float = 60.0) -> list[ReceivedMetric]:
        """Wait until a metric called ``name`` arrived and return its occurrences; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.metrics() if m.name == name]
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"metric {name!r} did not arrive within {timeout}s; received: {sorted(self.metric_names())}"
                )
            with self._cond:
                self._cond.wait(min(remaining, _POLL_INTERVAL * 5))

    def clear(self) -> None:
        """Forget the stored requests, headers and attempt count (not the stall state)."""
        with self._cond:
            self._trace_requests.clear()
            self._metric_requests.clear()
            self._headers.clear()
            self._attempts = 0


# --------------------------------------------------------------------------------------------------------
# OTLP/gRPC
# --------------------------------------------------------------------------------------------------------


class _TraceServicer(TraceServiceServicer):
    def __init__(self, receiver: GrpcOtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportTraceServiceRequest, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        self._receiver._handle("traces", request, context)
        return ExportTraceServiceResponse()


class _MetricsServicer(MetricsServiceServicer):
    def __init__(self, receiver: GrpcOtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        self._receiver._handle("metrics", request, context)
        return ExportMetricsServiceResponse()


class GrpcOtlpReceiver(_OtlpReceiver):
    """An OTLP/gRPC collector (traces and metrics services) on 127.0.0.1. gzip-compressed calls are
    decompressed by grpc itself. Point a gRPC exporter at it with
    ``OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)``."""

    def __init__(self, *, stall: bool = False, port: int = 0, max_workers: int = 8) -> None:
        super().__init__(stall=stall, port=port)
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None

    def _serve(self, port: int) -> int:
        executor = futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="otlp-grpc-receiver")
        server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
        add_TraceServiceServicer_to_server(_TraceServicer(self), server)  # type: ignore[no-untyped-call]
        add_MetricsServiceServicer_to_server(_MetricsServicer(self), server)  # type: ignore[no-untyped-call]
        try:
            bound: int = server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
        except BaseException:
            server.stop(grace=0)
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        self._server, self._executor = server, executor
        return bound

    def _shutdown(self) -> None:
        server, executor = self._server, self._executor
        self._server = self._executor = None
        if server is not None:
            server.stop(grace=0).wait(_STOP_TIMEOUT)
        if executor is not None:
            # Handlers poll the stall event (set by stop()) every 50 ms, so none of them blocks for long.
            executor.shutdown(wait=True, cancel_futures=True)

    def _handle(
        self,
        signal: Signal,
        request: ExportTraceServiceRequest | ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> None:
        headers = {
            key: value if isinstance(value, str) else repr(value) for key, value in context.invocation_metadata()
        }
        if not self._accept(signal, request, headers, context.is_active):
            context.abort(grpc.StatusCode.UNAVAILABLE, "OTLP test receiver stopped or the client went away")


# --------------------------------------------------------------------------------------------------------
# OTLP/HTTP (binary protobuf)
# --------------------------------------------------------------------------------------------------------

_HTTP_PATHS: Final[Mapping[str, Signal]] = {"/v1/traces": "traces", "/v1/metrics": "metrics"}
_PROTOBUF: Final[str] = "application/x-protobuf"


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], receiver: HttpOtlpReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _OtlpHttpHandler)


def _peer_connected(sock: socket.socket) -> bool:
    """False once the client closed its end (readable with EOF) or the socket failed."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        return sock.recv(1, socket.MSG_PEEK) != b""
    except (OSError, ValueError):
        return False


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    server_version = "OtlpTestReceiver/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's parameter name
        pass

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        receiver = cast(_HttpServer, self.server).receiver
        signal = _HTTP_PATHS.get(urlsplit(self.path).path)
        if signal is None:
            self._reply(404, b"unknown OTLP path")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != _PROTOBUF:
            self._reply(415, f"only {_PROTOBUF} is supported, not {content_type!r}".encode())
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self._reply(411, b"Content-Length required")
            return
        body = self.rfile.read(int(length))
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding != "identity":
                self._reply(415, f"unsupported Content-Encoding {encoding!r}".encode())
                return
            request: ExportTraceServiceRequest | ExportMetricsServiceRequest
            if signal == "traces":
                request = ExportTraceServiceRequest.FromString(body)
                response = ExportTraceServiceResponse().SerializeToString()
            else:
                request = ExportMetricsServiceRequest.FromString(body)
                response = ExportMetricsServiceResponse().SerializeToString()
        except (OSError, EOFError, zlib.error, DecodeError) as error:
            self._reply(400, f"cannot decode the request: {error}".encode())
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        if not receiver._accept(signal, request, headers, lambda: _peer_connected(self.connection)):
            self.close_connection = True
            return
        self._reply(200, response, _PROTOBUF)


class HttpOtlpReceiver(_OtlpReceiver):
    """An OTLP/HTTP (protobuf) collector on 127.0.0.1: ``POST /v1/traces`` and ``POST /v1/metrics``.
    Point an HTTP exporter at it with ``OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")``."""

    def __init__(self, *, stall: bool = False, port: int = 0) -> None:
        super().__init__(stall=stall, port=port)
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def _serve(self, port: int) -> int:
        server = _HttpServer(("127.0.0.1", port), self)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-http-receiver", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        bound: int = server.server_address[1]
        return bound

    def _shutdown(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(_STOP_TIMEOUT)
