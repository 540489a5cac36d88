"""The partitioned events table (migration 0008): monthly partitions by stream id, the default partition,
and ``llm_ledger_ensure_partitions``, on a real PostgreSQL."""

from __future__ import annotations

import itertools
import re
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from llm_ledger.events import ids, uuid7
from llm_ledger.projections import Projector
from llm_ledger.store import create_store_engine
from llm_ledger.store.errors import ConcurrencyError
from llm_ledger.store.partitions import (
    DEFAULT_PARTITION,
    count_default_rows,
    list_partitions,
    month_floor,
    partition_name,
)
from llm_ledger.store.scoping import INGEST_ROLE, READER_ROLE, WRITER_ROLE
from llm_ledger.store.store import EventStore
from tests.store.workload import make_events, moved_onto, wait_until_readable_by_cursor


def _ms(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def _month_after(year: int, month: int, months: int = 1) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


@pytest.fixture
def ids_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Makes ``llm_ledger.events.uuid7`` (ids only: the events' times stay real) give ids of a chosen
    millisecond; the generator's state is restored afterwards, so later ids are of the real time again."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)

    def at(ms: int) -> None:
        monkeypatch.setattr(ids, "_last_ms", 0)
        monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: ms * 1_000_000))

    return at


@pytest.fixture
def owner(own_ledger_url: str) -> Iterator[Engine]:
    engine = create_store_engine(own_ledger_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _partition_of(engine: Engine, stream_id: uuid.UUID) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT DISTINCT tableoid::regclass::text FROM llm_ledger_events WHERE stream_id = :s"),
            {"s": str(stream_id)},
        )
        return {row[0] for row in rows}


def _this_month() -> tuple[int, int]:
    now = datetime.now(UTC)
    return now.year, now.month


def test_the_month_floor_bounds_uuid7_ids_made_at_the_edges_of_months(ids_at: Callable[[int], None]) -> None:
    for year, month in ((2026, 12), (2027, 1), (2027, 2), (2028, 2), (2031, 12)):
        next_year, next_month = _month_after(year, month)
        low, high = month_floor(year, month), month_floor(next_year, next_month)
        ids_at(_ms(next_year, next_month) - 1)  # the last millisecond of the month
        last = str(uuid7())
        ids_at(_ms(next_year, next_month))  # the first of the next
        first_of_next = str(uuid7())
        ids_at(_ms(year, month))
        first = str(uuid7())
        assert low <= first < last < high <= first_of_next, (year, month)
        assert first.startswith(low[:13]) and first_of_next.startswith(high[:13])
    assert month_floor(2026, 12) == "01a22ee6-b000-0000-0000-000000000000"


def test_the_sql_month_floor_is_the_python_one(owner: Engine) -> None:
    with owner.connect() as connection:
        for year, month in ((2020, 1), (2026, 12), (2027, 2), (2099, 12)):
            found = connection.execute(
                text("SELECT llm_ledger_month_floor(make_timestamp(:y, :m, 1, 0, 0, 0))"), {"y": year, "m": month}
            ).scalar()
            assert found == month_floor(year, month)


def test_the_migration_creates_this_month_three_ahead_and_the_default(owner: Engine) -> None:
    year, month = _this_month()
    with owner.connect() as connection:
        listed = list_partitions(connection)
    expected = [partition_name(*_month_after(year, month, i)) for i in range(4)]
    assert [p.name for p in listed] == [*expected, DEFAULT_PARTITION]
    assert listed[0].low == month_floor(year, month)
    assert all(a.high == b.low for a, b in itertools.pairwise(listed[:4]))
    assert listed[-1].is_default


def test_streams_land_in_the_partition_of_their_month_across_a_month_boundary(
    own_ledger_url: str, owner: Engine, ids_at: Callable[[int], None], unique_tenant_id: str
) -> None:
    year, month = _month_after(*_this_month())  # next month and the one after: both created ahead
    after = _month_after(year, month)
    ids_at(_ms(*after) - 1)
    last_of_month = make_events(1, tenant=unique_tenant_id)
    ids_at(_ms(*after))
    first_of_next = make_events(1, tenant=unique_tenant_id)
    store = EventStore(own_ledger_url)
    try:
        assert store.append([*last_of_month, *first_of_next]).stored == len(last_of_month) + len(first_of_next)
        for stream in (last_of_month, first_of_next):
            assert store.read_stream(stream[0].stream_id) == stream
            assert store.verify(stream[0].stream_id).ok
    finally:
        store.close()
    assert _partition_of(owner, last_of_month[0].stream_id) == {partition_name(year, month)}
    assert _partition_of(owner, first_of_next[0].stream_id) == {partition_name(*after)}


def test_a_stream_of_a_month_without_partition_is_kept_in_the_default_partition(
    own_ledger_url: str, owner: Engine, ids_at: Callable[[int], None], unique_tenant_id: str
) -> None:
    far = _month_after(*_this_month(), 6)  # beyond the 3 months created ahead
    ids_at(_ms(*far, day=15))
    stream = make_events(1, tenant=unique_tenant_id)
    store = EventStore(own_ledger_url)
    try:
        assert store.append(stream).stored == len(stream)
        assert store.append(stream).duplicates == len(stream)  # idempotent there too
        assert store.read_stream(stream[0].stream_id) == stream
        assert store.verify(stream[0].stream_id).ok
        wait_until_readable_by_cursor(owner)
        events, _ = store.read_all(limit=100_000)
        assert {e.event_id for e in stream} <= {e.event_id for e in events}
    finally:
        store.close()
    assert _partition_of(owner, stream[0].stream_id) == {DEFAULT_PARTITION}

    # The projector counts it, the audit views show it, like any other.
    projector = Projector(own_ledger_url)
    try:
        projector.catch_up()
        assert projector.status().events_applied >= len(stream)
    finally:
        projector.close()
    with owner.connect() as connection:
        assert connection.execute(
            text("SELECT outcome FROM audit_executions WHERE execution_id = :s"), {"s": str(stream[0].stream_id)}
        ).scalar() in ("succeeded", "failed")
        assert count_default_rows(connection) == len(stream)

    # Creating the months ahead then skips that month (its streams are in the default partition, which
    # PostgreSQL would refuse to split), creates the others, and the stream stays where it is, readable.
    with owner.connect() as connection:
        created = [row[0] for row in connection.execute(text("SELECT * FROM llm_ledger_ensure_partitions(8)"))]
        connection.commit()
    months = [_month_after(*_this_month(), i) for i in range(4, 9)]
    assert created == [partition_name(*m) for m in months if m != far]
    assert _partition_of(owner, stream[0].stream_id) == {DEFAULT_PARTITION}


def _count(engine: Engine, query: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(query)).scalar_one())


def test_a_writer_login_creates_partitions_through_the_function_and_no_more(
    ledger_login: Callable[..., str], own_ledger_url: str, owner: Engine
) -> None:
    for roles in ((WRITER_ROLE,), (WRITER_ROLE, INGEST_ROLE)):
        writer = EventStore(ledger_login(*roles, database=own_ledger_url))
        try:
            writer.ensure_partitions(5)
        finally:
            writer.close()
    year, month = _month_after(*_this_month(), 5)
    assert _count(owner, f"SELECT count(*) FROM pg_class WHERE relname = '{partition_name(year, month)}'") == 1

    writer_engine = create_store_engine(ledger_login(WRITER_ROLE, database=own_ledger_url), poolclass=NullPool)
    reader_engine = create_store_engine(ledger_login(READER_ROLE, database=own_ledger_url), poolclass=NullPool)
    try:
        for months in (-1, 37, None):
            with writer_engine.connect() as connection, pytest.raises(DBAPIError, match="months_ahead must be 0 to 36"):
                connection.execute(text("SELECT * FROM llm_ledger_ensure_partitions(:m)"), {"m": months})
        with reader_engine.connect() as connection, pytest.raises(DBAPIError, match="permission denied"):
            connection.execute(text("SELECT * FROM llm_ledger_ensure_partitions(1)"))
        # A partition is reached through its parent only, where row-level security applies.
        for engine in (writer_engine, reader_engine):
            with engine.connect() as connection, pytest.raises(DBAPIError, match="permission denied"):
                connection.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}"))
    finally:
        writer_engine.dispose()
        reader_engine.dispose()
    # SECURITY DEFINER with its search path pinned: the caller's objects are never the owner's to run.
    with owner.connect() as connection:
        definer, config = connection.execute(
            text("SELECT prosecdef, proconfig FROM pg_proc WHERE proname = 'llm_ledger_ensure_partitions'")
        ).one()
        assert definer and "search_path=pg_catalog, pg_temp" in config
        public = connection.execute(
            text("SELECT has_function_privilege('public', 'llm_ledger_ensure_partitions(integer)', 'EXECUTE')")
        ).scalar()
        assert public is False


def test_every_partition_refuses_change_even_to_a_replicating_superuser(
    own_ledger_url: str, owner: Engine, unique_tenant_id: str
) -> None:
    stream = make_events(1, tenant=unique_tenant_id)
    store = EventStore(own_ledger_url)
    try:
        store.append(stream)
    finally:
        store.close()
    with owner.connect() as connection:
        names = [p.name for p in list_partitions(connection)]
    (holding,) = _partition_of(owner, stream[0].stream_id)
    # TRUNCATE on every partition (a statement trigger, added to each); row changes where there are rows.
    statements = [f"TRUNCATE {name}" for name in names]
    statements += [f"DELETE FROM {holding}", f"UPDATE {holding} SET step = 'x'"]
    for statement in statements:
        with owner.connect() as connection, pytest.raises(DBAPIError, match="append-only"):
            connection.execute(text("SET session_replication_role = replica"))
            connection.execute(text(statement))
    with owner.connect() as connection:
        states = connection.execute(
            text(
                "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relname LIKE 'llm_ledger_events%' AND NOT t.tgisinternal"
            )
        ).all()
    assert {(name, trigger) for name, trigger, _ in states} == {
        (name, trigger)
        for name in ["llm_ledger_events", *names]
        for trigger in ("llm_ledger_events_reject_truncate", "llm_ledger_events_reject_update_delete")
    }
    assert {state for _, _, state in states} == {"A"}


def test_the_keys_are_the_position_conflict_and_idempotency(own_ledger_url: str, unique_tenant_id: str) -> None:
    stream = make_events(1, tenant=unique_tenant_id)
    store = EventStore(own_ledger_url)
    try:
        assert store.append(stream).stored == len(stream)
        assert store.append(stream).duplicates == len(stream)
        # Another event at a taken position of the stream (same tenant, same partition): refused.
        with pytest.raises(ConcurrencyError):
            store.append(moved_onto(stream, make_events(1, tenant=unique_tenant_id)[:1]))
    finally:
        store.close()


def test_a_lookup_by_stream_reads_one_partition(owner: Engine) -> None:
    stream_id = str(uuid7())
    with owner.connect() as connection:
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                text("EXPLAIN SELECT * FROM llm_ledger_events WHERE stream_id = :s"), {"s": stream_id}
            )
        )
        since = "\n".join(
            row[0]
            for row in connection.execute(
                text("EXPLAIN SELECT * FROM llm_ledger_events WHERE stream_id >= :s"),
                {"s": month_floor(*_this_month())},
            )
        )
        names = [p.name for p in list_partitions(connection)]

    def scanned(query_plan: str) -> set[str]:
        return {name for name in names if re.search(rf" on {name}\b", query_plan)}

    assert scanned(plan) == {partition_name(*_this_month())}
    # From this month on: every partition from this month (all of them here) and the default, which may hold
    # any id; a month before would be pruned.
    assert scanned(since) == set(names)


def test_creating_partitions_does_not_wait_for_a_transaction_on_this_month(
    ledger_login: Callable[..., str], own_ledger_url: str, owner: Engine
) -> None:
    """ATTACH locks the table in SHARE UPDATE EXCLUSIVE mode: a transaction reading (or writing) this month's
    partition holds no lock it waits for (CREATE TABLE ... PARTITION OF would wait, then time out)."""
    writer = EventStore(ledger_login(WRITER_ROLE, database=own_ledger_url))
    try:
        with owner.connect() as busy:
            busy.execute(text("SELECT count(*) FROM llm_ledger_events WHERE stream_id = :s"), {"s": str(uuid7())})
            assert writer.ensure_partitions(7)  # in a transaction of its own while `busy` is open
            busy.rollback()
    finally:
        writer.close()
