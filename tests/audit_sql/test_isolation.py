"""Row-level security through the audit views (PostgreSQL): they are ``security_invoker`` views, so the
reader scoped to a tenant sees that tenant's rows only, the auditor every tenant's, and a role the views
are not granted to none."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ProgrammingError

from llm_ledger.store.scoping import AUDITOR_ROLE, READER_ROLE, WRITER_ROLE, scope_transaction
from tests.audit_sql.conftest import AuditedLedger

VIEWS = ("audit_executions", "audit_attempts", "audit_fallbacks", "audit_incomplete", "audit_tool_calls")


@pytest.fixture
def scoped(
    audited_postgresql: AuditedLedger, engine_of: Callable[[str], Engine]
) -> Callable[[str | None, str], Iterator[Connection]]:
    """A transaction of the superuser that migrated the ledger, taking a ledger role and a tenant, as the
    application scopes its transactions."""
    engine = engine_of(audited_postgresql.url)

    def scope(tenant: str | None, role: str) -> Iterator[Connection]:
        with engine.begin() as connection:
            scope_transaction(connection, tenant, role)
            yield connection

    return scope


def tenants_per_view(connection: Connection) -> dict[str, list[str]]:
    return {
        view: list(connection.execute(text(f"SELECT tenant_id FROM {view} ORDER BY tenant_id")).scalars())
        for view in VIEWS
    }


def all_tenants(ledger: AuditedLedger) -> set[str]:
    return {event.tenant_id for event in ledger.events}


def test_the_auditor_sees_every_tenant_through_the_views(
    scoped: Callable[[str | None, str], Iterator[Connection]], audited_postgresql: AuditedLedger
) -> None:
    for connection in scoped(None, AUDITOR_ROLE):
        seen = tenants_per_view(connection)

    assert set(seen["audit_executions"]) == set(seen["audit_attempts"]) == all_tenants(audited_postgresql)
    assert len(set(seen["audit_incomplete"])) == len(audited_postgresql.extras.incomplete) > 1
    assert len(set(seen["audit_tool_calls"])) > 1


def test_a_reader_sees_only_its_tenants_rows_through_the_views(
    scoped: Callable[[str | None, str], Iterator[Connection]], audited_postgresql: AuditedLedger
) -> None:
    for connection in scoped(None, AUDITOR_ROLE):
        everything = tenants_per_view(connection)

    for tenant in sorted(all_tenants(audited_postgresql)):
        for connection in scoped(tenant, READER_ROLE):
            seen = tenants_per_view(connection)
        for view in VIEWS:
            assert seen[view] == [t for t in everything[view] if t == tenant], (tenant, view)
        assert seen["audit_executions"], tenant


def test_a_reader_with_no_tenant_sees_nothing_through_the_views(
    scoped: Callable[[str | None, str], Iterator[Connection]],
) -> None:
    for connection in scoped(None, READER_ROLE):
        assert tenants_per_view(connection) == {view: [] for view in VIEWS}


@pytest.mark.parametrize("view", VIEWS)
def test_the_writer_role_may_not_read_the_views(
    scoped: Callable[[str | None, str], Iterator[Connection]], audited_postgresql: AuditedLedger, view: str
) -> None:
    tenant = sorted(all_tenants(audited_postgresql))[0]
    with pytest.raises(ProgrammingError, match="permission denied"):
        for connection in scoped(tenant, WRITER_ROLE):
            connection.execute(text(f"SELECT * FROM {view}"))
