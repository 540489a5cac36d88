"""The sessions the dashboard's links drill down to: the sessions with failed executions, and where an
aggregated fallback edge can be seen (the latest session of the window in which an execution fell back
from one model to another for a reason).

``llm_ledger_fallback_stats`` counts edges without naming a session; ``llm_ledger_failed_attempts`` names
the session of every attempt that failed with ``next_action = 'fall_back'`` (the error type is the edge's
reason) but not the model fallen back to, which the stream's ``FallbackTriggered`` event does. So the
latest few candidates are read from the read model (its tenant and time index), and the first whose
fallback event names the edge's models is the example."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from sqlalchemy import Connection, RowMapping, select

from llm_ledger.projections.queries import FallbackEdge, SessionSummary, Window
from llm_ledger.projections.schema import failed_attempts, sessions
from llm_ledger.store import as_utc
from llm_ledger.store.schema import events

CANDIDATES = 20
"""Failed attempts looked at per edge: chains that share a model and a reason but go on to different
models are told apart among them."""


def failed_sessions(
    connection: Connection, tenant_id: str, *, window: Window | None, search: str | None, limit: int = 50
) -> list[SessionSummary]:
    """Sessions with at least one failed execution, seen last first (as ``LedgerView.sessions`` lists
    every session: in the window when given, ``search`` matching ids containing it)."""
    table = sessions
    query = select(table).where(table.c.tenant_id == tenant_id, table.c.failed > 0)
    if window is not None:
        query = query.where(table.c.last_seen >= window.start, table.c.first_seen < window.end)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(table.c.session_id.like(f"%{escaped}%", escape="\\"))
    query = query.order_by(table.c.last_seen.desc(), table.c.session_id).limit(limit)
    return [_summary(row._mapping) for row in connection.execute(query)]


_SUMMARY_FIELDS = [field.name for field in fields(SessionSummary)]


def _summary(row: RowMapping) -> SessionSummary:
    values = {name: row[name] for name in _SUMMARY_FIELDS}
    return SessionSummary(**values | {"first_seen": as_utc(row["first_seen"]), "last_seen": as_utc(row["last_seen"])})


def fallback_sessions(
    connection: Connection, tenant_id: str, window: Window, edges: Iterable[FallbackEdge]
) -> dict[FallbackEdge, str]:
    """The latest session of the window showing each edge (edges with none, e.g. of executions without a
    session, are left out)."""
    found: dict[FallbackEdge, str] = {}
    for edge in edges:
        session = _latest_session(connection, tenant_id, window, edge)
        if session is not None:
            found[edge] = session
    return found


def _latest_session(connection: Connection, tenant_id: str, window: Window, edge: FallbackEdge) -> str | None:
    table = failed_attempts
    candidates = connection.execute(
        select(table.c.stream_id, table.c.session_id)
        .where(table.c.tenant_id == tenant_id, table.c.occurred_at >= window.start, table.c.occurred_at < window.end)
        .where(table.c.model == edge.from_model, table.c.error_type == edge.reason)
        .where(table.c.next_action == "fall_back", table.c.session_id.is_not(None))
        .order_by(table.c.occurred_at.desc())
        .limit(CANDIDATES)
    ).all()
    sessions = {str(stream_id): session for stream_id, session in candidates}
    if not sessions:
        return None
    fallbacks = connection.execute(
        select(events.c.stream_id, events.c.payload).where(
            events.c.tenant_id == tenant_id,
            events.c.stream_id.in_(list(sessions)),
            events.c.event_type == "FallbackTriggered",
        )
    )
    shown = {str(stream_id) for stream_id, payload in fallbacks if _is_edge(payload, edge)}
    return next((session for stream_id, session in sessions.items() if stream_id in shown), None)


def _is_edge(payload: object, edge: FallbackEdge) -> bool:
    return (
        isinstance(payload, dict)
        and payload.get("from_model") == edge.from_model
        and payload.get("to_model") == edge.to_model
        and payload.get("reason") == edge.reason
    )
