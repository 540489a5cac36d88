"""How the Execution page finds the tools' executions an execution asked for: by the asking execution's id,
whatever session they were recorded under, from its answer for ``TOOL_RUN_HORIZON`` at most, at most
``TOOL_EXECUTIONS_SHOWN`` of them (and it says when there are more), and not at all when its answer
asked for none; an unfinished one is said above the table, as on the Sessions page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, event
from streamlit.testing.v1 import AppTest

from llm_ledger.audit.timeline import TOOL_EXECUTIONS_SHOWN, TOOL_RUN_HORIZON
from llm_ledger.dashboard.view import DashboardView
from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink, ToolCall, execution_context, record_tool_call
from llm_ledger.store import EventStore, migrate
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.ledger import FAST, moved_back, run, tool_conversation

Configure = Callable[..., None]


def _stored(url: str, *events: Event) -> None:
    migrate.upgrade(url)
    store = EventStore(url)
    store.append(list(events))
    store.close()


def _asker(recorded: list[Event]) -> UUID:
    return next(e.stream_id for e in recorded if e.event_type == "ExecutionStarted")


def _tool_table(app: AppTest) -> Any:
    [table] = [frame.value for frame in app.main.dataframe if "tool call" in frame.value.columns]
    return table


def _unasked_runs(execution_id: UUID, count: int, *, finished: bool = True) -> list[Event]:
    """``count`` tool executions naming ``execution_id`` (none answers a call its answer made), recorded now."""
    sink = InMemorySink()

    async def record() -> None:
        with execution_context(tenant_id="acme", agent_id="support-agent", session_id="s-tools", turn_id="t"):
            for number in range(count):
                call = ToolCall(id=f"extra-{number}", name="lookup_order", execution_id=execution_id)
                async with record_tool_call(call, sink=sink) as ran:
                    ran.result = "shipped"

    asyncio.run(record())
    return [e for e in sink.events if finished or e.event_type == "ToolCallStarted"]


def test_a_tool_execution_recorded_under_another_session_is_shown_with_the_execution_that_asked(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    recorded = tool_conversation(tenant="acme", session="s-asked", step="answer", tools_session="s-elsewhere")
    _stored(sqlite_url, *moved_back(recorded, timedelta(minutes=5)))
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=str(_asker(recorded)), window="1d")

    assert not app.exception
    tools = _tool_table(app)
    assert dict(zip(tools["tool"], tools["outcome"], strict=True)) == {
        "lookup_order": "succeeded",
        "check_policy": "failed",
    }


def test_a_tool_execution_started_after_the_horizon_is_not_looked_for(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    recorded = tool_conversation(tenant="acme", session="s-late", step="answer")
    asker = _asker(recorded)
    execution = [e for e in recorded if e.stream_id == asker]
    tools = [e for e in recorded if e.stream_id != asker]
    # The answer asked for the tools more than the horizon before they ran.
    _stored(sqlite_url, *moved_back(execution, TOOL_RUN_HORIZON + timedelta(minutes=10)), *tools)
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=str(asker), window="1d")

    assert not app.exception
    assert set(_tool_table(app)["outcome"]) == {"not recorded as run"}
    assert any("within 1 hour of the answer" in caption.value for caption in app.main.caption)


def test_more_tool_executions_than_are_shown_are_said_to_be_cut(sqlite_url: str, dashboard_env: Configure) -> None:
    recorded = moved_back(tool_conversation(tenant="acme", session="s-tools", step="answer"), timedelta(minutes=5))
    asker = _asker(recorded)
    _stored(sqlite_url, *recorded, *_unasked_runs(asker, TOOL_EXECUTIONS_SHOWN))
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=str(asker), window="1d")

    assert not app.exception
    [warning] = app.main.warning
    assert warning.value.startswith(f"More tool executions name this execution than the first {TOOL_EXECUTIONS_SHOWN}")
    shown = _tool_table(app)
    assert len(shown) == TOOL_EXECUTIONS_SHOWN
    # The first ones: the two its answer asked for ran before the others.
    assert {"lookup_order", "check_policy"} <= set(shown["tool"])


def test_an_unfinished_tool_execution_is_said_above_the_execution_pages_tool_calls(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    recorded = moved_back(tool_conversation(tenant="acme", session="s-tools", step="answer"), timedelta(minutes=5))
    asker = _asker(recorded)
    _stored(sqlite_url, *recorded, *_unasked_runs(asker, 1, finished=False))
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=str(asker), window="1d")

    assert not app.exception
    [warning] = app.main.warning
    assert warning.value.startswith("1 of 3 tool executions have no outcome recorded")
    assert sorted(_tool_table(app)["integrity"]) == ["incomplete", "intact", "intact"]


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL sent through ``engine`` while the block runs, each statement with its parameters."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append(f"{statement} {parameters}")

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_an_execution_that_asked_for_no_tool_call_reads_no_tool_execution(sqlite_url: str) -> None:
    recorded = moved_back(run(1, tenant="acme", session="s-plain", chain=[FAST], step="answer"), timedelta(minutes=5))
    _stored(sqlite_url, *recorded)
    view = DashboardView(sqlite_url)
    try:
        with _statements(view.engine) as sent:
            record = view.execution_record("acme", str(_asker(recorded)))
    finally:
        view.close()

    assert record is not None and not record.tool_calls
    assert sent and not [statement for statement in sent if "ToolCallStarted" in statement]
