"""The journal: a call that returned to its caller is on record, whatever happens to its process next."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from llm_ledger.events import EventDraft
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import DraftSink, run_executions, table_locked

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"  # port 9 (discard) is closed here: refused at once
TERMINAL = ("ExecutionSucceeded", "ExecutionFailed")


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


def _calls_returned_before_sigkill(url: str, spool: Path, tenant: str, calls: int, *options: str) -> list[str]:
    """Start the calling process, let it return ``calls`` calls (within 60 s), SIGKILL it, and return the
    execution ids it reported as returned to their callers (every line written before the kill)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store.calling_process", url, str(spool), tenant, *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stdout = child.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    returned: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(returned) < calls and time.monotonic() < deadline:
            try:
                returned.append(lines.get(timeout=1))
            except queue.Empty:
                assert child.poll() is None, f"the calling process exited with {child.returncode}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    reader.join(30)
    while not lines.empty():
        returned.append(lines.get())
    complete = [line.split()[1] for line in returned if line.startswith("RETURNED ") and line.endswith("\n")]
    assert len(complete) >= calls, f"the calling process returned {len(complete)} calls in 60 s, not {calls}"
    return complete


def _terminal_stream_ids(url: str, tenant: str) -> set[str]:
    return {str(e.stream_id) for e in EventStore(url).read_tenant(tenant) if e.event_type in TERMINAL}


def _replay(url: str, spool: Path, role: str | None = "llm_ledger_writer") -> BufferedWriter:
    writer = BufferedWriter(EventStore(url, role=role), spool)
    assert writer.wait_stored(60), "the journal is replayed"
    writer.close()
    return writer


def test_every_call_that_returned_survives_sigkill_of_its_process(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    returned: list[str] = []
    # As the default writer is built (EventStore(url), no role): each run also replays what the one before
    # it left, events it had already stored included.
    for _ in range(3):
        returned += _calls_returned_before_sigkill(own_writer_url, spool, tenant, 300)
    _replay(own_writer_url, spool, role=None)

    stored = _terminal_stream_ids(own_ledger_url, tenant)
    missing = set(returned) - stored
    assert not missing, f"{len(missing)} of {len(returned)} returned executions are not in the ledger"


async def test_during_a_start_up_replay_new_calls_are_journaled_and_emit_does_not_block(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    backlog = BufferedWriter(EventStore(UNREACHABLE), spool, flush_interval=0.05)
    await run_executions(backlog, 600, tenant=tenant)
    left = backlog.close(timeout=3)
    assert left.journaled == left.accepted > 2_000

    with table_locked(own_ledger_url):  # the start-up replay cannot finish while the calls run
        returned = _calls_returned_before_sigkill(
            own_writer_url, spool, tenant, 600, "--role", "llm_ledger_writer", "--hard-limit", "2000"
        )
    _replay(own_writer_url, spool)

    stored = EventStore(own_ledger_url).read_tenant(tenant)
    assert len(stored) >= left.accepted
    missing = set(returned) - {str(e.stream_id) for e in stored if e.event_type in TERMINAL}
    assert not missing, f"{len(missing)} of {len(returned)} executions returned during the replay are lost"


async def test_closing_a_backlogged_writer_leaves_what_the_database_did_not_take_in_the_journal(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 5_000, tenant=tenant)
    caplog.set_level(logging.WARNING, logger="llm_ledger.store")
    with table_locked(own_ledger_url):
        writer = BufferedWriter(EventStore(own_writer_url, role="llm_ledger_writer"), spool)
        for draft in drafts:
            writer.emit(draft)
        stats = writer.close(timeout=2)
    assert stats.accepted == len(drafts) > 15_000
    assert (stats.queued, stats.memory_only, stats.lost) == (0, 0, 0), "nothing is left in memory only"
    assert stats.journaled == len(drafts), "every event is in the journal"
    assert not [r for r in caplog.records if "could not be" in r.getMessage()]
    writer.close(timeout=30)  # the table is free: its storing thread finishes the batch it was copying

    _replay(own_writer_url, spool)
    stored = [str(e.event_id) for e in EventStore(own_ledger_url).read_tenant(tenant)]
    assert sorted(stored) == sorted(str(d.event_id) for d in drafts), "every event, once"


async def test_a_writer_far_behind_its_journal_reads_it_back_and_loses_and_doubles_nothing(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A memory of 200 events for a burst of ~10,000: most batches are stored from the journal on disk,
    # some from memory, in turns.
    tenant = _tenant()
    drafts: list[EventDraft] = []
    await run_executions(DraftSink(drafts), 2_500, tenant=tenant)
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    writer = BufferedWriter(
        EventStore(own_writer_url, role="llm_ledger_writer"), tmp_path / "spool", batch_size=50, max_queue=200
    )
    for draft in drafts:
        writer.emit(draft)
    assert writer.wait_stored(120)
    stats = writer.close()
    assert stats.spooled > 0 and stats.written > 0, "both paths were taken"
    assert stats.lost == 0 and not caplog.records, "nothing is reported lost"
    stored = [str(e.event_id) for e in EventStore(own_ledger_url).read_tenant(tenant)]
    assert sorted(stored) == sorted(str(d.event_id) for d in drafts)
