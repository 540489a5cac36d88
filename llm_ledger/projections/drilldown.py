"""The sessions the dashboard's links drill down to: where an aggregated fallback chain can be seen (the
latest session of the window in which an execution fell back from one model to another for a reason).

``llm_ledger_fallback_stats`` counts chains without naming a session, so the examples are read from the
raw ``FallbackTriggered`` events, which name both models and the reason: one query for every chain, over
the window's latest fallbacks (the ``(tenant_id, occurred_at)`` index, read backwards), the latest of each
chain kept."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, or_, select

from llm_ledger.projections.queries import EVERYTHING, FallbackEdge, Filters, Window
from llm_ledger.projections.rollup import provider_is_one_of
from llm_ledger.store.schema import events

FALLBACKS_SCANNED = 10_000
"""The window's latest fallbacks an example is looked for among: a chain whose last fallback is older
than these (or that only executions without a session took) has no example."""


def fallback_sessions(
    connection: Connection,
    tenant_id: str,
    window: Window,
    edges: Iterable[FallbackEdge],
    filters: Filters = EVERYTHING,
    scanned: int = FALLBACKS_SCANNED,
) -> dict[FallbackEdge, str]:
    """The latest session of the window showing each edge, among the window's latest ``scanned``
    fallbacks kept by ``filters`` (as ``LedgerView.fallback_edges`` keeps the chains); an edge with none
    (taken only by executions without a session, or only before those) is left out."""
    wanted = {(edge.from_model, edge.to_model, edge.reason): edge for edge in edges}
    if not wanted:
        return {}
    found: dict[FallbackEdge, str] = {}
    for from_model, to_model, reason, session in connection.execute(
        _latest_per_chain(tenant_id, window, filters, scanned)
    ):
        edge = wanted.get((from_model, to_model, reason))
        if edge is not None:
            found[edge] = session
    return found


_FROM = events.c.payload["from_model"].as_string()
_TO = events.c.payload["to_model"].as_string()
_REASON = events.c.payload["reason"].as_string()


def _latest_per_chain(tenant_id: str, window: Window, filters: Filters, scanned: int) -> Select[Any]:
    """The window's latest ``scanned`` fallbacks of sessions (newest first: the tenant and time index read
    backwards, stopping there), then the newest of each chain."""
    latest = (
        select(
            _FROM.label("from_model"),
            _TO.label("to_model"),
            _REASON.label("reason"),
            events.c.session_id,
            events.c.occurred_at,
        )
        .where(events.c.tenant_id == tenant_id, events.c.occurred_at >= window.start, events.c.occurred_at < window.end)
        .where(events.c.event_type == "FallbackTriggered", events.c.session_id.is_not(None))
        .where(*_kept(tenant_id, filters))
        .order_by(events.c.occurred_at.desc())
        .limit(scanned)
        .subquery()
    )
    chain = (latest.c.from_model, latest.c.to_model, latest.c.reason)
    newest = func.row_number().over(
        partition_by=chain, order_by=(latest.c.occurred_at.desc(), latest.c.session_id.desc())
    )
    ranked = select(*chain, latest.c.session_id, newest.label("rank")).subquery()
    return select(ranked.c.from_model, ranked.c.to_model, ranked.c.reason, ranked.c.session_id).where(
        ranked.c.rank == 1
    )


def _kept(tenant_id: str, filters: Filters) -> list[ColumnElement[bool]]:
    """The fallbacks the filters keep, as the Fallbacks page's chains: of the chosen agents and steps, from
    or to a chosen model, or a model of a chosen provider (as the read models attribute it: ``provider_is_one_of``)."""
    conditions: list[ColumnElement[bool]] = [
        events.c[dimension].in_(values) for dimension, values in filters.without_models().chosen().items()
    ]
    if filters.models:
        conditions.append(or_(_FROM.in_(filters.models), _TO.in_(filters.models)))
    if filters.providers:
        conditions.append(or_(provider_is_one_of(_FROM, filters.providers), provider_is_one_of(_TO, filters.providers)))
    return conditions
