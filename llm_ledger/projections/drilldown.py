"""The sessions the dashboard's links drill down to: where an aggregated fallback chain can be seen (the
latest session of the window in which an execution fell back from one model to another for a reason).

``llm_ledger_fallback_stats`` counts chains without naming a session; ``llm_ledger_fallbacks`` keeps every
fallback of a session with that session, indexed by tenant, edge and time, so each chain's example is the
first entry of one backward index scan from the window's end."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, select, union_all

from llm_ledger.projections.queries import (
    EVERYTHING,
    FallbackEdge,
    Filters,
    Window,
    kept_agents_and_steps,
    kept_fallback_ends,
)
from llm_ledger.projections.schema import fallbacks

EDGES_PER_STATEMENT = 200
"""How many edges' lookups one statement holds, at most: SQLite refuses a compound SELECT of more than 500
terms, and a month of a busy tenant can show more chains than that."""


def fallback_sessions(
    connection: Connection,
    tenant_id: str,
    window: Window,
    edges: Iterable[FallbackEdge],
    filters: Filters = EVERYTHING,
) -> dict[FallbackEdge, str]:
    """The latest session of the window showing each edge, of the fallbacks ``filters`` keep (their agents
    and steps, and their models and providers as ``LedgerView.fallback_edges`` keeps the chains); an edge
    taken only by executions without a session is left out. One indexed lookup an edge, ``UNION ALL``-ed
    into a statement per ``EDGES_PER_STATEMENT`` edges."""
    wanted = {(edge.from_model, edge.to_model, edge.reason): edge for edge in edges}
    keys = list(wanted)
    examples: dict[FallbackEdge, str] = {}
    for start in range(0, len(keys), EDGES_PER_STATEMENT):
        lookups = [
            _latest(tenant_id, window, filters, *key).subquery() for key in keys[start : start + EDGES_PER_STATEMENT]
        ]
        for row in connection.execute(union_all(*(select(*lookup.c) for lookup in lookups))):
            examples[wanted[(row.from_model, row.to_model, row.reason)]] = row.session_id
    return examples


def _latest(
    tenant_id: str, window: Window, filters: Filters, from_model: str, to_model: str, reason: str
) -> Select[Any]:
    """The edge's latest fallback in the window that the filters keep: at most one row."""
    table = fallbacks
    return (
        select(table.c.from_model, table.c.to_model, table.c.reason, table.c.session_id)
        .where(table.c.tenant_id == tenant_id)
        .where(table.c.from_model == from_model, table.c.to_model == to_model, table.c.reason == reason)
        .where(table.c.occurred_at >= window.start, table.c.occurred_at < window.end)
        .where(*kept_agents_and_steps(table, filters))
        .where(*kept_fallback_ends(table.c.from_model, table.c.to_model, filters))
        .order_by(table.c.occurred_at.desc(), table.c.event_id.desc())
        .limit(1)
    )
