"""Realistic event streams for store tests, made by the real executor on mock models."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_ledger import LLMExecutor, LLMMessage, RetryPolicy, execution_context
from llm_ledger.events import Event
from llm_ledger.executor import EventSink, InMemorySink


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
