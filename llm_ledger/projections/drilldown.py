"""The sessions the dashboard's links drill down to: where an aggregated fallback chain can be seen (the
latest session of the window in which an execution fell back from one model to another for a reason).

``llm_ledger_fallback_stats`` counts chains without naming a session, so the examples are read from the
raw ``FallbackTriggered`` events, which name both models and the reason: one query for every chain, over
the window's latest fallbacks (found by the failed attempts they follow, in ``llm_ledger_failed_attempts``),
the latest of each chain kept."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, func, or_, select

from llm_ledger.projections.queries import EVERYTHING, FallbackEdge, Filters, Window
from llm_ledger.projections.rollup import provider_is_one_of
from llm_ledger.projections.schema import failed_attempts
from llm_ledger.store.schema import events

FALLBACKS_SCANNED = 10_000
"""The window's latest fallbacks (of the chosen agents and steps) an example is looked for among: a chain
whose last fallback is older than these (or that only executions without a session took) has no example."""
FIRST_SCANNED = 64
SCAN_GROWTH = 4
"""The latest ``FIRST_SCANNED`` fallbacks are looked at first, then ``SCAN_GROWTH`` times as many until
every chain has its example (or ``FALLBACKS_SCANNED`` were)."""


def fallback_sessions(
    connection: Connection,
    tenant_id: str,
    window: Window,
    edges: Iterable[FallbackEdge],
    filters: Filters = EVERYTHING,
    scanned: int = FALLBACKS_SCANNED,
) -> dict[FallbackEdge, str]:
    """The latest session of the window showing each edge, among the window's latest ``scanned``
    fallbacks of the agents and steps ``filters`` choose, kept by its models and providers (as
    ``LedgerView.fallback_edges`` keeps the chains); an edge with none (taken only by executions without a
    session, or only before those) is left out."""
    wanted = {(edge.from_model, edge.to_model, edge.reason): edge for edge in edges}
    found: dict[FallbackEdge, str] = {}
    # Newest first, a few fallbacks and then more: most chains' latest fallback is among the window's last
    # few dozen, and each fallback looked at costs a lookup of its stream.
    limit = min(FIRST_SCANNED, scanned)
    while wanted:
        rows = list(connection.execute(_latest_per_chain(tenant_id, window, filters, limit, connection.dialect.name)))
        found = {}
        for from_model, to_model, reason, session, _ in rows:
            edge = wanted.get((from_model, to_model, reason))
            if edge is not None:
                found[edge] = session
        exhausted = limit >= scanned or (bool(rows) and rows[0].looked_at < limit)
        if len(found) == len(wanted) or exhausted:
            break
        limit = min(limit * SCAN_GROWTH, scanned)
    return found


_FROM = events.c.payload["from_model"].as_string()
_TO = events.c.payload["to_model"].as_string()
_REASON = events.c.payload["reason"].as_string()
_FAILURE_BEFORE = timedelta(minutes=1)
"""How long before its ``FallbackTriggered`` the failed attempt it follows may be (it is recorded at once
after the failure, in the same step of the executor): the failures looked at start this much before the window."""


def _latest_per_chain(tenant_id: str, window: Window, filters: Filters, scanned: int, dialect: str) -> Select[Any]:
    """The window's latest ``scanned`` fallbacks of sessions (newest first), then the newest of each chain.

    Every fallback follows an attempt failed with the next action ``fall_back``, which the read model
    ``llm_ledger_failed_attempts`` keeps (its tenant and time index read backwards, stopping there); its
    ``FallbackTriggered``, the event after the failed attempt's in its stream (the events' keys), names the
    model it went on to. Scanning the raw events by time instead reads every event of the window to find the
    few fallbacks among them (a tenant's month: half a million events for some thousand fallbacks)."""
    attempts = failed_attempts
    latest = (
        select(attempts.c.stream_id, attempts.c.event_id, attempts.c.occurred_at)
        .where(attempts.c.tenant_id == tenant_id, attempts.c.next_action == "fall_back")
        .where(attempts.c.occurred_at >= window.start - _FAILURE_BEFORE, attempts.c.occurred_at < window.end)
        .where(attempts.c.session_id.is_not(None), *_kept_agents_and_steps(attempts, filters))
        .order_by(attempts.c.occurred_at.desc())
        .limit(scanned)
        .subquery()
    )
    # How many were looked at: fewer than ``scanned``, there are no more.
    latest = select(latest, func.count().over().label("looked_at")).subquery()
    # The events' stream ids compare in the "C" collation of their keys (the read model's in the
    # database's): named, the comparison is one the primary key answers.
    stream = latest.c.stream_id.collate("C") if dialect == "postgresql" else latest.c.stream_id
    # The executor records the fallback right after the failure, nothing between them: the failed attempt's
    # event (by its id) and the next position of its stream are two rows, where the whole stream is ten.
    failure = events.alias("failure")
    fallbacks = (
        select(
            _FROM.label("from_model"),
            _TO.label("to_model"),
            _REASON.label("reason"),
            events.c.session_id,
            events.c.occurred_at,
            latest.c.looked_at,
        )
        .select_from(
            latest.join(
                failure,
                and_(
                    failure.c.tenant_id == tenant_id,
                    failure.c.stream_id == stream,
                    failure.c.event_id == latest.c.event_id,
                ),
            ).join(
                events,
                and_(
                    events.c.tenant_id == tenant_id,
                    events.c.stream_id == failure.c.stream_id,
                    events.c.stream_position == failure.c.stream_position + 1,
                ),
            )
        )
        .where(events.c.event_type == "FallbackTriggered", events.c.session_id.is_not(None))
        .where(events.c.occurred_at >= window.start, events.c.occurred_at < window.end)
        .where(*_kept(tenant_id, filters))
        .subquery()
    )
    chain = (fallbacks.c.from_model, fallbacks.c.to_model, fallbacks.c.reason)
    newest = func.row_number().over(
        partition_by=chain, order_by=(fallbacks.c.occurred_at.desc(), fallbacks.c.session_id.desc())
    )
    ranked = select(*chain, fallbacks.c.session_id, fallbacks.c.looked_at, newest.label("rank")).subquery()
    return select(
        ranked.c.from_model, ranked.c.to_model, ranked.c.reason, ranked.c.session_id, ranked.c.looked_at
    ).where(ranked.c.rank == 1)


def _kept_agents_and_steps(table: Any, filters: Filters) -> list[ColumnElement[bool]]:
    return [table.c[dimension].in_(values) for dimension, values in filters.without_models().chosen().items()]


def _kept(tenant_id: str, filters: Filters) -> list[ColumnElement[bool]]:
    """The fallbacks the filters keep, as the Fallbacks page's chains: of the chosen agents and steps, from
    or to a chosen model, or a model of a chosen provider (as the read models attribute it: ``provider_is_one_of``)."""
    conditions = _kept_agents_and_steps(events, filters)
    if filters.models:
        conditions.append(or_(_FROM.in_(filters.models), _TO.in_(filters.models)))
    if filters.providers:
        conditions.append(or_(provider_is_one_of(_FROM, filters.providers), provider_is_one_of(_TO, filters.providers)))
    return conditions
