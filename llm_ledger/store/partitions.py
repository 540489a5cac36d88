"""The events table's monthly partitions on PostgreSQL (migration 0008): their bounds, the listing
``llm-ledger db partitions`` prints, and the call that creates the months ahead.

A partition holds the streams started in one month (UTC): stream ids are UUIDv7 text, whose first 12 hex
digits are the creation time in milliseconds, so under ``COLLATE "C"`` a month of streams is the range from
the UUIDv7 floor of its first millisecond to the next month's. ``month_floor`` is that floor, as the SQL
function ``llm_ledger_month_floor`` computes it for the partitions the database creates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from llm_ledger.store.schema import EVENTS_TABLE

DEFAULT_PARTITION = f"{EVENTS_TABLE}_default"
MONTHS_AHEAD = 3
"""How many months after the current one ``llm_ledger_ensure_partitions`` keeps created by default."""
MAX_MONTHS_AHEAD = 36
"""The most the function accepts (it runs as the owner: a caller cannot make it create without bound)."""


def month_floor(year: int, month: int) -> str:
    """The smallest UUIDv7 text of the first millisecond of ``year``-``month`` (UTC): the lower bound of
    that month's partition, and the upper bound of the month before's."""
    ms = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
    digits = format(ms, "012x")
    return f"{digits[:8]}-{digits[8:]}-0000-0000-000000000000"


def partition_name(year: int, month: int) -> str:
    return f"{EVENTS_TABLE}_{year:04d}_{month:02d}"


_MONTHLY_NAME = re.compile(rf"{EVENTS_TABLE}_(\d{{4}})_(\d{{2}})")


def partition_month(name: str) -> tuple[int, int] | None:
    """``(year, month)`` of a monthly partition's name; None for any other name."""
    matched = _MONTHLY_NAME.fullmatch(name)
    if not matched or not 1 <= int(matched.group(2)) <= 12:
        return None
    return int(matched.group(1)), int(matched.group(2))


def month_bounds(year: int, month: int) -> tuple[str, str]:
    """The stream ids ``[low, high)`` of ``year``-``month``'s partition."""
    return month_floor(year, month), month_floor(year + month // 12, month % 12 + 1)


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition as the catalog describes it. ``low`` and ``high`` are None for the default partition;
    ``rows`` is the planner's estimate (None before the table was first analyzed), ``exact_rows`` an exact
    count where it was taken (the default partition, when this login may read it)."""

    name: str
    low: str | None
    high: str | None
    rows: int | None
    bytes: int
    exact_rows: int | None = None

    @property
    def is_default(self) -> bool:
        return self.low is None


_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)")

_LIST_SQL = f"""
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples, pg_total_relation_size(c.oid)
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass('{EVENTS_TABLE}')
    ORDER BY c.relname
"""


def is_partitioned(connection: Connection) -> bool:
    """Whether the events table here is partitioned (PostgreSQL at revision 0008 or later)."""
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(
        text(f"SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('{EVENTS_TABLE}')")
    ).scalar()
    return bool(found)


def list_partitions(connection: Connection) -> list[Partition]:
    """The partitions in name order (the months in time order, then the default), from the catalog only:
    any login may list them."""
    partitions = []
    for name, bound, reltuples, size in connection.execute(text(_LIST_SQL)):
        matched = _BOUNDS.fullmatch(bound)
        low, high = (matched.group(1), matched.group(2)) if matched else (None, None)
        rows = None if reltuples < 0 else int(reltuples)
        partitions.append(Partition(name, low, high, rows, int(size)))
    return partitions


def count_default_rows(connection: Connection) -> int | None:
    """The exact number of events in the default partition, or None when this login may not read it (the
    application roles have no grant on partitions; the owner and superusers do)."""
    try:
        with connection.begin_nested():
            return int(connection.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar_one())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        return None


def ensure_partitions(connection: Connection, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create the monthly partitions from the current month through ``months_ahead`` that are missing; returns
    the names created. A month whose streams the default partition already holds is skipped, with a
    WARNING from the database (see migration 0008)."""
    if not 0 <= months_ahead <= MAX_MONTHS_AHEAD:
        raise ValueError(f"months ahead must be 0 to {MAX_MONTHS_AHEAD}, got {months_ahead}")
    rows: Any = connection.execute(
        text("SELECT * FROM llm_ledger_ensure_partitions(:months)"), {"months": months_ahead}
    )
    return [str(row[0]) for row in rows]
