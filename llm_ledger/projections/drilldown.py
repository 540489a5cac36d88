"""The sessions the dashboard's links drill down to: where an aggregated fallback chain can be seen (the
latest session of the window in which an execution fell back from one model to another for a reason).

``llm_ledger_fallback_stats`` counts chains without naming a session, so the examples are read from the
raw ``FallbackTriggered`` events, which name both models and the reason. They are found through the failed
attempts they follow (``llm_ledger_failed_attempts``), newest first, in rounds: each round reads the
failures older than the last one looked at, a few first and then more, until every chain has its example,
no failure is left, or ``FAILURES_SCANNED`` were looked at."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, or_, select

from llm_ledger.projections.queries import (
    EVERYTHING,
    FallbackEdge,
    Filters,
    Window,
    kept_agents_and_steps,
    kept_fallback_ends,
)
from llm_ledger.projections.schema import failed_attempts
from llm_ledger.store import as_utc
from llm_ledger.store.schema import events

FAILURES_SCANNED = 10_000
"""How many of the window's latest failed attempts that fell back an example is looked for among, at most
(those of the chosen agents and steps, of a session, from a model a wanted chain falls back from): a chain
whose last fallback is older than these, or that only executions without a session took, has no example."""
FIRST_SCANNED = 64
"""How many failed attempts the first round looks at: most chains' latest fallback is among the window's
last few dozen, and each failure looked at costs two lookups of the events."""
SCAN_GROWTH = 4
"""How many times as many failed attempts each round looks at as the one before (the older ones, never
the same again), until ``FAILURES_SCANNED`` were looked at in all."""


def fallback_sessions(
    connection: Connection,
    tenant_id: str,
    window: Window,
    edges: Iterable[FallbackEdge],
    filters: Filters = EVERYTHING,
    cap: int = FAILURES_SCANNED,
) -> dict[FallbackEdge, str]:
    """The latest session of the window showing each edge, among the window's latest ``cap`` failed
    attempts that fell back from the edges' models (of the agents and steps ``filters`` choose), kept by
    its models and providers (as ``LedgerView.fallback_edges`` keeps the chains); an edge with none (taken
    only by executions without a session, or only before those) is left out."""
    wanted = {(edge.from_model, edge.to_model, edge.reason): edge for edge in edges}
    # A fallback is from the model whose attempt failed: failures of no wanted chain's model give no example,
    # and filtering them out before counting keeps a rarely used model's chain within the cap.
    from_models = sorted({edge.from_model for edge in wanted.values()})
    latest: dict[FallbackEdge, tuple[datetime, str]] = {}
    failures_scanned = 0
    older_than: _Failure | None = None
    round_size = FIRST_SCANNED
    while len(latest) < len(wanted) and failures_scanned < cap:
        size = min(round_size, cap - failures_scanned)
        dialect = connection.dialect.name
        rows = list(connection.execute(_round(tenant_id, window, filters, from_models, older_than, size, dialect)))
        for row in rows:
            edge = wanted.get((row.from_model, row.to_model, row.reason))
            if edge is not None and row.session_id is not None:
                seen = (as_utc(row.fell_back_at), row.session_id)
                latest[edge] = max(latest.get(edge, seen), seen)
        failures_scanned += len(rows)
        if len(rows) < size:
            break
        older_than = _Failure(rows[-1].failed_at, rows[-1].failure_id)
        round_size *= SCAN_GROWTH
    return {edge: session for edge, (_, session) in latest.items()}


@dataclass(frozen=True, slots=True)
class _Failure:
    """Where a round stopped: the last failed attempt it looked at (the next looks at older ones only)."""

    occurred_at: datetime
    event_id: str


_FROM = events.c.payload["from_model"].as_string()
_TO = events.c.payload["to_model"].as_string()
_REASON = events.c.payload["reason"].as_string()
_FAILURE_BEFORE = timedelta(minutes=1)
"""How long before its ``FallbackTriggered`` the failed attempt it follows may be (it is recorded at once
after the failure, in the same step of the executor): the failures looked at start this much before the window."""


def _round(
    tenant_id: str,
    window: Window,
    filters: Filters,
    from_models: Sequence[str],
    older_than: _Failure | None,
    size: int,
    dialect: str,
) -> Select[Any]:
    """The next ``size`` failed attempts that fell back (newest first, older than ``older_than``), each
    with the ``FallbackTriggered`` it led to when that one is of a session, in the window and kept by the
    filters' models and providers (its columns ``NULL`` when not): one row per failure looked at.

    Every fallback follows an attempt failed with the next action ``fall_back``, which the read model
    ``llm_ledger_failed_attempts`` keeps (its tenant and time index read backwards, stopping there); its
    ``FallbackTriggered``, the event after the failed attempt's in its stream, names the model it went on
    to. Scanning the raw events by time instead reads every event of the window to find the few fallbacks
    among them (a tenant's month: half a million events for some thousand fallbacks)."""
    attempts = failed_attempts
    page = (
        select(attempts.c.stream_id, attempts.c.event_id, attempts.c.occurred_at)
        .where(attempts.c.tenant_id == tenant_id, attempts.c.next_action == "fall_back")
        .where(attempts.c.occurred_at >= window.start - _FAILURE_BEFORE, attempts.c.occurred_at < window.end)
        .where(attempts.c.session_id.is_not(None), attempts.c.model.in_(from_models))
        .where(*kept_agents_and_steps(attempts, filters), *_older_than(older_than))
        .order_by(attempts.c.occurred_at.desc(), attempts.c.event_id.desc())
        .limit(size)
        .subquery()
    )
    # The events' stream ids compare in the "C" collation of their keys (the read model's in the
    # database's): named, the comparison is one their unique (tenant, stream, event id) key answers.
    stream = page.c.stream_id.collate("C") if dialect == "postgresql" else page.c.stream_id
    # The executor records the fallback right after the failure, nothing between them: the failed attempt's
    # event (by its id) and the next position of its stream are two rows, where the whole stream is ten.
    failure = events.alias("failure")
    fallback = and_(
        events.c.tenant_id == tenant_id,
        events.c.stream_id == failure.c.stream_id,
        events.c.stream_position == failure.c.stream_position + 1,
        events.c.event_type == "FallbackTriggered",
        events.c.session_id.is_not(None),
        events.c.occurred_at >= window.start,
        events.c.occurred_at < window.end,
        *kept_fallback_ends(_FROM, _TO, filters),
    )
    return (
        select(
            page.c.occurred_at.label("failed_at"),
            page.c.event_id.label("failure_id"),
            _FROM.label("from_model"),
            _TO.label("to_model"),
            _REASON.label("reason"),
            events.c.session_id,
            events.c.occurred_at.label("fell_back_at"),
        )
        .select_from(
            page.outerjoin(
                failure,
                and_(
                    failure.c.tenant_id == tenant_id,
                    failure.c.stream_id == stream,
                    failure.c.event_id == page.c.event_id,
                ),
            ).outerjoin(events, fallback)
        )
        .order_by(page.c.occurred_at.desc(), page.c.event_id.desc())
    )


def _older_than(failure: _Failure | None) -> list[ColumnElement[bool]]:
    """The failed attempts after ``failure`` in the newest-first order (the bound on the time alone is
    one the tenant and time index answers; the event id orders those of the same instant)."""
    if failure is None:
        return []
    at, event_id = failed_attempts.c.occurred_at, failed_attempts.c.event_id
    return [at <= failure.occurred_at, or_(at < failure.occurred_at, event_id < failure.event_id)]
