"""EventStore on PostgreSQL and SQLite: appends, reads, idempotency, conflicts, bad input."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from llm_ledger.events import Event, compute_hash, verify_chain
from llm_ledger.store import StoreConfigurationError, create_store_engine, migrate
from llm_ledger.store.dialects import START
from llm_ledger.store.errors import ConcurrencyError, InvalidEventError, UnreadableEventError
from llm_ledger.store.store import EventStore
from tests.store.workload import make_events, moved_onto


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(database_url: str) -> EventStore:
    return EventStore(database_url)


def test_appended_streams_read_back_identical_and_verify(store: EventStore) -> None:
    tenant = _tenant()
    events = make_events(20, tenant=tenant)
    result = store.append(events)
    assert (result.stored, result.duplicates) == (len(events), 0)

    for stream_id in {e.stream_id for e in events}:
        stored = store.read_stream(stream_id)
        assert stored == [e for e in events if e.stream_id == stream_id]
        assert all(compute_hash(e.to_record()) == e.hash for e in stored)
        assert store.verify(stream_id).ok
    assert verify_chain(store.read_tenant(tenant)).ok


def test_the_same_batch_appended_twice_is_stored_once(store: EventStore) -> None:
    tenant = _tenant()
    events = make_events(5, tenant=tenant)
    store.append(events)
    again = store.append(events)
    assert (again.stored, again.duplicates) == (0, len(events))
    assert len(store.read_tenant(tenant)) == len(events)


def test_a_different_event_at_a_taken_position_fails_and_stores_nothing_of_its_batch(store: EventStore) -> None:
    tenant = _tenant()
    first, second = make_events(1, tenant=tenant), make_events(1, tenant=tenant)
    store.append(first)
    # The second stream's events, moved onto the first stream: same positions, other event ids.
    forged = moved_onto(first, second)
    innocent = make_events(1, tenant=tenant)
    with pytest.raises(ConcurrencyError, match="already taken"):
        store.append([*innocent, *forged])
    assert store.read_stream(innocent[0].stream_id) == []
    assert store.read_stream(first[0].stream_id) == first


def test_reads_by_session_and_time_window(store: EventStore) -> None:
    tenant = _tenant()
    a, b = make_events(3, tenant=tenant, session="s-a"), make_events(2, tenant=tenant, session="s-b")
    store.append(a + b)
    assert store.read_session("s-a", tenant_id=tenant) == a, "in the order they were stored"
    assert store.read_session("s-b", tenant_id=tenant) == b
    now = datetime.now(UTC)
    window = store.read_tenant(tenant, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5))
    assert {e.event_id for e in window} == {e.event_id for e in a + b}
    assert [e.occurred_at for e in window] == sorted(e.occurred_at for e in window)
    assert store.read_tenant(tenant, since=now + timedelta(minutes=1)) == []


def test_read_all_pages_through_everything_in_order(store: EventStore) -> None:
    tenant = _tenant()
    events = make_events(6, tenant=tenant)
    store.append(events)
    seen: list[Event] = []
    cursor = START
    # On PostgreSQL a transaction left open anywhere on the server (another test's, another program's)
    # holds events back until it ends: a consumer polls, as this loop does, and must still see them
    # all, in order.
    deadline = time.monotonic() + 30
    while len([e for e in seen if e.tenant_id == tenant]) < len(events) and time.monotonic() < deadline:
        page, cursor = store.read_all(cursor, limit=7)
        if not page:
            time.sleep(0.05)
        seen.extend(page)
    mine = [e for e in seen if e.tenant_id == tenant]
    assert [e.event_id for e in mine] == [e.event_id for e in events]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["payload"].update(message="\ud800 broken"), "UTF-8"),
        (lambda r: r["payload"].update(message="x" * (2 << 20)), "bytes, more than"),
        (lambda r: r.pop("tenant_id"), "not a valid event"),
        (lambda r: r["payload"].update(message="a\x00b"), "NUL"),
        (lambda r: r.update(stream_position=-1), "not a valid event"),
    ],
    ids=["non-utf8", "oversized", "invalid", "nul", "negative-position"],
)
def test_bad_input_is_a_clear_error_and_keeps_what_was_accepted(store: EventStore, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    tenant = _tenant()
    accepted = make_events(2, tenant=tenant)
    store.append(accepted)
    failed = next(e for e in make_events(3, tenant=tenant) if e.event_type == "AttemptFailed")
    record = failed.to_record()
    mutate(record)
    if message not in ("UTF-8", "not a valid event"):
        record["hash"] = compute_hash(record)  # a well-formed event, just not storable
    with pytest.raises(InvalidEventError, match=message) as raised:
        store.append([record])
    assert raised.value.index == 0
    assert len(store.read_tenant(tenant)) == len(accepted)


def test_an_unknown_dialect_is_named() -> None:
    with pytest.raises(StoreConfigurationError, match="unsupported database 'mysql'"):
        create_store_engine("mysql://root@127.0.0.1/test")


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_stored_row_changed_behind_the_triggers_is_named_when_read(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    # A database of its own: the shared PostgreSQL one must hold only rows that read back as events.
    url: str = request.getfixturevalue("empty_postgres_url" if dialect == "postgresql" else "sqlite_url")
    migrate.upgrade(url)
    store = EventStore(url)
    events = make_events(1, tenant=_tenant())
    store.append(events)
    victim = events[0]
    disable, enable = (
        ("ALTER TABLE llm_ledger_events DISABLE TRIGGER ALL", "ALTER TABLE llm_ledger_events ENABLE TRIGGER ALL")
        if store.engine.dialect.name == "postgresql"
        else ("DROP TRIGGER llm_ledger_events_reject_update", None)
    )
    with store.engine.begin() as connection:  # as a superuser / the file's owner can
        connection.exec_driver_sql(disable)
        connection.exec_driver_sql(
            "UPDATE llm_ledger_events SET payload = '{\"forged\": true}' WHERE event_id = %s"
            if store.engine.dialect.name == "postgresql"
            else "UPDATE llm_ledger_events SET payload = '{\"forged\": true}' WHERE event_id = ?",
            (str(victim.event_id),),
        )
        if enable:
            connection.exec_driver_sql(enable)

    with pytest.raises(UnreadableEventError) as error:
        store.read_stream(victim.stream_id)
    assert f"stored event {victim.event_id} (stream {victim.stream_id}, position 0)" in str(error.value)
    assert "is no longer a valid event" in str(error.value)
    assert store.verify(victim.stream_id).breaks[0].kind == "invalid", "audits read the raw record, and name it"
    store.close()
