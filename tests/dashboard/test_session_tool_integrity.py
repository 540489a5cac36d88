"""The Sessions page never shows a tampered or unfinished tool execution as valid: a tool conversation
whose failed tool run is forged afterwards (its message changed in place, the append-only trigger
dropped), and a tool run whose process died before it ended, each said above the session's tool calls
as the executions' are above the timeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from sqlalchemy import create_engine, text

from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink, ToolCall, execution_context, record_tool_call
from llm_ledger.store import EventStore, migrate, normalize_url
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.ledger import moved_back, tool_conversation

Configure = Callable[..., None]
SESSION = "acme-session-tools"


def _died_while_a_tool_ran(execution_id: UUID) -> list[Event]:
    """A tool run's first event only, as a process killed while the tool ran leaves it."""
    sink = InMemorySink()
    call = ToolCall(id="call-died", name="lookup_order", arguments={}, arguments_json="{}", execution_id=execution_id)

    async def started() -> None:
        with execution_context(tenant_id="acme", agent_id="support-agent", session_id=SESSION, turn_id="turn-tools"):
            async with record_tool_call(call, sink=sink) as run:
                run.result = "never recorded"

    asyncio.run(started())
    return [event for event in sink.events if event.event_type == "ToolCallStarted"]


def test_the_sessions_page_says_which_tool_executions_cannot_be_trusted(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    migrate.upgrade(sqlite_url)
    recorded = moved_back(tool_conversation(tenant="acme", session=SESSION, step="answer"), timedelta(minutes=5))
    asker = next(event.stream_id for event in recorded if event.event_type == "ExecutionStarted")
    store = EventStore(sqlite_url)
    store.append([*recorded, *_died_while_a_tool_ran(asker)])
    store.close()
    engine = create_engine(normalize_url(sqlite_url))
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER llm_ledger_events_reject_update"))
        connection.execute(
            text(
                "UPDATE llm_ledger_events SET payload = json_set(payload, '$.message', 'all fine') "
                "WHERE event_type = 'ToolCallFailed'"
            )
        )
    engine.dispose()
    dashboard_env(sqlite_url)

    app = open_dashboard(page="sessions", tenant="acme", session=SESSION, window="1d")

    assert not app.exception
    # The execution is intact: the only error and warning are the tool executions'.
    [error] = app.main.error
    assert error.value.startswith("1 of 3 tool executions of this session are not as they were recorded")
    [warning] = app.main.warning
    assert warning.value.startswith("1 of 3 tool executions have no outcome recorded")
    [table] = [frame.value for frame in app.main.dataframe if "tool call" in frame.value.columns]
    assert sorted(table["integrity"]) == ["broken", "incomplete", "intact"]
