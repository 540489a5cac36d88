"""Executions with latencies chosen by the test, placed in time around a window that the read models answer
from day, hour and minute rows at once: a sparse tail whose 99th percentile falls on the first of a few slow
executions, far above the rank below it (what ``bench/dashboard_queries.py`` met on 2,000,000 events).

Each execution is one recorded by the real executor on a mock model, sealed again as a new stream with the
chosen latency (its attempt's and its own) and time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.events import Event, StreamHeader, StreamSealer, uuid7
from llm_ledger.executor import InMemorySink
from llm_ledger.projections.queries import Window

TENANT = "tails-acme"
AGENT = "tails-agent"
STEP = "generation"
MODEL = "mock/tails-model?p50_ms=1"

WINDOW = Window(datetime(2026, 1, 10, 22, 37, tzinfo=UTC), datetime(2026, 1, 12, 1, 23, tzinfo=UTC))
"""Starts and ends mid-hour: its minutes 22:37..22:59 and 01:00..01:22, hours 23:00 and 00:00, the day of
the 11th."""

FAST = 1_138
SLOW = 12
"""1,150 executions in the window: the 99th percentile's rank, ceil(0.99 * 1150) = 1139, is the first slow
one; interpolating between ranks 1138 and 1139 (``percentile_cont``) gives a value halfway across the gap."""
FAST_MS = (90.0, 140.0)
SLOW_MS = (20_000.0, 31_000.0)


@dataclass(frozen=True, slots=True)
class Placed:
    """An execution's terminal moment and latency."""

    at: datetime
    latency_ms: float


def _spread(count: int, low: float, high: float) -> list[float]:
    return [low + (high - low) * i / max(1, count - 1) for i in range(count)]


def placements() -> list[Placed]:
    """The fast ones spread over the whole window; the slow ones in each kind of row (the window's first
    and last minutes, a whole hour, the whole day); and slow ones just outside the window, which a window
    answered from the wrong rows would count."""
    inside = WINDOW.end - WINDOW.start
    fast = [
        Placed(WINDOW.start + inside * (i + 0.5) / FAST, latency) for i, latency in enumerate(_spread(FAST, *FAST_MS))
    ]
    slow_moments = [
        WINDOW.start + timedelta(seconds=5),  # the first minute row
        WINDOW.start + timedelta(minutes=20),  # a minute row before 23:00
        WINDOW.start + timedelta(minutes=40),  # the hour row of 23:00
        datetime(2026, 1, 11, 0, 0, 1, tzinfo=UTC),  # the day row
        datetime(2026, 1, 11, 12, 30, tzinfo=UTC),
        datetime(2026, 1, 11, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 1, 12, 0, 30, tzinfo=UTC),  # the hour row of 00:00
        datetime(2026, 1, 12, 1, 0, tzinfo=UTC),  # a minute row after 01:00
        WINDOW.end - timedelta(minutes=10),
        WINDOW.end - timedelta(seconds=40),
        WINDOW.end - timedelta(seconds=1),  # the last minute row
        datetime(2026, 1, 11, 6, 0, tzinfo=UTC),
    ]
    assert len(slow_moments) == SLOW
    slow = [Placed(at, latency) for at, latency in zip(slow_moments, _spread(SLOW, *SLOW_MS), strict=True)]
    outside = [
        Placed(WINDOW.start - timedelta(seconds=1), 40_000.0),  # the minute before the window
        Placed(WINDOW.start - timedelta(hours=1), 41_000.0),  # the hour before
        Placed(WINDOW.end, 42_000.0),  # the window's end is not in it
        Placed(WINDOW.end + timedelta(days=1), 43_000.0),  # the day after
    ]
    return [*fast, *slow, *outside]


def _template() -> list[Event]:
    """One execution of the real executor: started, attempt started, attempt succeeded, succeeded."""
    sink = InMemorySink()
    executor = LLMExecutor(MODEL, step_name=STEP, max_retries=0, sink=sink)

    async def one() -> None:
        with execution_context(tenant_id=TENANT, agent_id=AGENT, session_id="tails-session"):
            await executor.generate([LLMMessage(role="user", content="a question")])

    asyncio.run(one())
    events = sorted(sink.events, key=lambda e: e.stream_position)
    assert [e.event_type for e in events] == [
        "ExecutionStarted",
        "AttemptStarted",
        "AttemptSucceeded",
        "ExecutionSucceeded",
    ]
    return events


def events() -> list[Event]:
    """The sealed events of every placed execution."""
    template = _template()
    made: list[Event] = []
    for number, placed in enumerate(placements()):
        started = placed.at - timedelta(milliseconds=placed.latency_ms + 2)
        sealer = StreamSealer(StreamHeader(uuid7(), TENANT, AGENT, f"tails-session-{number % 40}", None, STEP))
        moments = (started, started + timedelta(milliseconds=1), placed.at - timedelta(milliseconds=1), placed.at)
        for event, at in zip(template, moments, strict=True):
            payload = event.payload
            if event.event_type in ("AttemptSucceeded", "ExecutionSucceeded"):
                payload = payload.model_copy(update={"latency_ms": placed.latency_ms})
            # sealing builds the concrete event class; it is typed as the EventEnvelope base
            made.append(cast(Event, sealer.seal(event.event_type, payload, occurred_at=at)))
    return made


def execution_latencies_in_window() -> list[float]:
    return [p.latency_ms for p in placements() if WINDOW.start <= p.at < WINDOW.end]
