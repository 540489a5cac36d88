"""The time to first chunk of streamed attempts, projected per step and model at every grain: its count and
sum equal SQL over the raw ``AttemptSucceeded`` events, and a percentile read from its histogram is within
the histogram's bucket precision of the exact one."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, timedelta

from sqlalchemy import Engine, select, text

from llm_ledger import LLMExecutor, LLMMessage, ProviderError, RetryPolicy, execution_context
from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink
from llm_ledger.projections import histogram
from llm_ledger.projections.grains import GRAINS
from llm_ledger.projections.schema import step_stats
from llm_ledger.store import create_store_engine
from tests.projections.conftest import store_events
from tests.projections.projecting import project_url
from tests.projections.workload import PastSink

TENANT = "tenant-first-chunk"
STREAMED_CHAINS = {
    "answer": ("mock/openai-like-mini?p50_ms=4&p99_ms=40&rate_limit=0.2&seed=5", "mock/groq-like-llama?p50_ms=2"),
    "summary": ("mock/anthropic-like-haiku?p50_ms=8&p99_ms=60&stream_break=0.2&seed=6",),
}


async def _streamed_and_plain_calls(sink: InMemorySink, count: int) -> None:
    policy = RetryPolicy(base_delay=0.0005, max_delay=0.002)
    for step, chain in STREAMED_CHAINS.items():
        executor = LLMExecutor(
            chain[0], fallback_models=list(chain[1:]), step_name=step, max_retries=1, sink=sink, retry_policy=policy
        )
        for turn in range(count):
            messages = [LLMMessage(role="user", content=f"{step} {turn}")]
            with execution_context(tenant_id=TENANT, agent_id="support"), contextlib.suppress(ProviderError):
                if turn % 4 == 0:  # some plain calls, which have no first chunk
                    await executor.generate(messages)
                else:
                    [chunk async for chunk in executor.generate_stream(messages)]


def _recorded() -> list[Event]:
    memory = InMemorySink()
    asyncio.run(_streamed_and_plain_calls(PastSink(memory, timedelta(days=2), seed=3), 60))  # type: ignore[arg-type]
    return memory.events


def _raw_first_chunks(engine: Engine, grain: int) -> dict[tuple[str, str, int], list[float]]:
    """Each (step, model, bucket)'s times to first chunk, from the raw events (Python does the bucketing
    from the SQL row's epoch, the same on both dialects)."""
    if engine.dialect.name == "postgresql":
        first_chunk = "CAST(payload ->> 'time_to_first_chunk_ms' AS double precision)"
        model, epoch = "payload ->> 'model'", "extract(epoch FROM occurred_at)"
    else:
        first_chunk = "CAST(json_extract(payload, '$.time_to_first_chunk_ms') AS double precision)"
        model, epoch = "json_extract(payload, '$.model')", "(julianday(occurred_at) - 2440587.5) * 86400.0"
    statement = text(
        f"SELECT step, {model} AS model, {epoch} AS at, {first_chunk} AS first_chunk FROM llm_ledger_events"
        f" WHERE tenant_id = :tenant AND event_type = 'AttemptSucceeded' AND {first_chunk} IS NOT NULL"
    )
    truth: dict[tuple[str, str, int], list[float]] = {}
    with engine.connect() as connection:
        for row in connection.execute(statement, {"tenant": TENANT}):
            bucket = int(round(float(row.at), 3)) // grain * grain
            truth.setdefault((row.step, row.model, bucket), []).append(float(row.first_chunk))
    return truth


def _projected_first_chunks(engine: Engine, grain: int) -> dict[tuple[str, str, int], tuple[float, histogram.Counts]]:
    c = step_stats.c
    statement = select(c.step, c.model, c.bucket_start, c.first_chunk_ms_sum, c.first_chunk_latency).where(
        c.tenant_id == TENANT, c.grain_seconds == grain
    )
    projected = {}
    with engine.connect() as connection:
        for row in connection.execute(statement):
            counts = histogram.loads(row.first_chunk_latency)
            if counts:
                at = int(row.bucket_start.replace(tzinfo=row.bucket_start.tzinfo or UTC).timestamp())
                projected[(row.step, row.model, at)] = (float(row.first_chunk_ms_sum), counts)
    return projected


def _exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_first_chunk_rollups_equal_sql_over_the_raw_events(ledger_url: str) -> None:
    events = _recorded()
    streamed = [e for e in events if e.event_type == "AttemptSucceeded" and e.payload.time_to_first_chunk_ms]
    assert len(streamed) > 50, "the workload streams"
    store_events(ledger_url, events)
    project_url(ledger_url)
    engine = create_store_engine(ledger_url)
    try:
        for grain in GRAINS:
            truth, projected = _raw_first_chunks(engine, grain), _projected_first_chunks(engine, grain)
            assert sorted(projected) == sorted(truth), f"rows with a first chunk at grain {grain}"
            for key, values in truth.items():
                total, counts = projected[key]
                assert sum(counts.values()) == len(values), key
                assert math.isclose(total, sum(values), rel_tol=1e-9), key
                for q in (0.5, 0.95, 0.99):
                    (estimate,) = histogram.quantiles(counts, [q])
                    exact = _exact_percentile(values, q)
                    assert estimate is not None
                    assert abs(estimate - exact) <= histogram.RELATIVE_ERROR * exact + 1e-9, (key, q)
    finally:
        engine.dispose()
