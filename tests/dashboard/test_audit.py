"""The audit page under AppTest, over what ``llm-ledger audit verify`` recorded: no run yet, a clean run, a
run over a ledger tampered with by a superuser with the triggers disabled, and a viewer bound to a tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

import pytest
from sqlalchemy import create_engine, text

from llm_ledger.audit import seal_ledger, verify_ledger
from llm_ledger.dashboard.shaping import NONE
from llm_ledger.dashboard.view import DashboardView
from llm_ledger.store import EventStore, migrate, normalize_url
from tests.dashboard.apptest import metrics, open_dashboard, rendered_text
from tests.dashboard.conftest import PopulatedLedger, recorded_ledger
from tests.dashboard.ledger import FAST, KnownLedger, run

Configure = Callable[..., None]
SEVERITY_ORDER = {"broken": 0, "incomplete": 1, "warning": 2}


@dataclass(frozen=True, slots=True)
class TamperedLedger:
    url: str
    ledger: KnownLedger
    gapped_stream: str
    """An acme stream whose event at position 1 was deleted."""
    deleted_stream: str
    """An acme stream deleted whole."""
    forged_stream: str
    """An acme stream whose first event got a payload field it cannot have."""
    other_tenants_stream: str
    """A globex stream whose event at position 1 was deleted."""


def _streams(ledger: KnownLedger, *, tenant: str, session: str) -> list[str]:
    return sorted({str(e.stream_id) for e in ledger.events if e.tenant_id == tenant and e.session_id == session})


@pytest.fixture(scope="module")
def tampered_ledger(_create_postgres_database: Callable[[], str]) -> TamperedLedger:
    """The known ledger, sealed, then changed by a superuser who disabled the triggers, then verified."""
    url = _create_postgres_database()
    ledger = recorded_ledger(url)
    seal_ledger(url)
    gapped, forged = _streams(ledger, tenant=ledger.tenant, session=ledger.traced_session)[:2]
    deleted = _streams(ledger, tenant=ledger.tenant, session="acme-session-2")[0]
    other = _streams(ledger, tenant=ledger.other_tenant, session=ledger.other_session)[0]
    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE llm_ledger_events DISABLE TRIGGER ALL"))
        delete = "DELETE FROM llm_ledger_events WHERE stream_id = :stream"
        connection.execute(text(f"{delete} AND stream_position = 1"), [{"stream": gapped}, {"stream": other}])
        connection.execute(text(delete), {"stream": deleted})
        connection.execute(
            text(
                "UPDATE llm_ledger_events SET payload = jsonb_set(payload, '{forged}', '\"yes\"')"
                " WHERE stream_id = :stream AND stream_position = 0"
            ),
            {"stream": forged},
        )
        connection.execute(text("ALTER TABLE llm_ledger_events ENABLE TRIGGER ALL"))
    engine.dispose()
    assert not verify_ledger(url).ok
    return TamperedLedger(url, ledger, gapped, deleted, forged, other)


def _findings(app: object) -> list[dict[str, object]]:
    [table] = [frame.value for frame in app.main.dataframe if "severity" in frame.value.columns]  # type: ignore[attr-defined]
    rows: list[dict[str, object]] = table.to_dict("records")
    return rows


def test_without_a_verify_run_the_page_names_the_command(sqlite_url: str, dashboard_env: Configure) -> None:
    migrate.upgrade(sqlite_url)
    store = EventStore(sqlite_url)
    store.append(run(2, tenant="acme", session="s-1", chain=[FAST], step="classify"))
    store.close()
    dashboard_env(sqlite_url)

    app = open_dashboard(page="audit", tenant="acme")

    assert not app.exception
    assert not app.error
    assert app.main.header[0].value == "Audit"
    [info] = app.main.info
    assert info.value == "No `llm-ledger audit verify` run has checked tenant acme yet."
    assert f"LLM_LEDGER_DATABASE_URL={sqlite_url} llm-ledger audit verify" in rendered_text(app)


def test_the_last_run_of_a_tenant_is_the_latest_that_checked_it(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    store = EventStore(sqlite_url)
    recorded = {
        tenant: run(1, tenant=tenant, session=f"{tenant}-s", chain=[FAST], step="classify")
        for tenant in ("acme", "globex")
    }
    for events in recorded.values():
        store.append(events)
    store.close()
    everyone = verify_ledger(sqlite_url)
    globex_only = verify_ledger(sqlite_url, tenant_id="globex")

    view = DashboardView(sqlite_url)
    acme, globex = view.last_audit("acme"), view.last_audit("globex")
    view.close()

    assert acme is not None and globex is not None
    assert (acme.run_id, acme.scope_tenant) == (everyone.run_id, None)
    assert (globex.run_id, globex.scope_tenant) == (globex_only.run_id, "globex")
    assert (globex.streams, globex.events, globex.ok) == (1, len(recorded["globex"]), True)


def test_a_clean_run_shows_intact_with_what_it_checked_and_the_last_seal(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="audit", tenant=ledger.tenant)

    assert not app.exception
    assert not app.error
    [success] = app.main.success
    assert success.value.startswith(f"Intact: every event of tenant {ledger.tenant}")
    acme_events = [e for e in ledger.events if e.tenant_id == ledger.tenant]
    shown = metrics(app)
    assert shown["Streams"] == str(len({e.stream_id for e in acme_events}))
    assert shown["Events"] == str(len(acme_events))
    assert (shown["Seals"], shown["Broken streams"], shown["Incomplete"]) == ("1", "0", "0")
    engine = create_engine(normalize_url(populated_ledger.url))
    with engine.connect() as connection:
        seal_hash = connection.execute(
            text("SELECT seal_hash FROM llm_ledger_seals WHERE tenant_id = :t ORDER BY sequence DESC LIMIT 1"),
            {"t": ledger.tenant},
        ).scalar_one()
    engine.dispose()
    assert [code.value for code in app.main.code] == [seal_hash]
    assert any(" over every tenant · run " in caption.value for caption in app.main.caption)
    assert not [frame for frame in app.main.dataframe if "severity" in frame.value.columns]


def test_a_broken_run_names_each_broken_stream_broken_first_with_a_link_to_its_session(
    tampered_ledger: TamperedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(tampered_ledger.url)
    ledger = tampered_ledger.ledger

    app = open_dashboard(page="audit", tenant=ledger.tenant, window="1d")

    assert not app.exception
    [error] = app.main.error
    assert f"Tenant {ledger.tenant}'s events fail the integrity checks" in error.value
    assert metrics(app)["Broken streams"] == "3"
    rows = _findings(app)
    ranks = [SEVERITY_ORDER[str(row["severity"])] for row in rows]
    assert ranks == sorted(ranks)
    assert {row["stream"] for row in rows if row["severity"] == "broken"} - {NONE} == {
        tampered_ledger.gapped_stream,
        tampered_ledger.deleted_stream,
        tampered_ledger.forged_stream,
    }
    gapped = [row for row in rows if row["stream"] == tampered_ledger.gapped_stream]
    link = parse_qs(str(gapped[0]["session"]).removeprefix("?"))
    assert link == {
        "page": ["sessions"],
        "window": ["1d"],
        "tenant": [ledger.tenant],
        "session": [ledger.traced_session],
    }
    # Every event of the deleted stream is gone: there is no session left to show.
    assert all(not isinstance(row["session"], str) for row in rows if row["stream"] == tampered_ledger.deleted_stream)


def test_a_session_with_a_forged_event_is_shown_with_its_broken_streams_flagged(
    tampered_ledger: TamperedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(tampered_ledger.url)
    ledger = tampered_ledger.ledger

    app = open_dashboard(page="sessions", tenant=ledger.tenant, session=ledger.traced_session, window="1d")

    assert not app.exception
    [error] = app.main.error
    assert error.value.startswith("2 of 7 executions of this session are not as they were recorded")
    assert "`llm-ledger audit verify` names every event" in error.value
    [table] = [frame.value for frame in app.main.dataframe if "integrity" in frame.value.columns]
    checked = {row["execution"]: row for row in table.to_dict("records")}
    assert checked[tampered_ledger.forged_stream]["integrity"] == "broken"
    assert "invalid at position 0: not a valid event (ExecutionStarted.payload.forged" in str(
        checked[tampered_ledger.forged_stream]["checked"]
    )
    assert "position_gap" in str(checked[tampered_ledger.gapped_stream]["checked"])


def test_a_bound_viewer_sees_only_its_own_tenants_audit(
    tampered_ledger: TamperedLedger, dashboard_env: Configure
) -> None:
    ledger = tampered_ledger.ledger
    dashboard_env(tampered_ledger.url, tenant=ledger.tenant)

    app = open_dashboard(page="audit", tenant=ledger.other_tenant)

    assert not app.exception
    text_shown = rendered_text(app).replace(f"tenant={ledger.other_tenant}", "")
    assert tampered_ledger.gapped_stream in text_shown
    assert tampered_ledger.other_tenants_stream not in text_shown
    assert ledger.other_tenant not in text_shown

    dashboard_env(tampered_ledger.url, tenant=ledger.other_tenant)
    app = open_dashboard(page="audit")

    broken_streams = {row["stream"] for row in _findings(app) if row["severity"] == "broken"} - {NONE}
    assert broken_streams == {tampered_ledger.other_tenants_stream}
    assert tampered_ledger.gapped_stream not in rendered_text(app)
    assert metrics(app)["Broken streams"] == "1"


def test_a_database_without_the_audit_tables_names_the_upgrade(sqlite_url: str, dashboard_env: Configure) -> None:
    migrate.upgrade(sqlite_url, "0004")
    dashboard_env(sqlite_url)

    app = open_dashboard(page="audit")

    assert not app.exception
    [error] = app.error
    assert "is at schema revision 0004" in error.value
    assert "`llm-ledger db upgrade`" in error.value
