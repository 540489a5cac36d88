"""Drilling down from the figures to one session: the Sessions page marks the sessions with failed
executions (and lists only those on demand), says why each execution failed and in which turn, lists the
attempts under their execution's number and id, and shows every message whole; the Errors page's failed
attempts and the Fallbacks page's chains link to a session that resolves to them. Held to the known
ledger's raw events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from streamlit.testing.v1 import AppTest

from llm_ledger.dashboard.views.sessions import FAILED_ONLY_KEY
from llm_ledger.events import AttemptFailed, Event, ExecutionFailed, FallbackTriggered
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.ledger import BACKUP, LIMITED

Configure = Callable[..., None]
_Event = TypeVar("_Event", bound=Event)
FAILED_SESSION = "acme-session-2"
"""Two executions of a broken model (each failed: all models failed) and four that succeeded."""


def _table(app: AppTest, column: str) -> Any:
    """The one table of the page that has ``column``."""
    [table] = [frame.value for frame in app.main.dataframe if column in frame.value.columns]
    return table


def _followed(link: str) -> AppTest:
    """The dashboard as a browser opening ``link`` (a ``?query`` of the dashboard's own) would draw it."""
    return open_dashboard(**dict(parse_qsl(urlsplit(link).query)))


def _recorded(ledger: PopulatedLedger, kind: type[_Event], session: str | None = None) -> list[_Event]:
    """The known ledger's events of one type (of one session, when given)."""
    return [
        e
        for e in ledger.ledger.events
        if isinstance(e, kind) and e.tenant_id == ledger.ledger.tenant and session in (None, e.session_id)
    ]


def test_the_session_picker_marks_the_sessions_with_failed_executions(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    failed = Counter(e.session_id for e in _recorded(populated_ledger, ExecutionFailed))

    app = open_dashboard(page="sessions", tenant=ledger.tenant, window="1d")

    options = app.main.selectbox(key="session").options
    assert {option for option in options if option.startswith("🔴")} == {
        f"🔴 {session} · {count} failed" for session, count in failed.items()
    }
    assert len(options) == 4


def test_the_session_picker_lists_only_failed_sessions_on_demand(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    failed = {e.session_id for e in _recorded(populated_ledger, ExecutionFailed)}
    app = open_dashboard(page="sessions", tenant=ledger.tenant, session=ledger.traced_session, window="1d")

    app.main.checkbox(key=FAILED_ONLY_KEY).check().run()

    assert not app.exception
    picker = app.main.selectbox(key="session")
    assert {option.split(" ")[1] for option in picker.options} == failed
    assert picker.value in failed


def test_a_failed_execution_says_why_it_failed_and_in_which_turn(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    recorded = _recorded(populated_ledger, ExecutionFailed, FAILED_SESSION)

    app = open_dashboard(page="sessions", tenant=ledger.tenant, session=FAILED_SESSION, window="1d")

    executions = _table(app, "events")
    failed = executions[executions["outcome"] == "failed"]
    assert sorted(zip(failed["turn"], failed["error type"], failed["message"], strict=True)) == sorted(
        (e.turn_id, e.payload.error_type, e.payload.message) for e in recorded
    )
    assert set(failed["error type"]) == {"all_models_failed"}
    # Every message whole, on demand.
    [messages] = [expander for expander in app.main.expander if expander.label == "Messages in full"]
    assert {e.payload.message for e in recorded} <= {code.value for code in messages.code}


def test_attempts_are_listed_under_their_executions_number_and_id(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    failures = {
        (str(e.stream_id), e.payload.attempt): e.payload
        for e in _recorded(populated_ledger, AttemptFailed, ledger.traced_session)
    }

    app = open_dashboard(page="sessions", tenant=ledger.tenant, session=ledger.traced_session, window="1d")

    numbers = dict(zip(_table(app, "events")["execution"], _table(app, "events")["#"], strict=True))
    attempts = _table(app, "next action")
    assert len(attempts) == 10
    assert all(
        numbers[execution] == number for execution, number in zip(attempts["execution"], attempts["#"], strict=True)
    )
    shown_failures = attempts[attempts["outcome"] == "failed"]
    assert {
        (execution, attempt): (step, retry, action)
        for execution, attempt, step, retry, action in zip(
            shown_failures["execution"],
            shown_failures["attempt"],
            shown_failures["step"],
            shown_failures["retry"],
            shown_failures["next action"],
            strict=True,
        )
    } == {key: ("answer", 0, payload.next_action) for key, payload in failures.items()}
    assert len(failures) == 3


def test_the_errors_pages_failed_attempts_link_to_their_session_and_execution(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)
    failed = {str(e.stream_id): e.session_id for e in _recorded(populated_ledger, AttemptFailed)}

    app = open_dashboard(page="errors", tenant=ledger.tenant, window="1d")

    rows = _table(app, "next action")
    assert len(rows) == len(failed)
    for session_link, execution_link in zip(rows["session"], rows["execution"], strict=True):
        execution_id = dict(parse_qsl(urlsplit(execution_link).query))["execution"]
        session = _followed(session_link)
        assert not session.exception
        assert session.main.selectbox(key="session").value == failed[execution_id]
        assert execution_id in set(_table(session, "events")["execution"])
    execution = _followed(rows["execution"][0])
    assert execution.main.header[0].value == "Execution"
    assert "AttemptFailed" in set(_table(execution, "event id")["event"])


def test_a_fallback_chain_links_to_a_session_that_took_it(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url)

    app = open_dashboard(page="fallbacks", tenant=ledger.tenant, window="1d")

    [link] = _table(app, "example")["example"]
    session = _followed(link)
    shown = session.main.selectbox(key="session").value
    took_it = {
        e.session_id
        for e in _recorded(populated_ledger, FallbackTriggered)
        if (e.payload.from_model, e.payload.to_model) == (LIMITED, BACKUP)
    }
    assert shown in took_it
    assert set(_table(session, "events")["fell back"]) == {True, False}
