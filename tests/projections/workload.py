"""A generated workload for the projections: several tenants, agents, steps and models, with injected
rate limits, server errors, timeouts, authentication and content errors, so that retries, fallbacks and
failed executions all occur. Recorded by the real ``LLMExecutor`` on ``mock/`` models; some successful
executions' tool executions are added (``tests.events.tool_streams``).

The models are named after the provider they stand in for (``mock/openai-like-mini``); the query string
sets their latency and failure rates (``llm_ledger.executor.mock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from llm_ledger import LLMExecutor, LLMMessage, ProviderError, RetryPolicy, execution_context
from llm_ledger.events import Event, EventDraft
from llm_ledger.executor import EventSink, InMemorySink
from tests.events.tool_streams import with_tool_streams

AGENTS = ("support", "sales")
CHAINS: dict[str, tuple[str, ...]] = {
    # Rate limits retried, then a fallback to another provider.
    "context_extraction": (
        "mock/openai-like-mini?p50_ms=2&p99_ms=20&rate_limit=0.3&seed=11",
        "mock/groq-like-llama?p50_ms=1&p99_ms=8&server_error=0.1&seed=12",
    ),
    # Server errors and timeouts retried; authentication falls back at once.
    "rule_filtering": (
        "mock/anthropic-like-haiku?p50_ms=3&p99_ms=25&server_error=0.35&timeout=0.05&seed=21",
        "mock/openrouter-like-haiku?p50_ms=4&p99_ms=30&authentication=0.5&seed=22",
    ),
    # Three providers; context length and content filter fall back at once; some executions fail.
    "generation": (
        "mock/openai-like-4o?p50_ms=5&p99_ms=40&rate_limit=0.2&context_length=0.15&seed=31",
        "mock/anthropic-like-sonnet?p50_ms=6&p99_ms=50&server_error=0.3&content_filter=0.1&seed=32",
        "mock/groq-like-70b?p50_ms=2&p99_ms=15&connection=0.4&seed=33",
    ),
    # One model, no fallback: failures end the execution.
    "enforcement": ("mock/openai-like-mini?p50_ms=1&p99_ms=12&authentication=0.15&server_error=0.15&seed=41",),
}
STEPS = tuple(CHAINS)


def tenants_named(prefix: str, count: int = 3) -> tuple[str, ...]:
    return tuple(f"{prefix}-{name}" for name in ("acme", "globex", "initech", "umbrella")[:count])


class PastSink:
    """Moves each execution back in time by an amount of its own (up to ``spread``), so that a workload
    run in a second covers minutes, hours and days: the stream's own order and spacing are kept."""

    def __init__(self, inner: EventSink, spread: timedelta, seed: int = 0) -> None:
        self._inner = inner
        self._seconds = int(spread.total_seconds())
        self._seed = seed

    def _offset(self, stream_id: UUID) -> timedelta:
        digest = hashlib.sha256(f"{self._seed}:{stream_id}".encode()).digest()
        return timedelta(seconds=int.from_bytes(digest[:8], "big") % self._seconds, microseconds=digest[8] * 1000)

    def emit(self, event: EventDraft) -> None:
        event.occurred_at = event.occurred_at - self._offset(event.stream_id)
        self._inner.emit(event)


@dataclass(frozen=True, slots=True)
class Call:
    tenant: str
    agent: str
    step: str
    session: str
    turn: str


def calls_for(tenants: Sequence[str], count: int, seed: int = 7) -> list[Call]:
    """``count`` calls spread over tenants, agents and steps; sessions of one agent each."""
    rng = random.Random(seed)
    calls = []
    for i in range(count):
        tenant, agent, step = tenants[i % len(tenants)], rng.choice(AGENTS), STEPS[i % len(STEPS)]
        calls.append(Call(tenant, agent, step, f"{tenant}-{agent}-session-{rng.randrange(6)}", f"turn-{i}"))
    return calls


async def run_calls(sink: EventSink, calls: Sequence[Call], *, concurrency: int = 32) -> None:
    """Each call through the real executor of its step, recorded to ``sink``; failures are expected."""
    executors = {
        step: LLMExecutor(
            chain[0],
            fallback_models=list(chain[1:]),
            step_name=step,
            max_retries=1,
            timeout_seconds=5.0,
            sink=sink,
            retry_policy=RetryPolicy(base_delay=0.0005, max_delay=0.002),
        )
        for step, chain in CHAINS.items()
    }
    semaphore = asyncio.Semaphore(concurrency)

    async def one(call: Call) -> None:
        async with semaphore:
            with (
                execution_context(
                    tenant_id=call.tenant, agent_id=call.agent, session_id=call.session, turn_id=call.turn
                ),
                contextlib.suppress(ProviderError),
            ):
                await executors[call.step].generate([LLMMessage(role="user", content=f"{call.step} {call.turn}")])

    await asyncio.gather(*(one(call) for call in calls))


def generate(
    tenants: Sequence[str], count: int, *, spread: timedelta | None = None, seed: int = 7, tools: bool = True
) -> list[Event]:
    """The sealed events of ``count`` executions, in emission order; with ``tools``, the tool executions
    some of the successful ones asked for (streams of their own), each after its execution's end."""
    memory = InMemorySink()
    sink: EventSink = PastSink(memory, spread, seed) if spread else memory
    asyncio.run(run_calls(sink, calls_for(tenants, count, seed)))
    events = memory.events
    return with_tool_streams(events, seed=seed) if tools else events
