"""The migrations and what the database itself guarantees: append-only events, roles, tenant isolation."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from llm_ledger.events import ExecutionFailedPayload, StreamHeader, seal_event, uuid7
from llm_ledger.store import StoreConfigurationError, create_store_engine, migrate
from llm_ledger.store.schema import EVENTS_TABLE, events
from llm_ledger.store.scoping import (
    AUDITOR_ROLE,
    INGEST_ROLE,
    LEDGER_ROLES,
    READER_ROLE,
    WRITER_ROLE,
    scope_transaction,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHANGES = {
    "UPDATE": "UPDATE llm_ledger_events SET hash = hash WHERE tenant_id = :tenant",
    "DELETE": "DELETE FROM llm_ledger_events WHERE tenant_id = :tenant",
    "TRUNCATE": "TRUNCATE llm_ledger_events",
}
INSUFFICIENT_PRIVILEGE = "42501"


def _row(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    """A sealed event as a row. The schema would accept less, but the session's PostgreSQL database is
    shared with the store's tests, which read every row back as an event."""
    event = seal_event(
        StreamHeader(stream_id=uuid7(), tenant_id=tenant_id),
        position=0,
        prev_hash=None,
        payload=ExecutionFailedPayload(error_type="TimeoutError", message="schema test", attempts=1, latency_ms=1),
        event_type="ExecutionFailed",
        occurred_at=datetime.now(UTC),
    )
    return event.to_record() | {"occurred_at": event.occurred_at} | overrides


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def _tenants_visible(connection: Connection, *tenants: str) -> set[str]:
    query = select(events.c.tenant_id).where(events.c.tenant_id.in_(tenants))
    return set(connection.execute(query).scalars())


def _sqlstate(error: pytest.ExceptionInfo[DBAPIError]) -> str | None:
    return getattr(error.value.orig, "sqlstate", None)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """A database no migration has touched, of each dialect."""
    fixture = "empty_postgres_url" if request.param == "postgresql" else "sqlite_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def two_tenants(pg: Engine) -> tuple[str, str]:
    """Tenants A and B with one event each, each inserted by the writer role scoped to its own tenant."""
    tenants = (_tenant(), _tenant())
    for tenant in tenants:
        with pg.begin() as connection:
            scope_transaction(connection, tenant, WRITER_ROLE)
            connection.execute(events.insert().values(_row(tenant)))
    return tenants


# --- migrations ---------------------------------------------------------------------------------


def test_upgrade_brings_an_empty_database_to_head(empty_database_url: str) -> None:
    assert migrate.current(empty_database_url) is None

    migrate.upgrade(empty_database_url)

    assert migrate.current(empty_database_url) == migrate.head()
    engine = create_store_engine(empty_database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {EVENTS_TABLE, migrate.VERSION_TABLE} <= tables


def test_postgresql_columns_are_jsonb_an_always_identity_and_xid8(pg: Engine) -> None:
    with pg.connect() as connection:
        columns = {
            name: (data_type, identity)
            for name, data_type, identity in connection.execute(
                text(
                    "SELECT column_name, data_type, identity_generation FROM information_schema.columns"
                    " WHERE table_name = :table"
                ),
                {"table": EVENTS_TABLE},
            )
        }
    assert columns["payload"] == ("jsonb", None)
    assert columns["global_position"] == ("bigint", "ALWAYS")
    assert columns["tx_id"][0] == "xid8"
    assert columns["recorded_at"][0] == "timestamp with time zone"


def test_alembic_command_upgrades_from_the_repository_root(empty_postgres_url: str) -> None:
    environment = os.environ | {"LLM_LEDGER_DATABASE_URL": empty_postgres_url}
    completed = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert migrate.current(empty_postgres_url) == migrate.head()


def test_downgrade_of_an_empty_database_leaves_no_table(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)

    migrate.downgrade(empty_database_url, "base")

    assert migrate.current(empty_database_url) is None
    engine = create_store_engine(empty_database_url)
    try:
        assert EVENTS_TABLE not in inspect(engine).get_table_names()
        if engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                leftovers = connection.execute(
                    text("SELECT proname FROM pg_proc WHERE proname LIKE 'llm_ledger%'")
                ).scalars()
                assert list(leftovers) == []
    finally:
        engine.dispose()


_GRANTED_0006 = ("llm_ledger_alembic_version", "llm_ledger_projection_checkpoints", "llm_ledger_audit_runs")


def _privileges(url: str) -> set[tuple[str, str, str]]:
    """``(role, table, column)`` for each column of 0006's tables each ledger role may select."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT r.rolname, c.table_name, c.column_name FROM information_schema.columns c,"
                    " pg_roles r WHERE c.table_name = ANY(:tables) AND r.rolname = ANY(:roles)"
                    " AND has_column_privilege(r.oid, c.table_name::regclass, c.column_name, 'SELECT')"
                ),
                {"tables": list(_GRANTED_0006), "roles": sorted({*LEDGER_ROLES, INGEST_ROLE})},
            )
            return {tuple(row) for row in rows}
    finally:
        engine.dispose()


def test_0006_downgrade_gives_back_what_0005_granted_and_upgrade_takes_it_again(empty_postgres_url: str) -> None:
    migrate.upgrade(empty_postgres_url, "0005")
    before = _privileges(empty_postgres_url)
    migrate.upgrade(empty_postgres_url)
    after = _privileges(empty_postgres_url)
    assert ("llm_ledger_projector", "llm_ledger_alembic_version", "version_num") in after - before
    taken = before - after
    assert {(role, table) for role, table, _ in taken} == {
        ("llm_ledger_reader", "llm_ledger_projection_checkpoints"),
        ("llm_ledger_reader", "llm_ledger_audit_runs"),
    }
    assert ("llm_ledger_reader", "llm_ledger_audit_runs", "run_id") not in taken
    assert ("llm_ledger_reader", "llm_ledger_projection_checkpoints", "updated_at") not in taken

    migrate.downgrade(empty_postgres_url, "0005")
    assert _privileges(empty_postgres_url) == before
    migrate.upgrade(empty_postgres_url)
    assert _privileges(empty_postgres_url) == after


def test_downgrade_refuses_while_events_exist_and_keeps_them(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    engine = create_store_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(events.insert().values(_row(_tenant())))

        with pytest.raises(migrate.DowngradeRefusedError, match="destructive to events"):
            migrate.downgrade(empty_database_url, "base")

        assert migrate.current(empty_database_url) == migrate.head()
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(events)).scalar() == 1
            if engine.dialect.name == "postgresql":
                # The refused downgrade had lifted FORCE to look at every row; its rollback restored it.
                forced = connection.execute(
                    text("SELECT relforcerowsecurity FROM pg_class WHERE relname = :table"), {"table": EVENTS_TABLE}
                ).scalar()
                assert forced is True
    finally:
        engine.dispose()


# --- append-only --------------------------------------------------------------------------------


@pytest.mark.parametrize("replication_role", ["origin", "replica"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_postgresql_rejects_changes_to_events_even_as_superuser(pg: Engine, change: str, replication_role: str) -> None:
    tenant = _tenant()
    with pg.begin() as connection:
        connection.execute(events.insert().values(_row(tenant)))

    with pg.connect() as connection, pytest.raises(DBAPIError, match=f"append-only: {change} rejected"):
        # Replica mode is how dumps are restored and how logical replication applies changes: ordinary
        # triggers do not fire in it.
        connection.execute(text(f"SET LOCAL session_replication_role = {replication_role}"))
        connection.execute(text(CHANGES[change]), {"tenant": tenant})

    with pg.connect() as connection:
        assert _tenants_visible(connection, tenant) == {tenant}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_writer_cannot_change_events_even_with_the_triggers_disabled(pg: Engine, change: str) -> None:
    tenant = _tenant()
    with pg.begin() as connection:
        connection.execute(events.insert().values(_row(tenant)))

    with pg.connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(text(f"ALTER TABLE {EVENTS_TABLE} DISABLE TRIGGER ALL"))
            scope_transaction(connection, tenant, WRITER_ROLE)
            with pytest.raises(DBAPIError) as error:
                connection.execute(text(CHANGES[change]), {"tenant": tenant})
            assert _sqlstate(error) == INSUFFICIENT_PRIVILEGE
        finally:
            transaction.rollback()


@pytest.mark.parametrize("change", ["UPDATE", "DELETE"])
def test_sqlite_rejects_changes_to_events(sqlite_url: str, change: str) -> None:
    migrate.upgrade(sqlite_url)
    engine = create_store_engine(sqlite_url)
    tenant = _tenant()
    try:
        with engine.begin() as connection:
            connection.execute(events.insert().values(_row(tenant)))

        with engine.begin() as connection, pytest.raises(DBAPIError, match=f"append-only: {change} rejected"):
            connection.execute(text(CHANGES[change]), {"tenant": tenant})

        with engine.connect() as connection:
            assert _tenants_visible(connection, tenant) == {tenant}
    finally:
        engine.dispose()


def test_postgresql_gives_positions_and_refuses_an_insert_that_names_one(pg: Engine) -> None:
    with pg.connect() as connection, pytest.raises(DBAPIError, match="GENERATED ALWAYS"):
        connection.execute(events.insert().values(_row(_tenant(), global_position=10**12)))


# --- roles and row-level security ---------------------------------------------------------------


def test_writer_inserts_events_of_its_tenant_with_a_transaction_id(pg: Engine, two_tenants: tuple[str, str]) -> None:
    tenant, _ = two_tenants
    with pg.connect() as connection:
        tx_id = connection.execute(
            text("SELECT tx_id::text FROM llm_ledger_events WHERE tenant_id = :tenant"), {"tenant": tenant}
        ).scalar_one()
    assert int(tx_id) > 0


def test_writer_scoped_to_a_tenant_reads_none_of_another_tenants_events(
    pg: Engine, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    with pg.begin() as connection:
        scope_transaction(connection, a, WRITER_ROLE)
        assert _tenants_visible(connection, a, b) == {a}


def test_writer_scoped_to_a_tenant_cannot_insert_for_another(pg: Engine, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with pg.begin() as connection, pytest.raises(DBAPIError, match="row-level security") as error:
        scope_transaction(connection, a, WRITER_ROLE)
        connection.execute(events.insert().values(_row(b)))
    assert _sqlstate(error) == INSUFFICIENT_PRIVILEGE


def test_writer_without_a_tenant_sees_nothing(pg: Engine, two_tenants: tuple[str, str]) -> None:
    with pg.begin() as connection:
        scope_transaction(connection, None, WRITER_ROLE)
        assert connection.execute(select(func.count()).select_from(events)).scalar() == 0


def test_reader_sees_its_tenant_only_and_cannot_insert(pg: Engine, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with pg.begin() as connection:
        scope_transaction(connection, a, READER_ROLE)
        assert _tenants_visible(connection, a, b) == {a}
    with pg.begin() as connection, pytest.raises(DBAPIError) as error:
        scope_transaction(connection, a, READER_ROLE)
        connection.execute(events.insert().values(_row(a)))
    assert _sqlstate(error) == INSUFFICIENT_PRIVILEGE


def test_auditor_sees_every_tenant_and_cannot_insert(pg: Engine, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with pg.begin() as connection:
        scope_transaction(connection, None, AUDITOR_ROLE)
        assert _tenants_visible(connection, a, b) == {a, b}
    with pg.begin() as connection, pytest.raises(DBAPIError) as error:
        scope_transaction(connection, None, AUDITOR_ROLE)
        connection.execute(events.insert().values(_row(a)))
    assert _sqlstate(error) == INSUFFICIENT_PRIVILEGE


def test_superuser_without_a_role_is_not_subject_to_row_level_security(
    pg: Engine, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    with pg.begin() as connection:
        scope_transaction(connection, a, None)
        assert _tenants_visible(connection, a, b) == {a, b}


def test_scope_ends_with_its_transaction_on_a_pooled_connection(
    postgres_migrated_url: str, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    engine = create_store_engine(postgres_migrated_url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as connection:
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            scope_transaction(connection, a, WRITER_ROLE)
            assert _tenants_visible(connection, a, b) == {a}

        with engine.begin() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar() == backend
            assert connection.execute(text("SELECT current_user")).scalar() == engine.url.username
            assert connection.execute(text("SELECT current_setting('llm_ledger.tenant_id', true)")).scalar() in (
                None,
                "",
            )
            # The role alone, without scope_transaction: the tenant must not survive from before.
            connection.execute(text(f"SET LOCAL ROLE {WRITER_ROLE}"))
            assert _tenants_visible(connection, a, b) == set()
    finally:
        engine.dispose()


def test_scope_transaction_accepts_only_ledger_roles(pg: Engine) -> None:
    with pg.begin() as connection, pytest.raises(StoreConfigurationError, match="not a ledger role"):
        scope_transaction(connection, "tenant", "postgres")


def test_scope_transaction_refuses_an_autocommit_connection(pg: Engine) -> None:
    with (
        pg.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        pytest.raises(StoreConfigurationError, match="AUTOCOMMIT"),
    ):
        scope_transaction(connection, "tenant", WRITER_ROLE)


def test_scope_transaction_is_a_no_op_on_sqlite(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            scope_transaction(connection, "tenant", WRITER_ROLE)
    finally:
        engine.dispose()
