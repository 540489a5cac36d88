"""Streamed attempts export the GenAI conventions' time-to-first-chunk histogram over real OTLP, in seconds,
one value per streamed attempt that answered, equal to the event's ``time_to_first_chunk_ms``; a call that
was not streamed records none."""

from __future__ import annotations

import math

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, execution_context
from llm_ledger.executor import ProviderSettings
from llm_ledger.telemetry.first_chunk import BOUNDARIES_SECONDS, METRIC_NAME
from tests.fakes import FakeProviderServer, Reply
from tests.telemetry.traced import Traced

FIRST_CHUNK = METRIC_NAME
MESSAGES = [LLMMessage(role="user", content="Summarise the rules")]


def test_the_metric_is_named_as_the_installed_conventions_name_it() -> None:
    # Older conventions releases, which the project supports, lack the constant: nothing to compare there.
    installed = getattr(gen_ai_metrics, "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK", METRIC_NAME)
    assert installed == METRIC_NAME


async def test_streamed_attempts_export_their_time_to_first_chunk(
    traced: Traced, server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.default("gpt-s", Reply(text="one two three four", chunks=4))
    executor = LLMExecutor("openai/gpt-s", sink=sink, providers=providers, tracer=traced.tracer)
    with execution_context(tenant_id="acme", step="summary"):
        for _ in range(2):
            [chunk async for chunk in executor.generate_stream(MESSAGES)]
        await executor.generate(MESSAGES)

    traced.flush()
    [metric, *_] = traced.receiver.wait_for_metric(FIRST_CHUNK)
    points = traced.receiver.histogram_points(FIRST_CHUNK)
    recorded = [e.payload.time_to_first_chunk_ms for e in sink.events if e.event_type == "AttemptSucceeded"]
    streamed = [ms for ms in recorded if ms is not None]
    assert len(streamed) == 2 and len(recorded) == 3
    assert metric.unit == "s" and metric.kind == "histogram"
    assert metric.points[-1].explicit_bounds == BOUNDARIES_SECONDS
    (point,) = points[-1:]
    assert point.count == 2, "one value per streamed attempt, none for the plain call"
    assert point.sum is not None and math.isclose(point.sum, sum(streamed) / 1000, rel_tol=1e-9)
    assert point.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "gpt-s"
    assert point.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == gen_ai.GenAiProviderNameValues.OPENAI.value
