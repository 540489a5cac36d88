"""``LLMExecutor(clock=...)``: the clock that stamps an execution's events, and the tool executions it
asks for, instead of the system's (the demo's sessions run on simulated clocks days in the past)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from llm_ledger import (
    ConfigurationError,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    ToolSpec,
    execution_context,
    record_tool_call,
)
from llm_ledger.events import verify_chain

LAST_WEEK = datetime(2026, 3, 4, 14, 30, tzinfo=UTC)
QUESTION = [LLMMessage(role="user", content="where is my parcel?")]


class SteppingClock:
    """A clock of the test's own: a second later at every reading."""

    def __init__(self, start: datetime) -> None:
        self.readings: list[datetime] = []
        self._next = start

    def __call__(self) -> datetime:
        self.readings.append(self._next)
        self._next += timedelta(seconds=1)
        return self.readings[-1]


def lookup_order(order_id: str) -> str:
    """The status of an order."""
    return f"{order_id}: shipped"


async def test_an_executions_events_carry_the_times_of_its_clock_and_still_verify() -> None:
    sink, clock = InMemorySink(), SteppingClock(LAST_WEEK)
    executor = LLMExecutor("mock/flaky?rate_limit=0.5&seed=3", ["mock/steady"], sink=sink, clock=clock)
    with execution_context(tenant_id="acme"):
        await executor.generate(QUESTION)

    events = sink.events
    # The first reading checked the clock when the executor was built.
    assert [event.occurred_at for event in events] == clock.readings[1:]
    assert clock.readings[1] == LAST_WEEK + timedelta(seconds=1) and len(events) > 3
    assert verify_chain(events).ok


async def test_the_tool_executions_an_execution_asks_for_are_stamped_by_its_clock() -> None:
    sink, clock = InMemorySink(), SteppingClock(LAST_WEEK)
    executor = LLMExecutor("mock/caller?tool_calls=lookup_order", sink=sink, clock=clock)
    with execution_context(tenant_id="acme"):
        response = await executor.generate(QUESTION, tools=[ToolSpec.from_function(lookup_order)])
        async with record_tool_call(response.tool_calls[0]) as run:
            run.result = lookup_order(**response.tool_calls[0].arguments)

    tool_events = [event for event in sink.events if event.event_type.startswith("ToolCall")]
    assert [event.event_type for event in tool_events] == ["ToolCallStarted", "ToolCallSucceeded"]
    assert all(event.occurred_at in clock.readings for event in tool_events)
    assert max(event.occurred_at for event in sink.events) < LAST_WEEK + timedelta(minutes=1)


async def test_without_a_clock_events_carry_the_system_time() -> None:
    sink = InMemorySink()
    before = datetime.now(UTC)
    with execution_context(tenant_id="acme"):
        await LLMExecutor("mock/steady", sink=sink).generate(QUESTION)
    assert all(before <= event.occurred_at <= datetime.now(UTC) for event in sink.events)


async def test_a_clock_in_another_time_zone_stamps_its_times_in_utc() -> None:
    sink = InMemorySink()
    in_new_york = SteppingClock(LAST_WEEK.astimezone(timezone(timedelta(hours=-4))))
    with execution_context(tenant_id="acme"):
        await LLMExecutor("mock/steady", sink=sink, clock=in_new_york).generate(QUESTION)
    assert [event.occurred_at for event in sink.events] == in_new_york.readings[1:]
    assert all(event.occurred_at.utcoffset() == timedelta(0) for event in sink.events)
    assert verify_chain(sink.events).ok


@pytest.mark.parametrize(
    ("clock", "returned"),
    [(lambda: datetime(2026, 3, 4, 14, 30), "datetime.datetime(2026, 3, 4, 14, 30)"), (lambda: "now", "'now'")],
)
def test_a_clock_without_a_time_zone_is_refused_when_the_executor_is_built(clock: object, returned: str) -> None:
    message = f"clock= must return an aware datetime (datetime.now(UTC), not datetime.now()), got {returned}"
    with pytest.raises(ConfigurationError, match="^" + re.escape(message) + "$"):
        LLMExecutor("mock/steady", clock=clock)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="^" + re.escape(message) + "$"):
        record_tool_call("lookup_order", {"order_id": "A-1"}, clock=clock)  # type: ignore[arg-type]


async def test_a_clock_going_back_stamps_each_stream_in_order() -> None:
    sink = InMemorySink()
    readings = iter([LAST_WEEK, LAST_WEEK, LAST_WEEK - timedelta(hours=1), LAST_WEEK + timedelta(seconds=1)])
    executor = LLMExecutor("mock/steady", sink=sink, clock=lambda: next(readings, LAST_WEEK - timedelta(days=1)))
    with execution_context(tenant_id="acme"):
        await executor.generate(QUESTION)
    stamped = [event.occurred_at for event in sink.events]
    assert stamped == sorted(stamped) and stamped[0] == LAST_WEEK and stamped[-1] == LAST_WEEK + timedelta(seconds=1)
    assert verify_chain(sink.events).ok


async def test_a_clock_that_turns_naive_after_its_check_gives_way_to_the_system_time_and_the_call_succeeds() -> None:
    sink, readings = InMemorySink(), iter([LAST_WEEK])
    executor = LLMExecutor("mock/steady", sink=sink, clock=lambda: next(readings, datetime(2026, 3, 4)))
    before = datetime.now(UTC)
    with execution_context(tenant_id="acme"):
        response = await executor.generate(QUESTION)
    assert response.content
    assert all(before <= event.occurred_at <= datetime.now(UTC) for event in sink.events)


async def test_a_tool_run_unasked_is_stamped_by_the_clock_it_is_given() -> None:
    sink, clock = InMemorySink(), SteppingClock(LAST_WEEK)
    async with record_tool_call("lookup_order", {"order_id": "A-1"}, sink=sink, clock=clock) as run:
        run.result = lookup_order("A-1")
    assert [event.occurred_at for event in sink.events] == clock.readings[1:]
    assert [event.event_type for event in sink.events] == ["ToolCallStarted", "ToolCallSucceeded"]


def test_a_clock_that_is_no_function_is_refused_when_the_executor_is_built() -> None:
    with pytest.raises(ConfigurationError, match=r"^clock= must be a function returning the current time, got 42$"):
        LLMExecutor("mock/steady", clock=42)  # type: ignore[arg-type]
