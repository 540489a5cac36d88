"""The Sessions page never shows a tampered or incomplete stream as valid: the known ledger, sealed, then
changed by a superuser with the append-only triggers disabled (an attempt's latency forged to 1 ms with and
without its hashes recomputed, a stream's attempts deleted, a sealed terminal event deleted) and given a
stream whose process died mid-call; ``llm-ledger audit verify`` names the same streams."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Connection, create_engine, delete, select, text, update

from llm_ledger.audit import seal_ledger, verify_ledger
from llm_ledger.audit.timeline import ExecutionView
from llm_ledger.dashboard.view import DashboardView
from llm_ledger.events import Event, StreamHeader, seal_event, uuid7
from llm_ledger.store import EventStore, normalize_url
from llm_ledger.store.rows import event_to_row, row_to_event
from llm_ledger.store.schema import events
from tests.audit.test_tampering import resealed
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.conftest import recorded_ledger
from tests.dashboard.ledger import KnownLedger, run

Configure = Callable[..., None]
SESSION = "acme-session-1"
"""Seven executions: four of one model, three that fell back after a rate limit."""


@dataclass(frozen=True, slots=True)
class Tampered:
    url: str
    ledger: KnownLedger
    forged: str
    """An attempt's latency set to 1 ms in place (its hash no longer matches)."""
    rehashed: str
    """The same forgery with every hash of the stream recomputed: only its seal shows it."""
    no_attempts: str
    """Its attempt events deleted: "succeeded, 0 attempts"."""
    no_outcome: str
    """Its sealed terminal event deleted."""
    intact: set[str]
    died: str
    """A stream of another session, recorded after the seal, whose process died after the attempt began."""


def _streams(connection: Connection, session: str) -> dict[str, list[Any]]:
    query = select(events).where(events.c.session_id == session).order_by(events.c.stream_id, events.c.stream_position)
    streams: dict[str, list[Any]] = {}
    for row in connection.execute(query):
        streams.setdefault(row.stream_id, []).append(row)
    return streams


def _forged_latency(row: Any) -> dict[str, Any]:
    payload = dict(row.payload)
    payload["latency_ms"] = 1.0
    return payload


def _rehashed(rows: list[Any], forged_position: int) -> list[dict[str, Any]]:
    """The stream's events sealed again, the attempt at ``forged_position`` 1 ms long: a chain that verifies."""
    first = rows[0]
    header = StreamHeader(
        uuid.UUID(first.stream_id), first.tenant_id, first.agent_id, first.session_id, first.turn_id, first.step
    )
    made, prev_hash = [], None
    for row in rows:
        event = row_to_event(row._mapping)
        payload = event.payload
        if row.stream_position == forged_position:
            payload = payload.model_copy(update={"latency_ms": 1.0})
        sealed = seal_event(
            header,
            position=event.stream_position,
            prev_hash=prev_hash,
            payload=payload,
            event_type=event.event_type,
            occurred_at=event.occurred_at,
            trace_id=event.trace_id,
            span_id=event.span_id,
            event_id=event.event_id,
        )
        # sealing builds the concrete event class; it is typed as the EventEnvelope base
        made.append(event_to_row(cast(Event, sealed), 0))
        prev_hash = sealed.hash
    return made


def _died_mid_call(ledger: KnownLedger) -> list[Any]:
    """A new execution's first two events only, as a process killed during its attempt leaves them."""
    recorded = run(1, tenant=ledger.tenant, session="acme-session-2", chain=["mock/x?p50_ms=1"], step="classify")
    return [e for e in recorded if e.event_type in ("ExecutionStarted", "AttemptStarted")]


@pytest.fixture(scope="module")
def tampered(_create_postgres_database: Callable[[], str]) -> Tampered:
    url = _create_postgres_database()
    ledger = recorded_ledger(url)
    seal_ledger(url)
    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        streams = _streams(connection, SESSION)
        ids = sorted(streams)
        forged, rehashed, no_attempts, no_outcome = ids[:4]
        connection.execute(text("ALTER TABLE llm_ledger_events DISABLE TRIGGER ALL"))
        attempt = next(r for r in streams[forged] if r.event_type == "AttemptSucceeded")
        connection.execute(
            update(events).where(events.c.event_id == attempt.event_id).values(payload=_forged_latency(attempt))
        )
        rehashed_at = next(r.stream_position for r in streams[rehashed] if r.event_type == "AttemptSucceeded")
        for row, values in zip(streams[rehashed], _rehashed(streams[rehashed], rehashed_at), strict=True):
            connection.execute(update(events).where(events.c.global_position == row.global_position).values(**values))
        connection.execute(
            delete(events).where(events.c.stream_id == no_attempts, events.c.event_type.like("Attempt%"))
        )
        connection.execute(delete(events).where(events.c.event_id == streams[no_outcome][-1].event_id))
        connection.execute(text("ALTER TABLE llm_ledger_events ENABLE TRIGGER ALL"))
    engine.dispose()
    died = _died_mid_call(ledger)
    store = EventStore(url)
    store.append(died)
    store.close()
    return Tampered(url, ledger, forged, rehashed, no_attempts, no_outcome, set(ids[4:]), str(died[0].stream_id))


def _timeline(url: str, session: str, *, bound: bool = False) -> dict[str, ExecutionView]:
    view = DashboardView(url, bound_tenant="acme" if bound else None)
    try:
        return {execution.execution_id: execution for execution in view.session_timeline("acme", session)}
    finally:
        view.close()


def test_audit_verify_names_each_tampered_stream(tampered: Tampered) -> None:
    report = verify_ledger(tampered.url, record=False)

    broken = {finding.stream_id for finding in report.findings if finding.severity == "broken"}
    incomplete = {finding.stream_id for finding in report.findings if finding.severity == "incomplete"}
    assert {tampered.forged, tampered.rehashed, tampered.no_attempts, tampered.no_outcome} <= broken
    assert tampered.died in incomplete and not tampered.intact & broken


@pytest.mark.parametrize("bound", [False, True], ids=["auditor", "bound reader"])
def test_each_tampered_stream_of_a_session_is_flagged_broken_and_the_rest_verified(
    tampered: Tampered, bound: bool
) -> None:
    shown = _timeline(tampered.url, SESSION, bound=bound)

    status = {stream: execution.integrity.status for stream, execution in shown.items()}
    assert status == {
        tampered.forged: "broken",
        tampered.rehashed: "broken",
        tampered.no_attempts: "broken",
        tampered.no_outcome: "broken",
        **dict.fromkeys(tampered.intact, "intact"),
    }
    assert "hash_mismatch" in shown[tampered.forged].integrity.summary
    # The chain was recomputed: only the seal's record of the stream's last event shows the forgery.
    assert [problem.split(":")[0] for problem in shown[tampered.rehashed].integrity.broken] == ["stream_rewritten"]
    assert "position_gap" in shown[tampered.no_attempts].integrity.summary
    assert not shown[tampered.no_attempts].attempts and shown[tampered.no_attempts].outcome == "succeeded"
    assert "sealed_events_missing" in shown[tampered.no_outcome].integrity.summary
    for stream in tampered.intact:
        assert shown[stream].integrity.summary == "chain verified, as sealed"


def test_a_stream_without_a_terminal_event_is_flagged_incomplete(tampered: Tampered) -> None:
    died = _timeline(tampered.url, "acme-session-2")[tampered.died]

    assert died.integrity.status == "incomplete" and died.outcome == "incomplete"
    assert died.integrity.summary.startswith("incomplete: no terminal event: the last is AttemptStarted")
    assert not died.integrity.sealed


def test_the_sessions_page_says_which_executions_cannot_be_trusted(
    tampered: Tampered, dashboard_env: Configure
) -> None:
    dashboard_env(tampered.url)

    app = open_dashboard(page="sessions", tenant="acme", session=SESSION, window="1d")

    assert not app.exception
    [error] = app.main.error
    assert error.value.startswith("4 of 7 executions of this session are not as they were recorded")
    [table] = [frame.value for frame in app.main.dataframe if "integrity" in frame.value.columns]
    flags = dict(zip(table["execution"], table["integrity"], strict=True))
    assert {stream for stream, flag in flags.items() if flag == "broken"} == {
        tampered.forged,
        tampered.rehashed,
        tampered.no_attempts,
        tampered.no_outcome,
    }
    assert {stream for stream, flag in flags.items() if flag == "intact"} == tampered.intact


def test_the_sessions_page_says_when_an_execution_has_no_outcome(tampered: Tampered, dashboard_env: Configure) -> None:
    dashboard_env(tampered.url, tenant="acme")

    app = open_dashboard(page="sessions", session="acme-session-2", window="1d")

    assert not app.exception and not app.main.error
    [warning] = app.main.warning
    assert warning.value.startswith("1 of 7 executions have no outcome recorded (no terminal event)")


def test_a_reader_login_granted_only_llm_ledger_reader_sees_the_same_flags(
    tampered: Tampered, ledger_login: Callable[..., str]
) -> None:
    url = ledger_login("llm_ledger_reader", database=tampered.url)

    shown = _timeline(url, SESSION, bound=True)

    assert sorted(e.integrity.status for e in shown.values()) == ["broken"] * 4 + ["intact"] * 3


def test_a_forged_event_that_is_no_longer_valid_is_shown_flagged(tampered: Tampered) -> None:
    """A payload no executor writes (a field it cannot have): the session is still shown, the stream flagged."""
    engine = create_engine(normalize_url(tampered.url))
    with engine.begin() as connection:
        streams = _streams(connection, "acme-session-0")
        stream = next(s for s, rows in sorted(streams.items()) if rows[-1].event_type == "ExecutionSucceeded")
        connection.execute(text("ALTER TABLE llm_ledger_events DISABLE TRIGGER ALL"))
        connection.execute(
            text(
                "UPDATE llm_ledger_events SET payload = jsonb_set(payload, '{latency_ms}', '\"fast\"')"
                " WHERE stream_id = :stream AND event_type = 'ExecutionSucceeded'"
            ),
            {"stream": stream},
        )
        connection.execute(text("ALTER TABLE llm_ledger_events ENABLE TRIGGER ALL"))
    engine.dispose()

    shown = _timeline(tampered.url, "acme-session-0")[stream]

    assert shown.integrity.status == "broken" and "invalid" in shown.integrity.summary
    assert shown.outcome == "succeeded" and shown.latency_ms is None


def _copied_as_a_new_stream(rows: list[Any], session: str) -> list[dict[str, Any]]:
    """A sealed stream's events as a new execution of ``session``: new ids, a chain that verifies."""
    first = rows[0]
    header = StreamHeader(uuid7(), first.tenant_id, first.agent_id, session, first.turn_id, first.step)
    return resealed(rows, header, shift=timedelta(0), ids=True)


def test_a_stream_inserted_into_sealed_history_is_flagged_broken(tampered: Tampered) -> None:
    """A whole execution forged into a range already sealed (its transaction id set before a sealed one's): its
    own chain verifies and no seal names it, so only the seal's range shows it, as verify's does."""
    session = "acme-session-inserted"
    engine = create_engine(normalize_url(tampered.url))
    with engine.begin() as connection:
        original = _streams(connection, SESSION)[sorted(tampered.intact)[0]]
        forged = _copied_as_a_new_stream(original, session)
        connection.execute(events.insert(), forged)
        connection.execute(text("ALTER TABLE llm_ledger_events DISABLE TRIGGER ALL"))
        connection.execute(
            text(
                "UPDATE llm_ledger_events SET tx_id ="
                " (SELECT CAST(CAST(CAST(CAST(tx_id AS text) AS bigint) - 1 AS text) AS xid8)"
                " FROM llm_ledger_events WHERE global_position = :at)"
                " WHERE session_id = :session"
            ),
            {"at": original[0].global_position, "session": session},
        )
        connection.execute(text("ALTER TABLE llm_ledger_events ENABLE TRIGGER ALL"))
    engine.dispose()
    stream = str(forged[0]["stream_id"])
    report = verify_ledger(tampered.url, tenant_id="acme", record=False)
    assert "event_inserted" in {finding.kind for finding in report.findings if finding.stream_id == stream}

    [shown] = _timeline(tampered.url, session).values()

    assert shown.integrity.status == "broken"
    assert shown.integrity.summary.startswith(f"event_inserted: {len(forged)} event(s) in the range of a seal")
