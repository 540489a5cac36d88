"""A view bound to one tenant never reads another's figures: refused by the view, and hidden by
row-level security even from a raw query in its transaction (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from llm_ledger.dashboard.view import DashboardView
from llm_ledger.events import Event
from llm_ledger.projections.queries import LedgerView, TenantNotAllowedError, Window
from llm_ledger.projections.schema import READ_MODELS
from llm_ledger.store import migrate
from tests.projections.conftest import store_events
from tests.projections.projecting import project_url


@pytest.fixture(scope="module")
def projected_postgres_url(_create_postgres_database: Callable[[], str], recorded_events: list[Event]) -> str:
    """A PostgreSQL database of this module's own holding the workload, projected; the tests only read."""
    url = _create_postgres_database()
    migrate.upgrade(url)
    store_events(url, recorded_events)
    project_url(url)
    return url


@pytest.fixture
def bound_view(projected_postgres_url: str, tenants: tuple[str, ...]) -> Iterator[DashboardView]:
    # The dashboard's view: the read models' LedgerView plus what the audit reads (the session timeline, the
    # last verify run and its findings), all in the same scoping.
    view = DashboardView(projected_postgres_url, bound_tenant=tenants[0])
    yield view
    view.close()


def whole_workload() -> Window:
    now = datetime.now(UTC)
    return Window(now - timedelta(days=5), now + timedelta(minutes=2))


def test_a_bound_view_lists_only_its_tenant(bound_view: LedgerView, tenants: tuple[str, ...]) -> None:
    assert bound_view.tenants() == [tenants[0]]


def test_a_bound_view_answers_for_its_tenant(bound_view: LedgerView, tenants: tuple[str, ...]) -> None:
    window = whole_workload()
    assert bound_view.totals(tenants[0], window).executions > 0
    assert bound_view.sessions(tenants[0])
    assert bound_view.freshness() is not None


@pytest.mark.parametrize(
    "ask",
    [
        lambda view, tenant, window: view.totals(tenant, window),
        lambda view, tenant, window: view.breakdown(tenant, window, ("step", "model")),
        lambda view, tenant, window: view.series(tenant, window),
        lambda view, tenant, window: view.error_series(tenant, window),
        lambda view, tenant, window: view.error_counts(tenant, window),
        lambda view, tenant, window: view.failed_attempts(tenant, window),
        lambda view, tenant, window: view.fallback_edges(tenant, window),
        lambda view, tenant, window: view.sessions(tenant),
        lambda view, tenant, window: view.session_timeline(tenant, "any-session"),
        lambda view, tenant, window: view.last_audit(tenant),
        lambda view, tenant, window: view.audit_findings(tenant, "any-run"),
    ],
    ids=[
        "totals",
        "breakdown",
        "series",
        "error_series",
        "error_counts",
        "failed_attempts",
        "fallback_edges",
        "sessions",
        "session_timeline",
        "last_audit",
        "audit_findings",
    ],
)
def test_a_bound_view_refuses_to_answer_for_another_tenant(
    bound_view: DashboardView, tenants: tuple[str, ...], ask: object
) -> None:
    with pytest.raises(TenantNotAllowedError):
        ask(bound_view, tenants[1], whole_workload())  # type: ignore[operator]


def test_row_level_security_hides_other_tenants_rows_from_a_raw_query_of_a_bound_view(
    bound_view: LedgerView, tenants: tuple[str, ...]
) -> None:
    # The view's own scoped transaction (reader role, its tenant set), asked with no tenant condition.
    with bound_view._reading() as connection:
        for table in READ_MODELS:
            seen = set(connection.execute(text(f"SELECT DISTINCT tenant_id FROM {table.name}")).scalars())
            assert seen == {tenants[0]}, table.name
        events_seen = set(connection.execute(text("SELECT DISTINCT tenant_id FROM llm_ledger_events")).scalars())
        assert events_seen == {tenants[0]}


def test_an_unbound_view_sees_every_tenant(projected_postgres_url: str, tenants: tuple[str, ...]) -> None:
    view = LedgerView(projected_postgres_url)
    try:
        assert view.tenants() == sorted(tenants)
    finally:
        view.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT events_applied FROM llm_ledger_projection_checkpoints",
        "SELECT position FROM llm_ledger_projection_checkpoints",
        "SELECT * FROM llm_ledger_projection_checkpoints",
        "SELECT events FROM llm_ledger_audit_runs",
        "SELECT ok, tenants, streams, broken_streams FROM llm_ledger_audit_runs",
        "SELECT * FROM llm_ledger_audit_runs",
    ],
)
def test_a_bound_view_cannot_read_the_platform_wide_totals(bound_view: LedgerView, query: str) -> None:
    # The checkpoint's count and every verify run over all tenants sum every tenant's events (migration 0006).
    with pytest.raises(ProgrammingError, match="permission denied"), bound_view._reading() as connection:
        connection.execute(text(query))


def test_a_bound_view_says_how_fresh_its_figures_are_without_the_platform_count(bound_view: LedgerView) -> None:
    freshness = bound_view.freshness()
    assert freshness is not None and freshness.updated_at is not None
    assert freshness.events_applied is None
