"""A partitioned, sealed PostgreSQL ledger with one old month to retire: the workload of ``tests.projections``
with part of its executions moved, whole, into a month two years back (their stream ids' UUIDv7 time, their
events' times, their hash chains recomputed), stored interleaved with the recent ones so that every seal
covers events of both months (the seals straddle the cut)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from llm_ledger.events import Event, compute_hash, parse_event
from llm_ledger.store import EventStore

OLD_MONTH = (datetime.now(UTC).year - 2, 3)
"""March two years back: more than 400 days before any day of the current year."""


def old_month_start() -> datetime:
    return datetime(*OLD_MONTH, 1, tzinfo=UTC)


def create_month_partition(engine: Engine, year: int, month: int) -> str:
    """A past month's partition as migration 0008 makes them (the ensure function makes only months ahead),
    as the owner."""
    name = f"llm_ledger_events_{year:04d}_{month:02d}"
    start = datetime(year, month, 1)
    with engine.begin() as connection:
        low, high = connection.execute(
            text(
                "SELECT llm_ledger_month_floor(CAST(:start AS timestamp)),"
                " llm_ledger_month_floor(CAST(:start AS timestamp) + interval '1 month')"
            ),
            {"start": start},
        ).one()
        connection.execute(
            text(f"CREATE TABLE {name} PARTITION OF llm_ledger_events FOR VALUES FROM ('{low}') TO ('{high}')")
        )
        connection.execute(
            text(
                f"CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON {name}"
                " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_events_reject_change()"
            )
        )
        connection.execute(text(f"ALTER TABLE {name} ENABLE ALWAYS TRIGGER llm_ledger_events_reject_truncate"))
    return name


def _moved_id(stream_id: str, moment: datetime) -> str:
    digits = format(int(moment.timestamp() * 1000), "012x")
    rest = stream_id.replace("-", "")[12:]
    return str(uuid.UUID(digits + rest))


def move_to_month(recorded: Sequence[Event], every: int, start: datetime) -> tuple[list[Event], set[str]]:
    """Every ``every``-th execution (by first appearance) moved into the month of ``start``, whole; returns
    the events in their original order and the moved streams' new ids."""
    order: list[str] = []
    for event in recorded:
        if str(event.stream_id) not in order:
            order.append(str(event.stream_id))
    chosen = {stream for index, stream in enumerate(order) if index % every == 0}
    records: list[dict[str, Any]] = []
    last_hash: dict[str, str] = {}
    new_ids: set[str] = set()
    for event in recorded:
        record = event.to_record()
        stream = str(event.stream_id)
        if stream in chosen:
            offset = timedelta(hours=order.index(stream) % (24 * 20))
            first = next(e for e in recorded if str(e.stream_id) == stream)
            shift = (start + offset) - first.occurred_at
            record["stream_id"] = _moved_id(stream, start + offset)
            moment = event.occurred_at + shift
            record["occurred_at"] = moment.astimezone(UTC).isoformat()
            record["prev_hash"] = last_hash.get(stream)
            record = parse_event(record).to_record()  # its stored form, which is what is hashed
            record["hash"] = compute_hash(record)
            last_hash[stream] = record["hash"]
            new_ids.add(record["stream_id"])
        records.append(record)
    return [parse_event(record) for record in records], new_ids


def store(url: str, events: Sequence[Event]) -> None:
    event_store = EventStore(url)
    try:
        event_store.append(list(events))
    finally:
        event_store.close()


def backdate_recorded(engine: Engine, partition: str) -> None:
    """Give the partition's events the storage time of their occurrence, as the owner, as if they had been
    stored in their month (the workload stores them now): its append-only triggers are set aside for the
    update and restored as they were."""
    with engine.begin() as connection:
        states = connection.execute(
            text(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = CAST(:name AS regclass) AND NOT tgisinternal"
            ),
            {"name": partition},
        ).all()
        connection.execute(text(f"ALTER TABLE {partition} DISABLE TRIGGER USER"))
        connection.execute(text(f"UPDATE {partition} SET recorded_at = occurred_at"))
        modes = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}
        for name, state in states:
            connection.execute(text(f'ALTER TABLE {partition} {modes[state]} TRIGGER "{name}"'))
