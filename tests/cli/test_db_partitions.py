"""``llm-ledger db partitions``: the events table's monthly partitions on PostgreSQL, one table on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from llm_ledger.events import compute_hash
from llm_ledger.exit_codes import ExitCode
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.partitions import DEFAULT_PARTITION, partition_name
from llm_ledger.store.scoping import READER_ROLE, WRITER_ROLE
from tests.cli.conftest import Outcome
from tests.store.workload import make_events


def _month_after(months: int) -> tuple[int, int]:
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + months
    return index // 12, index % 12 + 1


def test_on_sqlite_it_says_there_is_one_table(sqlite_url: str, llm_ledger: Callable[..., Outcome]) -> None:
    migrate.upgrade(sqlite_url)
    outcome = llm_ledger("db", "partitions", "--database-url", sqlite_url)
    assert outcome.status == ExitCode.OK, outcome.err
    assert "one events table" in outcome.out


def test_it_lists_creates_ahead_and_reports_the_default_partitions_events(
    empty_postgres_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    migrate.upgrade(empty_postgres_url)
    listed = llm_ledger("db", "partitions", "--database-url", empty_postgres_url)
    assert listed.status == ExitCode.OK, listed.err
    assert partition_name(*_month_after(3)) in listed.out and partition_name(*_month_after(4)) not in listed.out
    assert DEFAULT_PARTITION in listed.out and "the default partition is empty" in listed.out

    created = llm_ledger("db", "partitions", "--create-ahead", "5", "--database-url", empty_postgres_url)
    assert created.status == ExitCode.OK, created.err
    assert f"created {partition_name(*_month_after(4))}, {partition_name(*_month_after(5))}" in created.out

    # An event whose stream id is not a UUIDv7 of a created month (here: of no month at all) is kept in the
    # default partition, and said so.
    events = make_events(1, tenant=f"tenant-{uuid.uuid4().hex[:8]}")
    odd = [{**e.to_record(), "stream_id": "ffffffff-0000-4000-8000-000000000000"} for e in events]
    previous = None
    for record in odd:  # the chain re-linked over the rewritten records
        record["prev_hash"] = previous
        record["hash"] = compute_hash(record)
        previous = record["hash"]
    store = EventStore(empty_postgres_url)
    try:
        assert store.append(odd).stored == len(odd)
    finally:
        store.close()
    reported = llm_ledger("db", "partitions", "--database-url", empty_postgres_url)
    assert reported.status == ExitCode.OK
    assert f"WARNING: the default partition holds {len(odd)} events" in reported.err
    engine = create_store_engine(empty_postgres_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert connection.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar() == len(odd)
    finally:
        engine.dispose()


def test_months_ahead_out_of_bounds_is_a_usage_error(sqlite_url: str, llm_ledger: Callable[..., Outcome]) -> None:
    for value in ("-1", "37", "x"):
        outcome = llm_ledger("db", "partitions", "--create-ahead", value, "--database-url", sqlite_url)
        assert outcome.status == ExitCode.USAGE and "--create-ahead" in outcome.err


def test_a_login_that_may_not_create_partitions_is_told_so_without_a_traceback(
    ledger_login: Callable[..., str], empty_postgres_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    migrate.upgrade(empty_postgres_url)
    reader = ledger_login(READER_ROLE, database=empty_postgres_url)
    refused = llm_ledger("db", "partitions", "--create-ahead", "5", "--database-url", reader)
    assert refused.status == ExitCode.USAGE, refused.err
    assert "Traceback" not in refused.err
    assert "may not create partitions" in refused.err and WRITER_ROLE in refused.err
    # Listing needs no more than connecting: the reader still may.
    listed = llm_ledger("db", "partitions", "--database-url", reader)
    assert listed.status == ExitCode.OK, listed.err
    assert partition_name(*_month_after(5)) not in listed.out
