"""The tenants a view lists, on both dialects: every tenant with projected figures, each once, sorted,
whatever grains its rows are of, found one probe of the primary key of ``llm_ledger_step_stats`` per
tenant (``LedgerView.tenants``: the plans show no scan of the table)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, text

from llm_ledger.events import Event
from llm_ledger.projections import queries
from llm_ledger.projections.grains import DAY
from llm_ledger.projections.queries import LedgerView
from llm_ledger.projections.schema import step_stats
from llm_ledger.store import EventStore
from tests.dashboard.ledger import FAST, run
from tests.projections.projecting import project_url


def test_an_unbound_view_lists_every_tenant_with_figures_once_in_order(
    workload_url: str, recorded_events: list[Event]
) -> None:
    project_url(workload_url)
    view = LedgerView(workload_url)
    try:
        listed = view.tenants()
    finally:
        view.close()

    recorded = {event.tenant_id for event in recorded_events}
    assert len(recorded) > 2
    assert listed == sorted(recorded)


def test_a_tenant_whose_rows_are_of_only_some_grains_is_listed(
    ledger_url: str, engine_of: Callable[[str], Engine]
) -> None:
    store = EventStore(ledger_url)
    for tenant in ("acme", "days-only", "no-days", "zeta"):
        store.append(run(1, tenant=tenant, session=None, chain=[FAST], step="answer"))
    store.close()
    project_url(ledger_url)
    with engine_of(ledger_url).begin() as connection:
        # As a ledger whose finer rows were pruned, or whose coarsest were never rolled up.
        connection.execute(
            delete(step_stats).where(step_stats.c.tenant_id == "days-only", step_stats.c.grain_seconds < DAY)
        )
        connection.execute(
            delete(step_stats).where(step_stats.c.tenant_id == "no-days", step_stats.c.grain_seconds == DAY)
        )
        grains: dict[str, int] = dict(
            connection.execute(
                select(step_stats.c.tenant_id, func.count(func.distinct(step_stats.c.grain_seconds))).group_by(
                    step_stats.c.tenant_id
                )
            ).all()
        )
    view = LedgerView(ledger_url)
    try:
        listed = view.tenants()
    finally:
        view.close()

    assert grains["days-only"] == 1 and 1 < grains["no-days"] < grains["acme"]
    assert listed == ["acme", "days-only", "no-days", "zeta"]


def test_the_tenants_are_found_by_probes_of_the_primary_key_never_a_scan_of_the_table(
    workload_url: str, recorded_events: list[Event], engine_of: Callable[[str], Engine]
) -> None:
    project_url(workload_url)
    engine = engine_of(workload_url)
    tenants = len({event.tenant_id for event in recorded_events})
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(step_stats)).scalar_one()
        statement = str(queries._TENANTS.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            reads = list(_postgresql_reads(connection, statement))
            assert reads and all(node in ("Index Only Scan", "Index Scan") for node, _, _ in reads)
            assert all(condition for _, condition, _ in reads), "each read of the table is a probe of its key"
            # One row per tenant, and the probe after the last that finds none.
            assert sum(read for _, _, read in reads) <= tenants + 1 < rows
        else:
            plan = [row.detail for row in connection.execute(text(f"EXPLAIN QUERY PLAN {statement}"))]
            searches = [detail for detail in plan if "llm_ledger_step_stats" in detail]
            assert searches and all(detail.startswith("SEARCH") for detail in searches), plan


def _postgresql_reads(connection: Connection, statement: str) -> Iterator[tuple[str, str | None, int]]:
    """Each node of the executed plan reading ``llm_ledger_step_stats``: its kind, its index condition and
    the rows it read (over all its loops)."""
    [[plan]] = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")).all()
    nodes: list[dict[str, Any]] = [(json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        if node.get("Relation Name") == step_stats.name:
            yield node["Node Type"], node.get("Index Cond"), int(node["Actual Rows"]) * int(node["Actual Loops"])
