"""With the OTEL variables set, the demo exports one span per execution and per attempt, with the
events' ids, and has flushed them when it exits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.demo.ledger import read_streams
from tests.telemetry.receivers import GrpcOtlpReceiver, HttpOtlpReceiver


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_demo_exports_its_traces(
    protocol: str, tmp_path: Path, clean_environment: Callable[..., dict[str, str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    receiver_class = GrpcOtlpReceiver if protocol == "grpc" else HttpOtlpReceiver
    with receiver_class() as receiver:
        env = clean_environment(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            no_proxy="127.0.0.1,localhost",
            NO_PROXY="127.0.0.1,localhost",
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "llm_ledger.cli",
                "demo",
                "--sessions",
                "2",
                "--latency-scale",
                "0",
                *("--database-url", url),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        spans = receiver.spans()  # no waiting: every span was exported before the demo exited

    events = [event for stream in read_streams(url).values() for event in stream]
    starts = [e for e in events if e.event_type == "ExecutionStarted"]
    attempts = [e for e in events if e.event_type == "AttemptStarted"]
    assert len(spans) == len(starts) + len(attempts)
    by_id = {span.span_id: span for span in spans}
    for event in starts + attempts:
        assert event.span_id is not None, event
        span = by_id[event.span_id]
        assert span.trace_id == event.trace_id
        assert span.attributes["llm_ledger.execution_id"] == str(event.stream_id)
        assert span.attributes["llm_ledger.tenant_id"] == event.tenant_id
        assert span.attributes["llm_ledger.session_id"] == event.session_id
    assert {span.kind for span in spans} == {"INTERNAL", "CLIENT"}
    assert spans[0].resource["service.name"] == "llm-ledger"
