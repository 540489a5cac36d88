"""Realistic event streams for store tests, made by the real executor on mock models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from llm_ledger import LLMExecutor, LLMMessage, RetryPolicy, execution_context
from llm_ledger.events import Event, EventDraft, compute_hash
from llm_ledger.executor import EventSink, InMemorySink
from llm_ledger.store import EventStore

RECORD_SCRIPT = """
import asyncio, sys
import llm_ledger
from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.events import Scrubber, StreamHeader, uuid7
from llm_ledger.events import values
from llm_ledger.events.values import JsonPayload
from llm_ledger.executor import get_default_sink
from llm_ledger.executor.recorder import StreamRecorder

def run_tool(tenant, i, execution_id):
    # A tool the answer asked for, recorded as its own stream to the same writer (what record_tool_call
    # does): started, then succeeded (every third one failed).
    header = StreamHeader(stream_id=uuid7(), tenant_id=tenant, agent_id="agent-1", session_id=f"s-{i % 3}",
                          turn_id=f"t{i}", step="generation")
    recorder, scrubber = StreamRecorder(header, get_default_sink()), Scrubber([])
    arguments = values.output_values('{"q": 1}', "hash", scrubber)
    recorder.record("ToolCallStarted", JsonPayload(values.tool_call_started, tool_name="lookup",
                    tool_call_id=f"call-{i}", execution_id=execution_id, arguments=arguments, capture="hash"))
    if i % 3 == 2:
        recorder.record("ToolCallFailed", JsonPayload(values.tool_call_failed, tool_name="lookup", latency_ms=2.0,
                        error_type="tool_error", error_class="KeyError", message="no such order"))
    else:
        recorder.record("ToolCallSucceeded", JsonPayload(values.tool_call_succeeded, tool_name="lookup", latency_ms=1.5,
                        result=values.output_values("found", "hash", scrubber)))

async def main(tenants, count):
    executor = LLMExecutor("mock/primary?p50_ms=0&rate_limit=0.3&seed=5", fallback_models=["mock/fallback?p50_ms=0"],
                           step_name="generation", max_retries=1)
    for tenant in tenants:
        for i in range(count):
            with execution_context(tenant_id=tenant, agent_id="agent-1", session_id=f"s-{i % 3}", turn_id=f"t{i}"):
                response = await executor.generate([LLMMessage(role="user", content=f"question {i}")])
            run_tool(tenant, i, response.execution_id)
    await llm_ledger.aclose()

asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2])))
"""
"""What a Focal service does, for ``python -c RECORD_SCRIPT <tenant,tenant,...> <count>``: ``count``
executions of each tenant, each followed by a tool execution (every third one failed), through executors
built without ``sink=``, so to the process-wide writer of ``LLM_LEDGER_DATABASE_URL`` (as the login's own
role: the application sets none)."""


async def run_executions(
    sink: EventSink,
    count: int,
    *,
    tenant: str,
    session: str = "s-1",
    chain: tuple[str, ...] = ("mock/primary?p50_ms=0&rate_limit=0.3&seed=3", "mock/fallback?p50_ms=0"),
    concurrency: int = 8,
    **context: Any,
) -> None:
    """``count`` executions (some with retries and fallbacks) under one tenant, recorded to ``sink``."""
    executor = LLMExecutor(
        chain[0],
        fallback_models=list(chain[1:]),
        step_name="generation",
        max_retries=1,
        sink=sink,
        retry_policy=RetryPolicy(base_delay=0),
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            with execution_context(
                tenant_id=tenant, agent_id="agent-1", session_id=session, turn_id=f"t{i}", **context
            ):
                await executor.generate([LLMMessage(role="user", content=f"question {i}")])

    await asyncio.gather(*(one(i) for i in range(count)))


def make_events(count: int, *, tenant: str, session: str = "s-1") -> list[Event]:
    """The sealed events of ``count`` executions, in emission order."""
    sink = InMemorySink()
    asyncio.run(run_executions(sink, count, tenant=tenant, session=session))
    return sink.events


class DraftSink:
    """Keeps the executor's drafts as they are emitted, unsealed (``draft.event`` is never read)."""

    def __init__(self, drafts: list[EventDraft] | None = None) -> None:
        self.drafts: list[EventDraft] = [] if drafts is None else drafts

    def emit(self, event: EventDraft) -> None:
        self.drafts.append(event)


def moved_onto(stream: list[Event], events: list[Event]) -> list[dict[str, Any]]:
    """``events`` as records of ``stream``'s stream, rehashed: the same positions, other event ids."""
    forged = []
    for event in events:
        record = event.to_record()
        record["stream_id"] = str(stream[0].stream_id)
        record["hash"] = compute_hash(record)
        forged.append(record)
    return forged


def wait_until_readable_by_cursor(engine: Engine) -> None:
    """Wait until ``read_all`` (and the projector) may return every stored event: it stops short of the oldest
    transaction running anywhere on the cluster, which other suites share."""
    query = text("SELECT COALESCE(MAX(tx_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM llm_ledger_events")
    for _ in range(1_200):
        with engine.connect() as connection:
            if connection.execute(query).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError("a transaction of the cluster stayed open for a minute: read_all cannot pass it")


@contextmanager
def table_locked(url: str) -> Iterator[None]:
    """Holds an ACCESS EXCLUSIVE lock on the events table: every write to it waits (a stalled database)."""
    engine = create_engine(EventStore(url).engine.url, poolclass=NullPool)
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(text("LOCK TABLE llm_ledger_events IN ACCESS EXCLUSIVE MODE"))
    try:
        yield
    finally:
        transaction.rollback()
        connection.close()
        engine.dispose()
