"""The direct-COPY path (PostgreSQL): the ingest role of migration 0003, which may only add events, and
the store's use of it, with the staging path as the fallback for duplicates, conflicts and logins without
the role."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from llm_ledger.store import create_store_engine, migrate
from llm_ledger.store.dialects import PostgresBackend
from llm_ledger.store.errors import ConcurrencyError
from llm_ledger.store.schema import EVENTS_TABLE
from llm_ledger.store.scoping import INGEST_ROLE, WRITER_ROLE
from llm_ledger.store.store import EventStore
from tests.store.workload import make_events, moved_onto

INSUFFICIENT_PRIVILEGE = "42501"


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The PostgreSQL insert paths taken, in order: ``direct`` (a COPY into the events table, whether or
    not it went through) and ``staged``."""
    taken: list[str] = []
    copy_direct, insert_staged = PostgresBackend._copy_direct, PostgresBackend._insert_staged

    def spy_direct(self: PostgresBackend, *args: Any) -> int:
        taken.append("direct")
        return copy_direct(self, *args)

    def spy_staged(self: PostgresBackend, *args: Any) -> int:
        taken.append("staged")
        return insert_staged(self, *args)

    monkeypatch.setattr(PostgresBackend, "_copy_direct", spy_direct)
    monkeypatch.setattr(PostgresBackend, "_insert_staged", spy_staged)
    return taken


@pytest.fixture
def login(postgres_migrated_url: str, pg: Engine) -> Iterator[Callable[..., str]]:
    """Makes login roles granted the given roles (and nothing else); the URL of the migrated database as
    each. Dropped at the end of the test."""
    made: list[str] = []

    def make(*granted: str) -> str:
        name = f"llm_ledger_test_login_{uuid.uuid4().hex[:8]}"
        with pg.begin() as connection:
            connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
            for role in granted:
                connection.execute(text(f'GRANT {role} TO "{name}"'))
        made.append(name)
        return make_url(postgres_migrated_url).set(username=name).render_as_string(hide_password=False)

    yield make
    with pg.begin() as connection:
        for name in made:
            connection.execute(text(f'DROP ROLE "{name}"'))


# --- the role -----------------------------------------------------------------------------------


def test_the_ingest_role_bypasses_row_level_security_and_may_only_insert(pg: Engine) -> None:
    with pg.connect() as connection:
        role = connection.execute(
            text("SELECT rolbypassrls, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = :role"),
            {"role": INGEST_ROLE},
        ).one()
        assert tuple(role) == (True, False, False)
        privileges = {
            privilege: connection.execute(
                text("SELECT has_table_privilege(:role, :table, :privilege)"),
                {"role": INGEST_ROLE, "table": EVENTS_TABLE, "privilege": privilege},
            ).scalar()
            for privilege in ("INSERT", "SELECT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
        }
    assert privileges == {"INSERT": True} | dict.fromkeys(privileges.keys() - {"INSERT"}, False)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM llm_ledger_events",
        "SELECT event_id FROM llm_ledger_events WHERE tenant_id = :tenant",
        "UPDATE llm_ledger_events SET hash = hash WHERE tenant_id = :tenant",
        "UPDATE llm_ledger_events SET hash = 'x'",
        "DELETE FROM llm_ledger_events WHERE tenant_id = :tenant",
        "DELETE FROM llm_ledger_events",
        "TRUNCATE llm_ledger_events",
        "COPY llm_ledger_events TO STDOUT",
        "INSERT INTO llm_ledger_events (tenant_id) VALUES ('x') RETURNING *",
    ],
)
def test_the_ingest_role_cannot_read_or_change_events_even_with_the_triggers_disabled(
    pg: Engine, statement: str
) -> None:
    tenant = _tenant()
    EventStore(pg, role=WRITER_ROLE).append(make_events(1, tenant=tenant))
    with pg.connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(text(f"ALTER TABLE {EVENTS_TABLE} DISABLE TRIGGER ALL"))
            connection.execute(text(f"SET LOCAL ROLE {INGEST_ROLE}"))
            with pytest.raises(DBAPIError) as error:
                connection.execute(text(statement), {"tenant": tenant} if ":tenant" in statement else {})
            assert getattr(error.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE
        finally:
            transaction.rollback()


# --- the store's paths --------------------------------------------------------------------------


def test_the_writer_copies_a_batch_of_several_tenants_straight_into_the_table(
    postgres_migrated_url: str, paths: list[str]
) -> None:
    a, b = _tenant(), _tenant()
    batch = [*make_events(3, tenant=a), *make_events(3, tenant=b)]
    writer = EventStore(postgres_migrated_url, role=WRITER_ROLE)
    try:
        result = writer.append(batch)
        assert (result.stored, result.duplicates) == (len(batch), 0)
        assert paths == ["direct"]
        for tenant in (a, b):
            stored = writer.scoped(tenant_id=tenant, role=WRITER_ROLE).read_tenant(tenant)
            assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in batch if e.tenant_id == tenant)
            assert writer.verify(stored[0].stream_id).ok
    finally:
        writer.close()


def test_a_replayed_batch_falls_back_and_stores_only_what_is_new(postgres_migrated_url: str, paths: list[str]) -> None:
    tenant = _tenant()
    old, new = make_events(2, tenant=tenant), make_events(2, tenant=tenant)
    writer = EventStore(postgres_migrated_url, role=WRITER_ROLE)
    try:
        writer.append(old)
        paths.clear()
        again = writer.append(old)
        assert (again.stored, again.duplicates) == (0, len(old))
        assert paths == ["direct", "staged"]
        mixed = writer.append([*new, *old, new[0]])  # also a duplicate within the batch
        assert (mixed.stored, mixed.duplicates) == (len(new), len(old) + 1)
        stored = writer.scoped(tenant_id=tenant, role=WRITER_ROLE).read_tenant(tenant)
        assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in [*old, *new])
    finally:
        writer.close()


def test_a_taken_position_still_raises_and_stores_nothing_of_the_batch(
    postgres_migrated_url: str, paths: list[str]
) -> None:
    tenant = _tenant()
    first, second = make_events(1, tenant=tenant), make_events(1, tenant=tenant)
    writer = EventStore(postgres_migrated_url, role=WRITER_ROLE)
    try:
        writer.append(first)
        forged = moved_onto(first, second)
        innocent = make_events(1, tenant=tenant)
        paths.clear()
        with pytest.raises(ConcurrencyError, match="already taken"):
            writer.append([*innocent, *forged])
        assert paths == ["direct", "staged"]
        reader = writer.scoped(tenant_id=tenant, role=WRITER_ROLE)
        assert reader.read_stream(innocent[0].stream_id) == []
        assert reader.read_stream(first[0].stream_id) == first
    finally:
        writer.close()


def test_a_store_scoped_to_a_tenant_still_cannot_insert_for_another(
    postgres_migrated_url: str, paths: list[str]
) -> None:
    a, b = _tenant(), _tenant()
    scoped = EventStore(postgres_migrated_url, tenant_id=a, role=WRITER_ROLE)
    try:
        assert scoped.append(make_events(1, tenant=a)).duplicates == 0
        assert paths == ["direct"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            scoped.append([*make_events(1, tenant=a), *make_events(1, tenant=b)])
        assert paths == ["direct", "staged"]
    finally:
        scoped.close()


def test_a_login_with_only_the_ingest_role_can_append_and_read_nothing(
    login: Callable[..., str], paths: list[str]
) -> None:
    store = EventStore(create_store_engine(login(INGEST_ROLE), poolclass=NullPool))
    try:
        batch = make_events(2, tenant=_tenant())
        assert store.append(batch).stored == len(batch)
        assert paths == ["direct"]
        with pytest.raises(DBAPIError) as error:
            store.count()
        assert getattr(error.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE
    finally:
        store.engine.dispose()


def test_a_login_without_the_ingest_role_uses_the_staging_path(login: Callable[..., str], paths: list[str]) -> None:
    tenant = _tenant()
    writer = EventStore(login(WRITER_ROLE), role=WRITER_ROLE)
    try:
        batch = make_events(3, tenant=tenant)
        assert writer.append(batch).stored == len(batch)
        assert writer.append(batch).duplicates == len(batch)
        assert paths == ["staged", "staged"]
        assert len(writer.scoped(tenant_id=tenant, role=WRITER_ROLE).read_tenant(tenant)) == len(batch)
    finally:
        writer.close()


def test_without_revision_0003_the_writer_uses_the_staging_path(empty_postgres_url: str, paths: list[str]) -> None:
    migrate.upgrade(empty_postgres_url)
    migrate.downgrade(empty_postgres_url, "0002")
    tenant = _tenant()
    writer = EventStore(empty_postgres_url, role=WRITER_ROLE)
    try:
        assert writer.append(make_events(2, tenant=tenant)).duplicates == 0
        assert paths == ["staged"]
    finally:
        writer.close()
    with create_store_engine(empty_postgres_url).connect() as connection:
        assert not connection.execute(
            text("SELECT has_table_privilege(:role, :table, 'INSERT')"), {"role": INGEST_ROLE, "table": EVENTS_TABLE}
        ).scalar()
