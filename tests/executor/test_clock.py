"""``LLMExecutor(clock=...)``: the clock that stamps an execution's events, and the tool executions it
asks for, instead of the system's (the demo's sessions run on simulated clocks days in the past)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, ToolSpec, execution_context, record_tool_call
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
    assert [event.occurred_at for event in events] == clock.readings
    assert clock.readings[0] == LAST_WEEK and len(events) > 3
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
