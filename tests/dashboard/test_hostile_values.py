"""Values read from the ledger are shown as written, never as Streamlit markdown: an execution whose stored
values were forged into markup (its id, an event's type, an attempt's next action; the check then quotes
the event type) shows them escaped on the Sessions and Execution pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import create_engine, text
from streamlit.testing.v1 import AppTest

from llm_ledger.dashboard.shaping import literal
from llm_ledger.store import EventStore, migrate, normalize_url
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.ledger import BACKUP, LIMITED, moved_back, run

Configure = Callable[..., None]
HOSTILE_ID = "e`**id**`[x](http://evil.example)"
HOSTILE_TYPE = "**type**[x](http://evil.example)"
HOSTILE_ACTION = "**next** :red[x] $y$"


def _markdown(app: AppTest) -> list[str]:
    """What the run drew as markdown: text, captions and the banners."""
    elements = [*app.main.markdown, *app.main.caption, *app.main.error, *app.main.warning, *app.main.success]
    return [element.value for element in elements]


def _forged_ledger(url: str) -> None:
    """An execution that fell back, then forged in place as a superuser who dropped the trigger could."""
    migrate.upgrade(url)
    store = EventStore(url)
    store.append(
        moved_back(run(1, tenant="acme", session="s-hostile", chain=[LIMITED, BACKUP], step="a"), timedelta(minutes=5))
    )
    store.close()
    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER llm_ledger_events_reject_update"))
        connection.execute(
            text(
                "UPDATE llm_ledger_events SET payload = json_set(payload, '$.next_action', :action) "
                "WHERE event_type = 'AttemptFailed'"
            ),
            {"action": HOSTILE_ACTION},
        )
        connection.execute(
            text("UPDATE llm_ledger_events SET event_type = :type WHERE event_type = 'FallbackTriggered'"),
            {"type": HOSTILE_TYPE},
        )
        connection.execute(text("UPDATE llm_ledger_events SET stream_id = :id"), {"id": HOSTILE_ID})
    engine.dispose()


def test_forged_values_are_shown_as_written_on_the_execution_page(sqlite_url: str, dashboard_env: Configure) -> None:
    _forged_ledger(sqlite_url)
    dashboard_env(sqlite_url)

    app = open_dashboard(page="execution", tenant="acme", execution=HOSTILE_ID, window="1d")

    assert not app.exception
    shown = "\n".join(_markdown(app))
    for value in (HOSTILE_ID, HOSTILE_TYPE):
        assert value not in shown
        assert literal(value) in shown
    # The check names the forged event type; the banner quotes it escaped.
    [error] = app.main.error
    assert literal(HOSTILE_TYPE) in error.value


def test_a_forged_next_action_is_shown_as_written_on_the_sessions_page(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    _forged_ledger(sqlite_url)
    dashboard_env(sqlite_url)

    app = open_dashboard(page="sessions", tenant="acme", session="s-hostile", window="1d")

    assert not app.exception
    shown = "\n".join(_markdown(app))
    assert HOSTILE_ACTION not in shown
    assert literal(HOSTILE_ACTION) in shown
