"""The Execution page, the one a person opens to understand one execution: whether its stream's hash chain
verifies (intact, and broken after a superuser changed an event in place), every event of its stream in
order with its payload, the tools its answer asked for, and never another tenant's execution. Held to the
raw events recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from streamlit.testing.v1 import AppTest

from llm_ledger.dashboard.view import DashboardView
from llm_ledger.events import Event, ExecutionFailed, ToolCallStarted, uuid7
from llm_ledger.projections import TenantNotAllowedError
from llm_ledger.store import EventStore, migrate, normalize_url
from tests.dashboard.apptest import metrics, open_dashboard, rendered_text
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.ledger import FAST, moved_back, run, tool_conversation

Configure = Callable[..., None]


def _table(app: AppTest, column: str) -> Any:
    [table] = [frame.value for frame in app.main.dataframe if column in frame.value.columns]
    return table


def _stream(events: list[Event], execution_id: str) -> list[Event]:
    return sorted((e for e in events if str(e.stream_id) == execution_id), key=lambda e: e.stream_position)


def _fell_back(events: list[Event], session: str) -> str:
    return next(str(e.stream_id) for e in events if e.session_id == session and e.event_type == "FallbackTriggered")


def _tools_execution(events: list[Event], session: str) -> str:
    return next(str(e.stream_id) for e in events if e.session_id == session and e.event_type == "ExecutionStarted")


def _tool_conversation(session: str) -> tuple[list[Event], str]:
    """A tool conversation of tenant acme's ``session``, recorded five minutes back, and its execution's id."""
    recorded = moved_back(tool_conversation(tenant="acme", session=session, step="answer"), timedelta(minutes=5))
    return recorded, _tools_execution(recorded, session)


def _store(url: str, events: list[Event]) -> None:
    """``events`` stored in a new ledger at ``url``."""
    migrate.upgrade(url)
    store = EventStore(url)
    store.append(events)
    store.close()


def test_the_execution_page_shows_every_event_of_its_stream_in_order(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    execution_id = _fell_back(ledger.events, ledger.traced_session)
    recorded = _stream(ledger.events, execution_id)

    app = open_dashboard(page="execution", tenant=ledger.tenant, execution=execution_id, window="1d")

    assert not app.exception
    [intact] = app.main.success
    assert intact.value.startswith("Integrity: intact. Every event of this execution is as it was recorded")
    assert "chain verified, as sealed" in intact.value
    events = _table(app, "event id")
    assert list(zip(events["position"], events["event"], events["event id"], strict=True)) == [
        (e.stream_position, e.event_type, str(e.event_id)) for e in recorded
    ]
    assert "FallbackTriggered" in set(events["event"])
    # Each payload whole, as stored.
    assert [json.loads(payload.value) for payload in app.main.json] == [e.to_record()["payload"] for e in recorded]
    assert metrics(app)["Fell back"] == "yes"
    assert f"session={ledger.traced_session}" in rendered_text(app)


def test_the_execution_page_shows_the_tool_calls_its_answer_asked_for(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    execution_id = _tools_execution(ledger.events, ledger.tools_session)
    asked = {
        e.payload.tool_call_id: e.payload.tool_name
        for e in ledger.events
        if isinstance(e, ToolCallStarted) and str(e.payload.execution_id) == execution_id
    }

    app = open_dashboard(page="execution", tenant=ledger.tenant, execution=execution_id, window="1d")

    tools = _table(app, "tool call")
    assert dict(zip(tools["tool call"], tools["tool"], strict=True)) == asked
    assert dict(zip(tools["tool"], tools["outcome"], strict=True)) == {
        "lookup_order": "succeeded",
        "check_policy": "failed",
    }
    assert set(tools["integrity"]) == {"intact"}


def test_without_an_id_the_execution_page_shows_the_sessions_first_failed_execution(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    failed = [e for e in ledger.events if e.session_id == "acme-session-2" and isinstance(e, ExecutionFailed)]
    failures = {str(e.stream_id): e.payload.message for e in failed}
    _, first_failed = min((e.occurred_at, str(e.stream_id)) for e in failed)

    app = open_dashboard(page="execution", tenant=ledger.tenant, session="acme-session-2", window="1d")

    assert app.main.text_input(key="execution").value == first_failed
    assert metrics(app)["Outcome"] == "failed"
    assert failures[first_failed] in {code.value for code in app.main.code}
    app.run()
    assert app.query_params["execution"] == first_failed


def test_without_an_id_nor_a_failure_the_execution_page_shows_the_sessions_first_execution(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    session = ledger.traced_session
    assert not [e for e in ledger.events if e.session_id == session and isinstance(e, ExecutionFailed)]
    _, first = min((e.occurred_at, str(e.stream_id)) for e in ledger.events if e.session_id == session)

    app = open_dashboard(page="execution", tenant=ledger.tenant, session=session, window="1d")

    assert app.main.text_input(key="execution").value == first
    assert f"Session {session}'s first execution:" in [caption.value for caption in app.main.caption]


def test_a_cleared_execution_id_stays_cleared(populated_ledger: PopulatedLedger, dashboard_env: Configure) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    app = open_dashboard(page="execution", tenant=ledger.tenant, session="acme-session-2", window="1d")
    assert app.main.text_input(key="execution").value

    app.main.text_input(key="execution").input("").run()

    assert not app.exception
    assert app.main.text_input(key="execution").value == ""
    assert not app.main.dataframe
    assert "Open an execution from the Sessions or Errors page" in app.main.markdown[-1].value


def test_an_unknown_execution_id_says_so(populated_ledger: PopulatedLedger, dashboard_env: Configure) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    unknown = str(uuid7())

    app = open_dashboard(page="execution", tenant=ledger.tenant, execution=unknown, window="1d")

    assert not app.exception
    [warning] = app.main.warning
    assert warning.value == f"Tenant {ledger.tenant} has no execution {unknown}."
    assert not app.main.dataframe


def test_a_bound_viewer_cannot_open_another_tenants_execution(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    theirs = next(str(e.stream_id) for e in ledger.events if e.tenant_id == ledger.other_tenant)
    dashboard_env(populated_ledger.url)
    assert open_dashboard(page="execution", tenant=ledger.other_tenant, execution=theirs).main.success
    dashboard_env(populated_ledger.url, tenant=ledger.tenant)

    app = open_dashboard(page="execution", tenant=ledger.other_tenant, execution=theirs, window="1d")

    assert not app.exception
    # The same words as for an id nobody has (after the link's tenant is said not to be shown here).
    assert app.main.warning[-1].value == f"Tenant {ledger.tenant} has no execution {theirs}."
    text = rendered_text(app)
    for private in ("globex-private-model", "globex-private-step", "globex-private-agent", ledger.other_session):
        assert private not in text


def test_an_execution_changed_after_it_was_recorded_is_shown_broken(sqlite_url: str, dashboard_env: Configure) -> None:
    recorded, execution_id = _tool_conversation("s-forged")
    _store(sqlite_url, recorded)
    _forge(sqlite_url, "AttemptSucceeded", "$.latency_ms", "1.0")
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=execution_id, window="1d")

    assert not app.exception
    [error] = app.main.error
    assert error.value.startswith("This execution is not as it was recorded")
    assert "mismatch at position 2" in error.value
    assert not app.main.success
    assert set(_table(app, "tool call")["integrity"]) == {"intact"}


def test_a_tool_execution_changed_after_it_was_recorded_is_shown_broken(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    recorded, execution_id = _tool_conversation("s-forged")
    _store(sqlite_url, recorded)
    _forge(sqlite_url, "ToolCallFailed", "$.message", "'all fine'")
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=execution_id, window="1d")

    assert not app.exception
    [intact] = app.main.success
    # Not sealed yet: a rewrite with every hash recomputed would not show, and the banner says so.
    assert intact.value.startswith("Integrity: intact. Its hash chain verifies, but no seal holds it yet")
    assert "Every event" not in intact.value
    [error] = app.main.error
    assert error.value.startswith("1 of 2 tool executions of this execution are not as they were recorded")
    tools = _table(app, "tool call")
    assert dict(zip(tools["tool"], tools["integrity"], strict=True)) == {
        "lookup_order": "intact",
        "check_policy": "broken",
    }


def _forge(url: str, event_type: str, path: str, value: str) -> None:
    """Change one value of an event in place, as a superuser who dropped the append-only trigger could."""
    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER llm_ledger_events_reject_update"))
        connection.execute(
            text(
                f"UPDATE llm_ledger_events SET payload = json_set(payload, '{path}', {value}) WHERE event_type = :type"
            ),
            {"type": event_type},
        )
    engine.dispose()


def test_a_view_bound_to_a_tenant_refuses_another_tenants_execution(populated_ledger: PopulatedLedger) -> None:
    ledger = populated_ledger.ledger
    theirs = next(str(e.stream_id) for e in ledger.events if e.tenant_id == ledger.other_tenant)
    view = DashboardView(populated_ledger.url, bound_tenant=ledger.tenant)
    try:
        with pytest.raises(TenantNotAllowedError, match=f"bound to tenant '{ledger.tenant}'"):
            view.execution_record(ledger.other_tenant, theirs)
        assert view.execution_record(ledger.tenant, theirs) is None
    finally:
        view.close()


def test_an_execution_whose_process_died_mid_call_is_shown_incomplete(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    recorded, execution_id = _tool_conversation("s-died")
    # What a process killed after the attempt began leaves: the stream's first two events (beside an
    # execution that ended, so that the tenant has figures and the dashboard shows it).
    started = [e for e in _stream(recorded, execution_id) if e.stream_position < 2]
    _store(sqlite_url, [*started, *run(1, tenant="acme", session="s-other", chain=[FAST], step="classify")])
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=execution_id, window="1d")

    assert not app.exception
    assert not app.main.error and not app.main.success
    [warning] = app.main.warning
    assert warning.value.startswith("This execution has no outcome recorded")
    assert metrics(app)["Outcome"] == "incomplete"
    assert list(_table(app, "event id")["event"]) == ["ExecutionStarted", "AttemptStarted"]
