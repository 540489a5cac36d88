"""What differs between PostgreSQL and SQLite, one place per concern: the batch insert, the gap-safe
read of all events, and the scoping of a transaction to a tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Select, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from llm_ledger.store.schema import events


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

    def insert(self) -> Insert: ...

    def read_all(self, after: Cursor, limit: int) -> Select[Any]: ...

    def cursor_of(self, row: Any) -> Cursor: ...

    def scope(self, connection: Connection, tenant_id: str | None, role: str | None) -> None: ...


_COLUMNS = [c for c in events.c if c.name != "recorded_at"]


class PostgresBackend:
    name = "postgresql"

    def insert(self) -> Insert:
        # Idempotent by event id; any other unique conflict (a taken stream position) still raises.
        return postgresql.insert(events).on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])

    def read_all(self, after: Cursor, limit: int) -> Select[Any]:
        # Only transactions older than every one still running can no longer add rows before the
        # cursor: reading past the snapshot's xmin would skip a slow writer's rows for good.
        return (
            select(*_COLUMNS, text("tx_id::text AS tx_id_text"))
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
        from llm_ledger.store.scoping import scope_transaction

        scope_transaction(connection, tenant_id, role)


class SqliteBackend:
    name = "sqlite"

    def insert(self) -> Insert:
        return sqlite.insert(events).on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])

    def read_all(self, after: Cursor, limit: int) -> Select[Any]:
        return (
            select(*_COLUMNS)
            .where(events.c.global_position > after.position)
            .order_by(events.c.global_position)
            .limit(limit)
        )

    def cursor_of(self, row: Any) -> Cursor:
        return Cursor(0, int(row.global_position))

    def scope(self, connection: Connection, tenant_id: str | None, role: str | None) -> None:
        # One local file, one user: isolation between tenants is the PostgreSQL deployment's job.
        return None


def backend_for(dialect_name: str) -> Backend:
    if dialect_name == "postgresql":
        return PostgresBackend()
    if dialect_name == "sqlite":
        return SqliteBackend()
    raise ValueError(f"no event store backend for {dialect_name!r}")
