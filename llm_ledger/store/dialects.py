"""What differs between PostgreSQL and SQLite, one place per concern: the batch insert, the gap-safe
read of all events, and the scoping of a transaction to a tenant."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import psycopg
from sqlalchemy import Connection, Select, select, text
from sqlalchemy.dialects import sqlite

from llm_ledger.events.chain import PayloadJson
from llm_ledger.store.errors import StoreError
from llm_ledger.store.schema import READ_COLUMNS, STORED_COLUMNS, events
from llm_ledger.store.scoping import INGEST_ROLE, LEDGER_ROLES, TENANT_SETTING, scope_transaction


class DirectCopyConflict(StoreError):
    """Raised, and caught, inside the store when the direct COPY of a batch meets a unique key already taken
    (a replayed event, or a taken stream position): its transaction must be rolled back and the batch
    inserted again through the staging path, which skips duplicates and tells a taken position apart."""


@dataclass(frozen=True, order=True, slots=True)
class Cursor:
    """Where a consumer of ``read_all`` is: past ``(tx_id, position)``. SQLite has one writer at a
    time, so its order is the position alone and ``tx_id`` stays 0."""

    tx_id: int = 0
    position: int = 0

    def __str__(self) -> str:
        return f"{self.tx_id}:{self.position}"

    @classmethod
    def parse(cls, text_form: str) -> Cursor:
        tx_id, _, position = text_form.partition(":")
        return cls(int(tx_id), int(position))


START = Cursor()


class Backend(Protocol):
    name: str

    def insert_rows(
        self,
        connection: Connection,
        rows: list[dict[str, Any]],
        role: str | None,
        per_tenant: bool,
        direct: bool = False,
    ) -> int:
        """Insert checked rows, skipping event ids already stored; returns how many were new. With
        ``per_tenant``, each tenant's rows go in under that tenant's row-level security scope, as ``role``
        (``None``: as the login's own role, which row-level security applies to unless it bypasses it).
        With ``direct``, the rows may instead be copied straight into the table as the ingest role, when
        the connection can take it; then a unique conflict raises DirectCopyConflict (roll back, retry
        without ``direct``)."""
        ...

    def read_all(self, after: Cursor, limit: int, columns: Sequence[Any] | None = None) -> Select[Any]:
        """Up to ``limit`` events after ``after`` in an order that never skips one (``columns``: what
        to select, by default every stored column)."""
        ...

    def cursor_of(self, row: Any) -> Cursor: ...

    def copy_streaming(self, connection: Connection, rows: Iterable[dict[str, Any]]) -> int | None:
        """Copy rows straight into the table as the ingest role while ``rows`` produces them (the direct
        path of ``insert_rows``, streamed); None, with nothing taken from ``rows``, when this connection
        cannot. A unique conflict raises DirectCopyConflict."""
        ...

    def scope(self, connection: Connection, tenant_id: str | None, role: str | None) -> None: ...


_SCOPE_SQL = "SELECT set_config(%s, %s, true), set_config('role', %s, true)"
_SCOPE_TENANT_SQL = "SELECT set_config(%s, %s, true)"


def scope_role(role: str | None) -> str:
    if role not in LEDGER_ROLES:
        raise ValueError(f"not a ledger role: {role!r}")
    return role


def _scope_tenant(cursor: psycopg.Cursor[Any], tenant: str, role: str | None) -> None:
    """Scope the rest of the transaction to ``tenant`` and, with ``role``, take it (``None`` keeps the
    login's own: a login granted ``llm_ledger_writer``, which row-level security applies to as it is)."""
    if role is None:
        cursor.execute(_SCOPE_TENANT_SQL, (TENANT_SETTING, tenant))
    else:
        cursor.execute(_SCOPE_SQL, (TENANT_SETTING, tenant, scope_role(role)))


# The payload last, so that a row's other values come out of one itemgetter call.
_COPY_COLUMNS = (*(c for c in STORED_COLUMNS if c != "payload"), "payload")
_envelope_values = operator.itemgetter(*_COPY_COLUMNS[:-1])


def _payload_text(payload: Any) -> str:
    """The payload's JSON text: as the sealing wrote it when the row carries it (a ``PayloadJson``), else
    serialized here."""
    return payload.json_text if type(payload) is PayloadJson else orjson.dumps(payload).decode()


def _copy_rows(cursor: psycopg.Cursor[Any], table: str, rows: Iterable[dict[str, Any]]) -> int:
    """COPY ``rows`` into ``table``; returns how many were written. psycopg sends the data every 32 KiB as it
    is written: the server stores the first rows while ``rows`` (a generator, for the writer) is still
    producing the next."""
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*_envelope_values(row), _payload_text(row["payload"])))
            count += 1
    return count


def _by_tenant(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["tenant_id"], []).append(row)
    return groups


# Whether this connection's login may take the ingest role and the role can COPY into the events table:
# the role exists with BYPASSRLS (COPY FROM is refused to a role row-level security applies to), the login
# can SET ROLE to it, and it has INSERT here (migration 0003 may not have run in this database).
_INGEST_USABLE_SQL = f"""
    SELECT r.rolbypassrls
        AND pg_has_role(session_user, r.oid, 'MEMBER')
        AND has_table_privilege(r.oid, t.oid, 'INSERT')
    FROM pg_roles r, (SELECT to_regclass('{events.name}') AS oid) t
    WHERE r.rolname = '{INGEST_ROLE}' AND t.oid IS NOT NULL
"""
_INGEST_KEY = "llm_ledger_ingest_usable"


def _ingest_usable(connection: Connection, cursor: psycopg.Cursor[Any]) -> bool:
    """Asked once per pooled connection (``connection.info`` lives as long as the DBAPI connection)."""
    usable = connection.info.get(_INGEST_KEY)
    if usable is None:
        cursor.execute(_INGEST_USABLE_SQL)
        found = cursor.fetchone()
        usable = connection.info[_INGEST_KEY] = bool(found and found[0])
    return bool(usable)


# The unique key an event id is idempotent by: (tenant_id, stream_id, event_id) on the partitioned table
# (migration 0008; a replayed event has the same stream), (tenant_id, event_id) on a ledger not yet at 0008,
# which a writer upgraded before its database still writes to.
_PARTITIONED_SQL = f"SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('{events.name}')"
_IDEMPOTENCY_KEY = "llm_ledger_idempotency_key"


def _idempotency_key(connection: Connection, cursor: psycopg.Cursor[Any]) -> str:
    """Asked once per pooled connection, as ``_ingest_usable``."""
    key = connection.info.get(_IDEMPOTENCY_KEY)
    if key is None:
        cursor.execute(_PARTITIONED_SQL)
        found = cursor.fetchone()
        key = "(tenant_id, stream_id, event_id)" if found and found[0] else "(tenant_id, event_id)"
        connection.info[_IDEMPOTENCY_KEY] = key
    return str(key)


class PostgresBackend:
    """A batch goes in by one of two paths.

    Direct (the writer's, when the ingest role is usable): ``SET LOCAL ROLE llm_ledger_ingest`` and one
    ``COPY`` straight into the events table. The role bypasses row-level security and may only INSERT;
    the insert policy it skips checked nothing for a writer that serves every tenant and sets the tenant
    itself (``tenant_id <> ''`` is a CHECK constraint). A unique violation (a replayed event, a taken
    position) aborts it: DirectCopyConflict, and the caller retries on the staging path.

    Staging (a batch the direct COPY refused, and every batch of a login without the ingest role): COPY
    into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per tenant,
    each under that tenant's row-level security scope, in the same transaction: measured 10x faster than
    a multi-row INSERT through SQLAlchemy, whose per-row parameter handling dominated. Scoping each
    tenant is what lets a non-superuser login (``llm_ledger_writer``, whose insert policy admits only the
    transaction's tenant) store a batch of several tenants at all; for a superuser it changes nothing.
    """

    name = "postgresql"

    def insert_rows(
        self,
        connection: Connection,
        rows: list[dict[str, Any]],
        role: str | None,
        per_tenant: bool,
        direct: bool = False,
    ) -> int:
        if direct and (copied := self.copy_streaming(connection, rows)) is not None:
            return copied
        raw = connection.connection.driver_connection
        assert raw is not None
        return self._insert_staged(connection, raw, rows, role, per_tenant)

    def copy_streaming(self, connection: Connection, rows: Iterable[dict[str, Any]]) -> int | None:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            return self._copy_direct(cursor, rows) if _ingest_usable(connection, cursor) else None

    def _copy_direct(self, cursor: psycopg.Cursor[Any], rows: Iterable[dict[str, Any]]) -> int:
        cursor.execute("SELECT set_config('role', %s, true)", (INGEST_ROLE,))
        try:
            return _copy_rows(cursor, events.name, rows)
        except psycopg.errors.UniqueViolation as exc:
            raise DirectCopyConflict(str(exc)) from exc

    def _insert_staged(
        self,
        connection: Connection,
        raw: psycopg.Connection[Any],
        rows: list[dict[str, Any]],
        role: str | None,
        per_tenant: bool,
    ) -> int:
        staging = f"llm_ledger_staging_{role or 'own'}"
        columns = ", ".join(_COPY_COLUMNS)
        # Temporary tables belong to the session (and the role that made them): made once per pooled
        # connection and role, emptied at every commit (ON COMMIT DELETE ROWS; append_rows commits right
        # after this, or rolls back).
        key = ("llm_ledger_staging", role)
        making = not connection.info.get(key)
        with raw.cursor() as cursor:
            if making:
                cursor.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                    f"SELECT {columns} FROM {events.name} WITH NO DATA"
                )
                connection.info[key] = True
            try:
                _copy_rows(cursor, staging, rows)
                insert = (
                    f"INSERT INTO {events.name} ({columns}) SELECT {columns} FROM {staging} {{where}} "
                    f"ON CONFLICT {_idempotency_key(connection, cursor)} DO NOTHING"
                )
                if not per_tenant:
                    cursor.execute(insert.format(where=""))
                    stored = int(cursor.rowcount)
                else:
                    # Each tenant's scope and insert, sent together in pipeline mode: one round trip for
                    # the batch instead of two per tenant (measured: the database stage 10,700 -> 19,000
                    # events/s with 20 tenants a batch).
                    statement = insert.format(where="WHERE tenant_id = %s")
                    counts: list[Any] = []
                    with raw.pipeline():
                        for tenant in _by_tenant(rows):
                            _scope_tenant(cursor, tenant, role)
                            insert_cursor = raw.cursor()
                            insert_cursor.execute(statement, (tenant,))
                            counts.append(insert_cursor)
                    stored = sum(c.rowcount for c in counts)
            except BaseException:
                # Asked again next time: the database may have been migrated to 0008 under this connection.
                connection.info.pop(_IDEMPOTENCY_KEY, None)
                if making:
                    # The table was made in this transaction and goes with its rollback (a taken position,
                    # an outage): the connection's next staged batch makes it again, instead of copying
                    # into a table that is not there, on every batch from then on.
                    connection.info.pop(key, None)
                raise
        return stored

    def read_all(self, after: Cursor, limit: int, columns: Sequence[Any] | None = None) -> Select[Any]:
        # Only transactions older than every one still running can no longer add rows before the
        # cursor: reading past the snapshot's xmin would skip a slow writer's rows for good.
        return (
            select(*(columns or READ_COLUMNS), text("tx_id::text AS tx_id_text"))
            .where(
                text("(tx_id, global_position) > (CAST(:after_tx AS text)::xid8, :after_position)").bindparams(
                    after_tx=str(after.tx_id), after_position=after.position
                )
            )
            .where(text("tx_id < pg_snapshot_xmin(pg_current_snapshot())"))
            .order_by(text("tx_id"), events.c.global_position)
            .limit(limit)
        )

    def cursor_of(self, row: Any) -> Cursor:
        return Cursor(int(row.tx_id_text), int(row.global_position))

    def scope(self, connection: Connection, tenant_id: str | None, role: str | None) -> None:
        scope_transaction(connection, tenant_id, role)


class SqliteBackend:
    name = "sqlite"

    def insert_rows(
        self,
        connection: Connection,
        rows: list[dict[str, Any]],
        role: str | None,
        per_tenant: bool,
        direct: bool = False,
    ) -> int:
        # RETURNING counts exactly what was new: executemany's rowcount does not.
        # Idempotent by event id; any other unique conflict (a taken stream position) still raises.
        insert = sqlite.insert(events).on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
        return len(connection.execute(insert.returning(events.c.global_position), rows).all())

    def read_all(self, after: Cursor, limit: int, columns: Sequence[Any] | None = None) -> Select[Any]:
        return (
            select(*(columns or READ_COLUMNS))
            .where(events.c.global_position > after.position)
            .order_by(events.c.global_position)
            .limit(limit)
        )

    def cursor_of(self, row: Any) -> Cursor:
        return Cursor(0, int(row.global_position))

    def copy_streaming(self, connection: Connection, rows: Iterable[dict[str, Any]]) -> int | None:
        return None  # no COPY: the writer seals the batch, then inserts it

    def scope(self, connection: Connection, tenant_id: str | None, role: str | None) -> None:
        # One local file, one user: isolation between tenants is the PostgreSQL deployment's job.
        return None


def backend_for(dialect_name: str) -> Backend:
    if dialect_name == "postgresql":
        return PostgresBackend()
    if dialect_name == "sqlite":
        return SqliteBackend()
    raise ValueError(f"no event store backend for {dialect_name!r}")
