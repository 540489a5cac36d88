"""The SQL of retention: what a monthly partition holds, its rows for the archive, the runs that archived
months, and the call that drops one (migration 0010). Partitions exist on PostgreSQL only; the statements
that a verify also runs on SQLite (the recorded runs, a seal's leaves with their cursor) work on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.engine import Row

from llm_ledger.audit.queries import STREAM_BATCH, SealRange
from llm_ledger.audit.schema import retention_files, retention_runs
from llm_ledger.store import as_utc
from llm_ledger.store.schema import EVENTS_TABLE

_IN_MONTH = "e.stream_id >= :low AND e.stream_id < :high"

_TENANT_COUNTS = text(
    f"SELECT e.tenant_id, count(*) AS events FROM {EVENTS_TABLE} e WHERE {_IN_MONTH} GROUP BY e.tenant_id"
    " ORDER BY e.tenant_id"
)
_LAST_RECORDED = text(
    f"SELECT e.tenant_id, max(e.recorded_at) AS latest FROM {EVENTS_TABLE} e WHERE {_IN_MONTH} GROUP BY e.tenant_id"
)
_AFTER = "(e.tx_id, e.global_position) > (CAST(CAST(:after_tx AS text) AS xid8), :after_position)"
_UNSEALED = text(f"SELECT count(*) FROM {EVENTS_TABLE} e WHERE e.tenant_id = :tenant AND {_IN_MONTH} AND {_AFTER}")
_EDGE = (
    "(SELECT ARRAY[CAST(CAST(f.tx_id AS text) AS bigint), f.global_position] FROM "
    f"{EVENTS_TABLE} f WHERE f.tenant_id = :tenant AND f.stream_id >= :low AND f.stream_id < :high"
    " ORDER BY f.tx_id {order}, f.global_position {order} LIMIT 1)"
)
_CURSOR_SPAN = text(f"SELECT {_EDGE.format(order='ASC')} AS first, {_EDGE.format(order='DESC')} AS last")
_ROWS = text(
    "SELECT e.global_position, CAST(CAST(e.tx_id AS text) AS bigint) AS tx_id, e.tenant_id, e.event_id,"
    " e.event_type, e.schema_version, e.stream_id, e.stream_position, e.agent_id, e.session_id, e.turn_id, e.step,"
    " e.occurred_at, e.trace_id, e.span_id, CAST(e.payload AS text) AS payload, e.prev_hash, e.hash, e.recorded_at"
    f" FROM {EVENTS_TABLE} e WHERE e.tenant_id = :tenant AND {_IN_MONTH}"
    " ORDER BY e.stream_id, e.stream_position, e.global_position"
)
_DROP = text("SELECT llm_ledger_drop_archived_partition(:run_id, :partition)")

_LEAVES_AT = {
    "postgresql": (
        "SELECT CAST(CAST(e.tx_id AS text) AS bigint) AS tx, e.global_position AS position, e.hash, e.occurred_at"
        f" FROM {EVENTS_TABLE} e WHERE e.tenant_id = :tenant AND {_AFTER}"
        " AND (e.tx_id, e.global_position) <= (CAST(CAST(:through_tx AS text) AS xid8), :through_position){outside}"
        " ORDER BY e.tx_id, e.global_position"
    ),
    "sqlite": (
        "SELECT 0 AS tx, e.global_position AS position, e.hash, e.occurred_at FROM "
        f"{EVENTS_TABLE} e WHERE e.tenant_id = :tenant AND e.global_position > :after_position"
        " AND e.global_position <= :through_position{outside} ORDER BY e.global_position"
    ),
}
_OUTSIDE_MONTH = " AND NOT (e.stream_id >= :low AND e.stream_id < :high)"


def tenant_counts(connection: Connection, low: str, high: str) -> dict[str, int]:
    """How many events each tenant has in the month of streams ``[low, high)``."""
    return {str(row.tenant_id): int(row.events) for row in connection.execute(_TENANT_COUNTS, _month(low, high))}


def last_recorded(connection: Connection, low: str, high: str) -> dict[str, datetime]:
    """When each tenant's latest event of the month of streams ``[low, high)`` was stored."""
    return {str(row.tenant_id): as_utc(row.latest) for row in connection.execute(_LAST_RECORDED, _month(low, high))}


def unsealed_in_month(connection: Connection, tenant_id: str, low: str, high: str, after: tuple[int, int]) -> int:
    """The tenant's events of the month after the cursor ``after`` (the end of its last seal)."""
    parameters = {**_month(low, high), "tenant": tenant_id, "after_tx": after[0], "after_position": after[1]}
    return int(connection.execute(_UNSEALED, parameters).scalar_one())


def cursor_span(connection: Connection, tenant_id: str, low: str, high: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The cursors of the tenant's first and last event of the month (it has one)."""
    row = connection.execute(_CURSOR_SPAN, {**_month(low, high), "tenant": tenant_id}).one()
    return (int(row.first[0]), int(row.first[1])), (int(row.last[0]), int(row.last[1]))


def month_rows(connection: Connection, tenant_id: str, low: str, high: str) -> Iterator[list[dict[str, Any]]]:
    """The tenant's rows of the month, every column, in stream order, in batches (a server-side cursor)."""
    result = connection.execute(
        _ROWS, {**_month(low, high), "tenant": tenant_id}, execution_options={"stream_results": True}
    )
    for rows in result.mappings().partitions(STREAM_BATCH):
        yield [dict(row) for row in rows]


def leaves_at(connection: Connection, sealed: SealRange, outside: tuple[str, str] | None = None) -> Iterator[Row[Any]]:
    """A seal range's live events as ``(tx, position, hash, occurred_at)``, in cursor order, streamed; with
    ``outside``, only those whose stream id is not in that month's ``[low, high)``."""
    template = _LEAVES_AT[connection.dialect.name]
    statement = text(template.replace("{outside}", _OUTSIDE_MONTH if outside else ""))
    parameters = {**sealed.parameters(), **(_month(*outside) if outside else {})}
    options = {"stream_results": True, "yield_per": STREAM_BATCH}
    yield from connection.execute(statement, parameters, execution_options=options)


def drop_archived_partition(connection: Connection, run_id: str, partition: str) -> int:
    """Drop ``partition`` through migration 0010's function, which checks it against the run's files first."""
    return int(connection.execute(_DROP, {"run_id": run_id, "partition": partition}).scalar_one())


def run_recorded(connection: Connection, run_id: str, partition: str) -> bool:
    """Whether the run's row for the partition was committed."""
    query = select(retention_runs.c.run_id).where(
        retention_runs.c.run_id == run_id, retention_runs.c.partition_name == partition
    )
    return connection.execute(query).first() is not None


def has_retention_tables(connection: Connection) -> bool:
    return bool(inspect(connection).has_table(retention_runs.name))


def archived_runs(connection: Connection) -> list[Row[Any]]:
    """The runs that archived and dropped a partition, oldest first."""
    query = (
        select(retention_runs)
        .where(retention_runs.c.outcome == "archived")
        .order_by(retention_runs.c.started_at, retention_runs.c.partition_name)
    )
    return list(connection.execute(query))


def archived_files(connection: Connection) -> list[Row[Any]]:
    """The files of every archived partition: the runs' refused ones have none."""
    return list(connection.execute(select(retention_files).order_by(retention_files.c.run_id)))


_LIVE_IN_RANGE = text(f"SELECT count(*) FROM {EVENTS_TABLE} e WHERE {_IN_MONTH}")


def live_in_range(connection: Connection, low: str, high: str) -> int:
    """How many stored events (every tenant's this login may read) have a stream id in ``[low, high)``."""
    return int(connection.execute(_LIVE_IN_RANGE, _month(low, high)).scalar_one())


def _month(low: str, high: str) -> dict[str, str]:
    return {"low": low, "high": high}
