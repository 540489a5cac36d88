"""The buffered writer: nothing accepted is lost or stored twice, through outages and crashes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from llm_ledger.events import EventDraft, StreamHeader, StreamSealer, uuid7, verify_chain
from llm_ledger.events import values as payloads
from llm_ledger.events.values import JsonPayload
from llm_ledger.store import spool as spool_module
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import DraftSink, run_executions, table_locked

ROOT = Path(__file__).resolve().parents[2]
# What a close may take to store everything: it returns as soon as it has; the rest is margin for a busy machine.
CLOSE_SECONDS = 60.0
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"  # port 9 (discard) is closed here: refused at once


@pytest.fixture
def writer_url(ledger_login) -> str:  # type: ignore[no-untyped-def]
    """Focal's writing login (the README's production advice): not a superuser, row-level security applies."""
    url: str = ledger_login("llm_ledger_writer", "llm_ledger_ingest")
    return url


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


def _assert_exactly(store: EventStore, tenant: str, accepted: int) -> None:
    events = store.read_tenant(tenant)
    assert len(events) == accepted, "every accepted event is stored"
    assert len({e.event_id for e in events}) == accepted, "and none twice"
    in_stream_order = sorted(events, key=lambda e: (str(e.stream_id), e.stream_position))
    assert verify_chain(in_stream_order).ok
    terminal = [e for e in events if e.event_type in ("ExecutionSucceeded", "ExecutionFailed")]
    assert len(terminal) == len({e.stream_id for e in events}), "every stream is complete"


async def test_events_reach_the_store_in_batches(database_url: str, tmp_path: Path) -> None:
    tenant = _tenant()
    store = EventStore(database_url)
    writer = BufferedWriter(store, tmp_path / "spool", batch_size=20, flush_interval=0.05)
    await run_executions(writer, 40, tenant=tenant)
    stats = writer.close(timeout=CLOSE_SECONDS)
    assert stats.accepted == stats.written and stats.spooled == 0 and stats.queued == 0
    _assert_exactly(store, tenant, stats.accepted)


class DatabaseOutage:
    """Cuts the database off the way a failover does: its backends are terminated and new
    connections refused (``ALLOW_CONNECTIONS false``), until ``end()``."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.database = parsed.database
        self.admin = create_engine(
            parsed.set(drivername="postgresql+psycopg", database="postgres"),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
        )

    def begin(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{self.database}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                {"db": self.database},
            )

    def end(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{self.database}" WITH ALLOW_CONNECTIONS true'))


async def test_an_outage_under_load_loses_and_doubles_nothing(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = _tenant()
    store = EventStore(writer_url, role="llm_ledger_writer")
    writer = BufferedWriter(store, tmp_path / "spool", batch_size=25, flush_interval=0.05, retry_interval=0.2)
    caplog.set_level(logging.WARNING, logger="llm_ledger.store")
    outage = DatabaseOutage(postgres_migrated_url)
    stop = asyncio.Event()

    async def steady_load() -> None:
        while not stop.is_set():
            await run_executions(writer, 10, tenant=tenant)
            await asyncio.sleep(0.02)

    load = asyncio.create_task(steady_load())
    try:
        await asyncio.sleep(1.0)
        outage.begin()
        await asyncio.sleep(3.0)
        # A loaded machine may take longer to notice the outage: wait for the spool (a safety net, not a bound).
        for _ in range(1_200):  # a minute at most
            if writer.stats.spooled > 0:
                break
            await asyncio.sleep(0.05)
        spooled_during_outage = writer.stats.spooled
    finally:
        outage.end()
    await asyncio.sleep(1.5)
    stop.set()
    await load
    stats = writer.close(timeout=CLOSE_SECONDS)

    assert spooled_during_outage > 0, "the outage sent batches to the spool"
    assert stats.replayed == stats.spooled and stats.queued == 0 and stats.rejected == 0
    _assert_exactly(EventStore(postgres_migrated_url), tenant, stats.accepted)
    outage_logs = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(outage_logs) == 1, "the outage is logged once, not per event"


async def test_close_spools_what_the_database_cannot_take_and_the_next_start_replays_it(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    tenant = _tenant()
    down = BufferedWriter(EventStore(UNREACHABLE), tmp_path / "spool", flush_interval=0.05)
    await run_executions(down, 15, tenant=tenant)
    started = time.monotonic()
    stats = down.close(timeout=3)
    # The database refuses every connection: only the 3 s budget ends the close (bounded far from the noise).
    assert time.monotonic() - started < 30
    assert stats.spooled == stats.accepted > 0
    again = BufferedWriter(EventStore(writer_url), tmp_path / "spool")
    assert again.wait_stored(timeout=30)
    replayed = again.close().replayed
    assert replayed == stats.accepted
    _assert_exactly(EventStore(postgres_migrated_url), tenant, stats.accepted)


def test_a_writer_killed_with_sigkill_leaves_a_spool_the_next_start_replays(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    tenant = _tenant()
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store.spooling_process", UNREACHABLE, str(spool), "30", tenant],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("SPOOLED"), line
        spooled = int(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    # A crash in the middle of the next append leaves a torn record at the end of the segment.
    segment = sorted(spool.rglob("spool-*.log"))[-1]
    with open(segment, "ab") as torn:
        torn.write(b"LLS1\x00\x00\x10\x00partial")

    writer = BufferedWriter(EventStore(writer_url), spool)
    assert writer.wait_stored(timeout=30)
    stats = writer.close()
    assert stats.replayed == spooled
    _assert_exactly(EventStore(postgres_migrated_url), tenant, spooled)
    assert list(spool.rglob("*.torn")), "the torn tail is kept aside for inspection"
    # Replaying the same spool twice stores nothing twice (a crash between commit and removal).
    assert not list(spool.rglob("spool-*.log"))


async def test_batches_are_stored_in_the_order_they_were_emitted(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    # Sealing and storing run in two threads; the batches must still reach the table one after the other.
    tenant = _tenant()
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 60, tenant=tenant)
    store = EventStore(writer_url, role="llm_ledger_writer")
    writer = BufferedWriter(store, tmp_path / "spool", batch_size=7, flush_interval=0.01)
    for draft in drafts:
        writer.emit(draft)
    stats = writer.close(timeout=CLOSE_SECONDS)
    assert stats.written == len(drafts) and stats.spooled == 0
    stored = [str(e.event_id) for e in EventStore(postgres_migrated_url).read_tenant(tenant)]
    assert sorted(stored) == sorted(str(d.event_id) for d in drafts)
    query = text("SELECT event_id FROM llm_ledger_events WHERE tenant_id = :tenant ORDER BY global_position")
    with EventStore(postgres_migrated_url).transaction() as connection:
        by_position = list(connection.execute(query, {"tenant": tenant}).scalars())
    assert by_position == [str(d.event_id) for d in drafts]


async def test_small_journaled_batches_queued_behind_a_slow_database_are_stored_together(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    # Every call waits for the journal, so every batch is the one event journaled meanwhile. Stored a
    # transaction each, a database slower than the journal for a moment held the storing behind it.
    tenant = _tenant()
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 20, tenant=tenant)
    drafts = drafts[:60]
    writer = BufferedWriter(
        EventStore(writer_url, role="llm_ledger_writer"), tmp_path / "spool", batch_size=100, flush_interval=0.01
    )
    with table_locked(postgres_migrated_url):
        for draft in drafts:
            writer.emit(draft)
            waiting = writer.durable(draft)
            if waiting is not None:
                await waiting
    stats = writer.close(timeout=CLOSE_SECONDS)
    assert stats.written == len(drafts) and stats.spooled == 0 and stats.lost == 0
    query = text(
        "SELECT event_id, tx_id::text FROM llm_ledger_events WHERE tenant_id = :tenant ORDER BY global_position"
    )
    with EventStore(postgres_migrated_url).transaction() as connection:
        rows = connection.execute(query, {"tenant": tenant}).all()
    assert [row.event_id for row in rows] == [str(d.event_id) for d in drafts], "each once, in emission order"
    transactions = len({row.tx_id for row in rows})
    assert transactions <= 3, f"{len(drafts)} journal records stored in {transactions} transactions"


async def test_a_batch_whose_direct_copy_conflicts_falls_back_and_keeps_every_event(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    # On PostgreSQL a batch is copied straight into the table: a replayed event at its start (the server
    # stops the COPY early) rolls it back and the whole batch goes through the staging path.
    tenant = _tenant()
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 300, tenant=tenant)
    store = EventStore(writer_url, role="llm_ledger_writer")
    first = BufferedWriter(store, tmp_path / "spool", batch_size=len(drafts), flush_interval=0.01)
    for draft in drafts[:20]:
        first.emit(draft)
    assert first.close(timeout=CLOSE_SECONDS).written == 20
    writer = BufferedWriter(store, tmp_path / "spool", batch_size=len(drafts), flush_interval=0.01)
    for draft in drafts:
        writer.emit(draft)
    stats = writer.close(timeout=CLOSE_SECONDS)
    assert stats.written == len(drafts) and stats.spooled == stats.rejected == 0
    assert stats.state == "writing"
    stored = [str(e.event_id) for e in EventStore(postgres_migrated_url).read_tenant(tenant)]
    assert sorted(stored) == sorted(str(d.event_id) for d in drafts)


async def test_an_unstorable_event_in_a_batch_is_set_aside_and_the_others_stored(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    tenant = _tenant()
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 20, tenant=tenant)
    values = payloads.execution_failed(
        # A NUL in a model string (which the executor refuses at its door; a message's is replaced when sealed).
        error_type="timeout",
        message="m",
        attempts=1,
        latency_ms=1.0,
        last_model="a\x00b",
        chunks_delivered=0,
    )
    sealer = StreamSealer(StreamHeader(stream_id=uuid7(), tenant_id=tenant))
    bad = sealer.draft("ExecutionFailed", JsonPayload(lambda: values), occurred_at=datetime.now(UTC))
    batch = [*drafts[:10], bad, *drafts[10:]]
    store = EventStore(writer_url, role="llm_ledger_writer")
    writer = BufferedWriter(store, tmp_path / "spool", batch_size=len(batch), flush_interval=0.01)
    for draft in batch:
        writer.emit(draft)
    stats = writer.close(timeout=CLOSE_SECONDS)
    assert (stats.written, stats.rejected, stats.spooled) == (len(drafts), 1, 0)
    assert "NUL" in (tmp_path / "spool" / "rejected.jsonl").read_text()
    stored = [str(e.event_id) for e in EventStore(postgres_migrated_url).read_tenant(tenant)]
    assert sorted(stored) == sorted(str(d.event_id) for d in drafts)


class StalledJournal:
    """Holds the writer's journaling thread inside its next append until ``release()`` (a disk whose fsync
    hangs: no real device here can be made to stall on demand)."""

    def __init__(self, writer: BufferedWriter) -> None:
        self.entered, self._release = threading.Event(), threading.Event()
        append = writer.spool.append

        def stalled(body: bytes, count: int) -> int:
            self.entered.set()
            self._release.wait(120)
            return append(body, count)

        writer.spool.append = stalled  # type: ignore[method-assign]

    def release(self) -> None:
        self._release.set()


async def test_queued_counts_the_batch_being_journaled(tmp_path: Path) -> None:
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 3, tenant=_tenant())
    writer = BufferedWriter(EventStore(UNREACHABLE), tmp_path / "spool", flush_interval=0.05)
    stall = StalledJournal(writer)
    for draft in drafts:
        writer.emit(draft)
    assert stall.entered.wait(60)
    # Taken off the queue, not journaled yet: still in memory, and what a producer pacing itself on
    # ``queued`` (bench/ingest.py) must see, or it overruns max_queue.
    assert writer.stats.queued == len(drafts)
    stall.release()
    assert writer.flush(60)
    assert writer.close(timeout=1).queued == 0


async def test_closing_says_how_many_events_were_never_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from llm_ledger.store.default import close_default_writers, make_default_writer

    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 3, tenant=_tenant())
    monkeypatch.setenv("LLM_LEDGER_DATABASE_URL", UNREACHABLE)
    monkeypatch.setenv("LLM_LEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("LLM_LEDGER_WRITER", "thread")  # the journal stalled is this process's own
    writer = make_default_writer()
    assert isinstance(writer, BufferedWriter)
    stall = StalledJournal(writer)
    for draft in drafts:
        writer.emit(draft)
    assert stall.entered.wait(60)
    caplog.set_level(logging.WARNING, logger="llm_ledger.store")
    try:
        close_default_writers(timeout=0.2)  # the journal hangs past the close's budget: those events die here
    finally:
        stall.release()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"{len(drafts)} event(s)" in message and "not journaled" in message for message in errors), errors


async def test_a_spool_directory_removed_under_a_running_writer_does_not_stop_it_storing(
    writer_url: str,
    postgres_migrated_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A temporary-files cleaner removes the journal's directory: segments can no longer be freed (nor made).
    # The writer must say so and go on storing what it holds, not lose its storing thread.
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 4096)  # segments close (and are freed) after a few batches
    tenant, spool = _tenant(), tmp_path / "spool"
    writer = BufferedWriter(EventStore(writer_url, role="llm_ledger_writer"), spool, flush_interval=0.05)
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    await run_executions(writer, 20, tenant=tenant)
    assert writer.wait_stored(60)
    while spool.exists():  # the writer frees (unlinks) segments as the cleaner walks the directory
        shutil.rmtree(spool, ignore_errors=True)
    await run_executions(writer, 20, tenant=tenant)
    assert writer.wait_stored(60), "what was accepted after the directory went is stored"
    stats = writer.close(timeout=10)
    assert stats.lost == 0
    _assert_exactly(EventStore(postgres_migrated_url), tenant, stats.accepted)
    # Said as segments that cannot be freed, or (when the segment open at the removal was already closed)
    # as a journal that cannot be written: which one depends on where the batches fell.
    said = ("cannot free", "cannot be written")
    assert any(word in r.getMessage() for r in caplog.records for word in said), "and it is said"


async def test_events_emitted_after_close_are_counted_lost_not_silently_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An application's shutdown hook closes the writer (aclose) while requests still finish: their events can
    # no longer be journaled or stored, and their calls no longer wait. That must be said and counted.
    writer = BufferedWriter(EventStore(UNREACHABLE), tmp_path / "spool", flush_interval=0.05)
    writer.close(timeout=1)
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    await run_executions(writer, 3, tenant=_tenant())
    stats = writer.stats
    assert stats.lost > 0 and stats.queued == 0, stats
    assert any("closed" in r.getMessage() for r in caplog.records)


def test_close_stops_a_start_up_replay_at_its_deadline_and_the_next_start_finishes_it(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path
) -> None:
    # After an hour's outage the journal is long: closing must not leave the storing thread replaying it after
    # close returned (behind the back of the next writer on the same directory).
    tenant, spool = _tenant(), tmp_path / "spool"
    earlier = BufferedWriter(EventStore(UNREACHABLE), spool, batch_size=20, flush_interval=0.05)
    asyncio.run(run_executions(earlier, 1_500, tenant=tenant))
    backlog = earlier.close(timeout=1).journaled
    writer = BufferedWriter(EventStore(writer_url, role="llm_ledger_writer"), spool)
    deadline = time.monotonic() + 60
    while writer.stats.replayed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    closed = writer.close(timeout=0.1)
    time.sleep(1.0)  # a storing thread still running would replay more meanwhile
    assert closed.replayed < backlog, "the replay was cut short (else this test proves nothing)"
    assert writer.stats.replayed == closed.replayed, "nothing is replayed after close returned"
    again = BufferedWriter(EventStore(writer_url, role="llm_ledger_writer"), spool)
    assert again.wait_stored(120)
    again.close()
    stored = EventStore(postgres_migrated_url).read_tenant(tenant)
    assert len(stored) == len({e.event_id for e in stored}) == backlog
