"""A tool conversation as an application records it (the real executor on a ``mock/`` model that asks for
two tools, each run through ``record_tool_call``, one raising, the results sent back), stored on
PostgreSQL and SQLite: ``audit verify`` finds it whole, the audit views, the session timeline and the
read models show both round trips, the two tool executions between them, and what links them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from llm_ledger import LLMExecutor, LLMMessage, LLMResponse, ToolSpec, execution_context, record_tool_call
from llm_ledger.audit import verify_ledger
from llm_ledger.audit.timeline import ExecutionView, ToolCallView, session_activity
from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink
from llm_ledger.projections.queries import LedgerView, Window
from llm_ledger.store import EventStore, create_store_engine, migrate
from tests.projections.projecting import project_url

TENANT, SESSION = "tools-acme", "tools-session"


def lookup_order(order: int) -> str:
    """The status of an order."""
    return f"order {order}: shipped"


def weather(city: str) -> str:
    """Today's weather in a city."""
    raise ConnectionError(f"the weather service is down for {city}")


_FUNCTIONS: dict[str, Callable[..., str]] = {"lookup_order": lookup_order, "weather": weather}


@dataclass(frozen=True)
class Conversation:
    asked: LLMResponse
    answered: LLMResponse
    events: list[Event]


async def _converse(step: str | None = "generation") -> Conversation:
    """The conversation under Focal's context; ``step`` in it too by default (see
    ``test_a_tool_run_under_a_context_without_a_step_counts_under_the_asking_step``)."""
    sink = InMemorySink()
    executor = LLMExecutor(
        "mock/agent?p50_ms=0&tool_calls=lookup_order,weather&seed=3", step_name="generation", sink=sink
    )
    tools = [ToolSpec.from_function(lookup_order), ToolSpec.from_function(weather)]
    question = LLMMessage(role="user", content="Where is order 42, and will it rain in Paris?")
    with execution_context(tenant_id=TENANT, agent_id="support", session_id=SESSION, turn_id="turn-1", step=step):
        asked = await executor.generate([question], tools=tools)
        results = []
        for call in asked.tool_calls:
            result = "error: the tool failed"
            with contextlib.suppress(ConnectionError):
                async with record_tool_call(call, sink=sink) as run:
                    run.result = result = _FUNCTIONS[call.name](**call.arguments)
            results.append(LLMMessage(role="tool", tool_call_id=call.id, name=call.name, content=result))
        said = LLMMessage(role="assistant", content=asked.content, tool_calls=asked.tool_calls)
        answered = await executor.generate([question, said, *results], tools=tools)
    return Conversation(asked, answered, sink.events)


@contextlib.contextmanager
def _connected(url: str) -> Iterator[Connection]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return asyncio.run(_converse())


@pytest.fixture(params=["postgresql", "sqlite"])
def stored(request: pytest.FixtureRequest, conversation: Conversation) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("_create_postgres_database")()
    else:
        url = request.getfixturevalue("sqlite_url")
    migrate.upgrade(url)
    store = EventStore(url)
    try:
        store.append(conversation.events)
    finally:
        store.close()
    return url


def test_the_conversation_asked_for_both_tools_and_then_answered(conversation: Conversation) -> None:
    assert [call.name for call in conversation.asked.tool_calls] == ["lookup_order", "weather"]
    assert conversation.answered.content and not conversation.answered.tool_calls
    kinds = [event.event_type for event in conversation.events if event.event_type.startswith("ToolCall")]
    assert sorted(kinds) == ["ToolCallFailed", "ToolCallStarted", "ToolCallStarted", "ToolCallSucceeded"]


def test_verify_finds_every_stream_whole(stored: str) -> None:
    report = verify_ledger(stored, record=False)
    assert report.ok and report.streams == 4 and report.incomplete_streams == 0, report.to_text()


def test_audit_tool_calls_links_each_run_to_the_execution_and_call_that_asked(
    stored: str, conversation: Conversation
) -> None:
    query = text(
        "SELECT t.tool_call_id, t.tool_name, t.outcome, t.error_type, t.step, e.outcome AS asked_outcome"
        " FROM audit_tool_calls t JOIN audit_executions e"
        " ON e.tenant_id = t.tenant_id AND e.execution_id = t.execution_id"
        " WHERE t.tenant_id = :tenant AND e.execution_id = :execution ORDER BY t.started_at"
    )
    with _connected(stored) as connection:
        rows = connection.execute(query, {"tenant": TENANT, "execution": str(conversation.asked.execution_id)}).all()
    calls = conversation.asked.tool_calls
    assert [tuple(row) for row in rows] == [
        (calls[0].id, "lookup_order", "succeeded", None, "generation", "succeeded"),
        (calls[1].id, "weather", "failed", "tool_error", "generation", "succeeded"),
    ]


def test_the_timeline_shows_the_tools_between_the_round_trips(stored: str, conversation: Conversation) -> None:
    with _connected(stored) as connection:
        items = session_activity(connection, TENANT, SESSION)

    asked, first, second, answered = items
    assert isinstance(asked, ExecutionView) and isinstance(answered, ExecutionView)
    assert isinstance(first, ToolCallView) and isinstance(second, ToolCallView)
    assert asked.execution_id == str(conversation.asked.execution_id)
    assert answered.execution_id == str(conversation.answered.execution_id)
    assert [(c.id, c.name) for c in asked.tool_calls] == [(c.id, c.name) for c in conversation.asked.tool_calls]
    assert answered.tool_calls == ()
    assert {first.execution_id, second.execution_id} == {asked.execution_id}
    assert (first.outcome, second.outcome) == ("succeeded", "failed")
    assert second.error_class == "ConnectionError" and "ConnectionError" in (second.message or "")
    assert all(item.integrity.status == "intact" for item in items)


def test_a_tool_run_under_a_context_without_a_step_counts_under_the_asking_step() -> None:
    conversation = asyncio.run(_converse(step=None))
    steps = {event.step for event in conversation.events}
    assert steps == {"generation"}


def test_the_read_models_count_two_executions_and_two_tool_calls(stored: str) -> None:
    project_url(stored)
    view = LedgerView(stored)
    now = datetime.now(UTC)
    window = Window(now - timedelta(hours=1), now + timedelta(minutes=5))
    try:
        assert view.totals(TENANT, window).executions == 2
        groups = {group.key: (group.calls, group.failed) for group in view.tool_calls(TENANT, window)}
        assert groups == {
            ("lookup_order", "succeeded", "generation"): (1, 0),
            ("weather", "failed", "generation"): (1, 1),
        }
        (session,) = view.sessions(TENANT)
        assert session.session_id == SESSION and session.executions == 2
    finally:
        view.close()
