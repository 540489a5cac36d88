"""Every SQL statement of the audit, and the one place where PostgreSQL and SQLite differ for it.

A seal's range is a span of the read cursor ``(tx_id, global_position)`` of ``store.dialects``: on
PostgreSQL only transactions older than every running one (``tx_id < pg_snapshot_xmin``) can be sealed,
because a slower transaction could still commit an event before the end of the range; SQLite has one
writer, and the position alone orders it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Executable,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    func,
    select,
    text,
    true,
    union,
)
from sqlalchemy.engine import Row

from llm_ledger.audit.schema import seal_streams, seals
from llm_ledger.store import START, Cursor
from llm_ledger.store.schema import READ_COLUMNS, events

STREAM_BATCH = 5_000
"""Rows fetched per round trip when a query streams (server-side cursor on PostgreSQL)."""
_STREAMING = {"stream_results": True, "yield_per": STREAM_BATCH}

# The payload as its stored JSON text, which the verify reads itself (orjson, several times faster than the
# json.loads of the column's type); every other column as READ_COLUMNS reads it.
_STORED_COLUMNS = tuple(
    cast(column, Text).label(column.name) if column.name == "payload" else column for column in READ_COLUMNS
)


@dataclass(frozen=True, slots=True)
class SealRange:
    """One tenant's events with ``after < cursor <= through``."""

    tenant_id: str
    after: Cursor
    through: Cursor

    def parameters(self) -> dict[str, Any]:
        return {
            **_after_parameters(self.tenant_id, self.after),
            "through_tx": self.through.tx_id,
            "through_position": self.through.position,
        }


def _after_parameters(tenant_id: str, after: Cursor) -> dict[str, Any]:
    """The tenant's events after ``after`` (open-ended ranges: what can be sealed next, what is unsealed)."""
    return {"tenant": tenant_id, "after_tx": after.tx_id, "after_position": after.position}


@dataclass(frozen=True, slots=True)
class _Dialect:
    cursor_columns: str
    after: str
    through: str
    horizon: str
    order: str
    order_desc: str
    binary_stream_order: str


_POSTGRESQL = _Dialect(
    cursor_columns="CAST(CAST(e.tx_id AS text) AS bigint) AS tx, e.global_position AS position",
    after="(e.tx_id, e.global_position) > (CAST(CAST(:after_tx AS text) AS xid8), :after_position)",
    through="(e.tx_id, e.global_position) <= (CAST(CAST(:through_tx AS text) AS xid8), :through_position)",
    horizon=" AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())",
    order="e.tx_id, e.global_position",
    order_desc="e.tx_id DESC, e.global_position DESC",
    # The manifest digest hashes rows in byte order of the stream id, whatever the database's collation.
    binary_stream_order='stream_id COLLATE "C"',
)
_SQLITE = _Dialect(
    cursor_columns="0 AS tx, e.global_position AS position",
    after="e.global_position > :after_position",
    through="e.global_position <= :through_position",
    horizon="",
    order="e.global_position",
    order_desc="e.global_position DESC",
    binary_stream_order="stream_id",
)

_EVENTS = events.name
_NEXT_TENANTS = (
    f"WITH RECURSIVE known AS (SELECT MIN(tenant_id) AS tenant_id FROM {_EVENTS}"
    f" UNION ALL SELECT (SELECT MIN(e.tenant_id) FROM {_EVENTS} e WHERE e.tenant_id > known.tenant_id)"
    " FROM known WHERE known.tenant_id IS NOT NULL)"
    " SELECT tenant_id FROM known WHERE tenant_id IS NOT NULL ORDER BY tenant_id"
)
_MANIFEST_COLUMNS = "stream_id, first_position, last_position, event_count, head_hash"


class AuditQueries:
    """The audit's statements for one dialect."""

    def __init__(self, dialect_name: str) -> None:
        if dialect_name not in ("postgresql", "sqlite"):
            raise ValueError(f"no audit queries for {dialect_name!r}")
        self.dialect_name = dialect_name
        d = _POSTGRESQL if dialect_name == "postgresql" else _SQLITE
        in_range = f"e.tenant_id = :tenant AND {d.after} AND {d.through}"
        self._leaves = text(
            f"SELECT e.hash, e.occurred_at FROM {_EVENTS} e WHERE {in_range} ORDER BY {d.order}"
        ).columns(hash=String, occurred_at=DateTime(timezone=True))
        # Typed binds: SQLite keeps times as text, and the bound times must be written as the column's are.
        self._outside_span = (
            text(
                "SELECT e.stream_id, e.stream_position, e.event_id, e.event_type, e.occurred_at"
                f" FROM {_EVENTS} e WHERE {in_range} AND (e.occurred_at < :first OR e.occurred_at > :last)"
                f" ORDER BY {d.order}"
            )
            .bindparams(
                bindparam("first", type_=events.c.occurred_at.type), bindparam("last", type_=events.c.occurred_at.type)
            )
            .columns(
                stream_id=String,
                stream_position=Integer,
                event_id=String,
                event_type=String,
                occurred_at=DateTime(timezone=True),
            )
        )
        # ``after`` on the table itself, not the alias ``e``, for the Core query of ``stream_events``.
        self._events_after = d.after.replace("e.", f"{_EVENTS}.")
        self._through = text(
            f"SELECT {d.cursor_columns} FROM {_EVENTS} e WHERE e.tenant_id = :tenant AND {d.after}{d.horizon}"
            f" ORDER BY {d.order_desc} LIMIT 1"
        )
        # Per stream of the range: its first and last position, how many events, the hash of the last one.
        # A window rather than an aggregate, because "the hash at the highest position" is not portable.
        self._actual_manifest = (
            f"SELECT stream_id, first_position, stream_position AS last_position, event_count, hash AS head_hash"
            f" FROM (SELECT e.stream_id, e.stream_position, e.hash,"
            f" MIN(e.stream_position) OVER (PARTITION BY e.stream_id) AS first_position,"
            f" COUNT(*) OVER (PARTITION BY e.stream_id) AS event_count,"
            f" ROW_NUMBER() OVER (PARTITION BY e.stream_id ORDER BY e.stream_position DESC, e.global_position DESC)"
            f" AS from_head FROM {_EVENTS} e WHERE {in_range}) AS ranged WHERE from_head = 1"
        )
        self._insert_manifest = text(
            f"INSERT INTO {seal_streams.name} (tenant_id, seal_sequence, {_MANIFEST_COLUMNS})"
            f" SELECT :tenant, :sequence, {_MANIFEST_COLUMNS} FROM ({self._actual_manifest}) AS actual"
        )
        self._manifest = text(
            f"SELECT {_MANIFEST_COLUMNS} FROM {seal_streams.name} WHERE tenant_id = :tenant"
            f" AND seal_sequence = :sequence ORDER BY {d.binary_stream_order}"
        )
        differs = " OR ".join(
            f"m.{column} <> a.{column}" for column in ("first_position", "last_position", "event_count", "head_hash")
        )
        self._manifest_differences = text(
            "SELECT m.stream_id AS sealed_stream, m.first_position AS sealed_first, m.last_position AS sealed_last,"
            " m.event_count AS sealed_count, m.head_hash AS sealed_head, a.stream_id AS actual_stream,"
            " a.first_position AS actual_first, a.last_position AS actual_last, a.event_count AS actual_count,"
            " a.head_hash AS actual_head"
            f" FROM (SELECT {_MANIFEST_COLUMNS} FROM {seal_streams.name}"
            " WHERE tenant_id = :tenant AND seal_sequence = :sequence) AS m"
            f" FULL OUTER JOIN ({self._actual_manifest}) AS a ON a.stream_id = m.stream_id"
            f" WHERE m.stream_id IS NULL OR a.stream_id IS NULL OR {differs}"
            " ORDER BY COALESCE(m.stream_id, a.stream_id)"
        )
        self._stream_in_range = text(
            f"SELECT e.stream_position, e.event_id, e.event_type, e.hash FROM {_EVENTS} e"
            f" WHERE {in_range} AND e.stream_id = :stream_id ORDER BY e.stream_position, e.global_position"
        ).columns(stream_position=Integer, event_id=String, event_type=String, hash=String)
        self._streams_in_range = text(
            f"SELECT e.stream_id, e.stream_position FROM {_EVENTS} e WHERE {in_range} AND e.stream_id IN :stream_ids"
        ).bindparams(bindparam("stream_ids", expanding=True))
        self._count_after = text(f"SELECT COUNT(*) FROM {_EVENTS} e WHERE e.tenant_id = :tenant AND {d.after}")

    # --- tenants and seals ---------------------------------------------------------------------

    def tenants(self, connection: Connection, tenant_id: str | None) -> list[str]:
        query: Executable = select(events.c.tenant_id).distinct().order_by(events.c.tenant_id)
        if tenant_id is not None:
            query = select(events.c.tenant_id).where(events.c.tenant_id == tenant_id).limit(1)
        elif self.dialect_name == "postgresql":
            # One index lookup per tenant, each the next tenant after the one before (a loose index scan):
            # DISTINCT read every event's index entry (0.65 s for 1M events, half a minute for 50M).
            query = text(_NEXT_TENANTS)
        found = [str(row[0]) for row in connection.execute(query)]
        if tenant_id is not None and not found:
            # A tenant whose events are all gone still has seals that say what was there.
            sealed = select(seals.c.tenant_id).where(seals.c.tenant_id == tenant_id).limit(1)
            found = [str(row[0]) for row in connection.execute(sealed)]
        return found

    def sealed_tenants(self, connection: Connection) -> list[str]:
        return [str(row[0]) for row in connection.execute(select(seals.c.tenant_id).distinct())]

    def sealed_events(self, connection: Connection) -> dict[str, int]:
        """Each sealed tenant's events, as its seals counted them."""
        query = select(seals.c.tenant_id, func.sum(seals.c.event_count)).group_by(seals.c.tenant_id)
        return {str(tenant): int(count or 0) for tenant, count in connection.execute(query)}

    def last_seal(self, connection: Connection, tenant_id: str) -> Row[Any] | None:
        query = select(seals).where(seals.c.tenant_id == tenant_id).order_by(seals.c.sequence.desc()).limit(1)
        return connection.execute(query).first()

    def seals_of(self, connection: Connection, tenant_id: str, from_sequence: int = 1) -> list[Row[Any]]:
        """The tenant's seals from ``from_sequence`` on, in sequence."""
        query = (
            select(seals)
            .where(seals.c.tenant_id == tenant_id, seals.c.sequence >= from_sequence)
            .order_by(seals.c.sequence)
        )
        return list(connection.execute(query))

    def insert_seal(self, connection: Connection, values: Mapping[str, Any]) -> None:
        connection.execute(seals.insert().values(**values))

    def lock_tenant_sealing(self, connection: Connection, tenant_id: str) -> None:
        """Two sealers of one tenant at once would compute the same next seal; the second waits here."""
        if self.dialect_name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended('llm_ledger_seal:' || :tenant, 0))"),
                {"tenant": tenant_id},
            )
        else:
            # A write first takes SQLite's write lock now (the second sealer waits out the busy timeout);
            # a transaction that read first and then wrote after another's commit would fail with "database
            # is locked" instead (WAL: its snapshot is stale). It changes no row.
            connection.execute(text(f"UPDATE {seals.name} SET sequence = sequence WHERE 0 = 1"))

    # --- ranges ----------------------------------------------------------------------------------

    def sealable_through(self, connection: Connection, tenant_id: str, after: Cursor) -> Cursor | None:
        """The cursor of the tenant's last event after ``after`` that no running transaction can precede."""
        row = connection.execute(self._through, _after_parameters(tenant_id, after)).first()
        return None if row is None else Cursor(int(row.tx), int(row.position))

    def leaves(self, connection: Connection, sealed: SealRange) -> Iterator[Row[Any]]:
        """The range's events' hashes and times, in cursor order, streamed."""
        yield from _streamed(connection, self._leaves, sealed.parameters())

    def outside_span(
        self, connection: Connection, sealed: SealRange, first: datetime, last: datetime
    ) -> Iterator[Row[Any]]:
        """The range's events that occurred before ``first`` or after ``last``, in cursor order, streamed."""
        yield from _streamed(connection, self._outside_span, {**sealed.parameters(), "first": first, "last": last})

    def insert_manifest(self, connection: Connection, sealed: SealRange, sequence: int) -> None:
        connection.execute(self._insert_manifest, {**sealed.parameters(), "sequence": sequence})

    def manifest(self, connection: Connection, tenant_id: str, sequence: int) -> Iterator[Row[Any]]:
        """A seal's manifest rows in byte order of the stream id, streamed."""
        yield from _streamed(connection, self._manifest, {"tenant": tenant_id, "sequence": sequence})

    def manifest_differences(self, connection: Connection, sealed: SealRange, sequence: int) -> Iterator[Row[Any]]:
        """The streams whose events in the range differ from the seal's manifest (or that only one side has)."""
        yield from _streamed(connection, self._manifest_differences, {**sealed.parameters(), "sequence": sequence})

    def stream_in_range(self, connection: Connection, sealed: SealRange, stream_id: str) -> list[Row[Any]]:
        return list(connection.execute(self._stream_in_range, {**sealed.parameters(), "stream_id": stream_id}))

    def streams_in_range(self, connection: Connection, sealed: SealRange, stream_ids: list[str]) -> list[Row[Any]]:
        """The ``(stream_id, stream_position)`` of each event of these streams in the range."""
        return list(connection.execute(self._streams_in_range, {**sealed.parameters(), "stream_ids": stream_ids}))

    def count_after(self, connection: Connection, tenant_id: str, after: Cursor) -> int:
        return int(connection.execute(self._count_after, _after_parameters(tenant_id, after)).scalar_one())

    # --- streams -----------------------------------------------------------------------------------

    def stream_events(
        self, connection: Connection, tenant_id: str, since: datetime | None, after: Cursor = START
    ) -> Iterator[Row[Any]]:
        """The tenant's events in stream order (``READ_COLUMNS``, the payload as its stored JSON text), streamed:
        with ``since``, every event of each stream that has one after the cursor ``after`` (where the seals
        holding events of ``since`` or later begin) or that occurred at or after ``since``. By the cursor,
        because ``occurred_at`` is a stored field like any other: a stream moved back in time must still be
        checked."""
        query = select(*_STORED_COLUMNS).where(events.c.tenant_id == tenant_id)
        order = (events.c.stream_id, events.c.stream_position, events.c.global_position)
        if since is None:
            yield from connection.execute(query.order_by(*order), execution_options=_STREAMING)
            return
        bound = {k: v for k, v in _after_parameters(tenant_id, after).items() if f":{k}" in self._events_after}
        in_sealed_ranges = text(self._events_after).bindparams(**bound)
        # Two narrow index ranges, (tenant_id, occurred_at) and (tx_id, global_position), rather than one OR,
        # which no index answers: the OR read every event of the tenant (35 s of 36 for a tenant of 12M events).
        recent = union(
            select(events.c.stream_id).where(events.c.tenant_id == tenant_id, events.c.occurred_at >= since),
            select(events.c.stream_id).where(events.c.tenant_id == tenant_id, in_sealed_ranges),
        )
        if self.dialect_name == "postgresql":
            # Each recent stream's events looked up by the primary key, one stream at a time: on the
            # partitioned table that lookup reads one partition, where "stream_id IN (...)" hashed every
            # event of the tenant in every partition.
            streams = recent.subquery("recent_streams")
            streams = select(streams.c.stream_id).distinct().order_by(streams.c.stream_id).subquery("recent")
            stream = (
                select(*_STORED_COLUMNS)
                .where(events.c.tenant_id == tenant_id, events.c.stream_id == streams.c.stream_id)
                .order_by(events.c.stream_position, events.c.global_position)
                .lateral("stream")
            )
            statement = (
                select(*stream.c)
                .select_from(streams.join(stream, true()))
                .order_by(streams.c.stream_id, stream.c.stream_position, stream.c.global_position)
            )
            yield from connection.execute(statement, execution_options=_STREAMING)
            return
        query = query.where(events.c.stream_id.in_(recent))
        yield from connection.execute(query.order_by(*order), execution_options=_STREAMING)


def _streamed(connection: Connection, statement: Executable, parameters: Mapping[str, Any]) -> Iterator[Row[Any]]:
    # Per statement: Connection.execution_options would switch the whole connection to streaming.
    yield from connection.execute(statement, dict(parameters), execution_options=_STREAMING)
