"""A full journal disk (a real one: a 256 KiB tmpfs) degrades the writer to memory, bounded and counted; it
never kills it, hangs the application, makes ``flush`` lie, or breaks the next start."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.test_writer import UNREACHABLE, DatabaseOutage
from tests.store.workload import run_executions


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 256 KiB tmpfs of its own (mounting needs root, which the test machines have)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory: Path) -> Path:
    """Take every free byte of the file system ``directory`` is on."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_and_an_outage_keep_a_bounded_memory_and_write_it_when_the_database_is_back(
    own_writer_url: str, own_ledger_url: str, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:10]}"
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    writer = BufferedWriter(
        EventStore(own_writer_url, role="llm_ledger_writer"),
        small_disk / "spool",
        batch_size=50,
        flush_interval=0.05,
        max_queue=500,
        hard_limit=3_000,
        retry_interval=0.2,
    )
    outage = DatabaseOutage(own_ledger_url)
    outage.begin()
    try:
        # About 6,000 events: the 256 KiB fill up after a few hundred, memory holds 3,000, the rest is dropped.
        # A blocked emit would hang here: wait_for turns that into a failure.
        await asyncio.wait_for(run_executions(writer, 1_500, tenant=tenant), 120)
        during = writer.stats
        assert during.journaled > 0 and during.memory_only > 0, "journaled until the disk filled, then memory"
        assert during.memory_only <= 3_000 < during.memory_only + during.lost, "memory is bounded, the rest counted"
        assert writer.flush(timeout=1) is False, "flush does not claim that memory-only events are safe"
        assert any("cannot be written" in r.getMessage() and "journal" in r.getMessage() for r in caplog.records)
        assert any("dropped" in r.getMessage() for r in caplog.records), "dropping is said, loudly"
    finally:
        outage.end()

    assert writer.wait_stored(60), "the writer outlived the full disk and writes everything it kept"
    stats = writer.close()
    stored = EventStore(own_ledger_url).read_tenant(tenant)
    assert len(stored) == len({e.event_id for e in stored}) == stats.accepted - stats.lost


async def test_a_writer_started_on_a_full_disk_replays_the_journal_and_writes_to_the_database(
    own_writer_url: str, own_ledger_url: str, small_disk: Path
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:10]}"
    spool = small_disk / "spool"
    earlier = BufferedWriter(EventStore(UNREACHABLE), spool, batch_size=50, flush_interval=0.05)
    await asyncio.wait_for(run_executions(earlier, 400, tenant=tenant), 120)  # fills the disk
    left = earlier.close(timeout=1)
    assert 0 < left.journaled < left.accepted == left.journaled + left.lost, "what it could not keep is counted"
    filler = _fill(small_disk)  # and nothing is freed before the next start
    try:
        writer = BufferedWriter(EventStore(own_writer_url, role="llm_ledger_writer"), spool, flush_interval=0.05)
        await asyncio.wait_for(run_executions(writer, 50, tenant=tenant), 120)
        assert writer.wait_stored(60)
        stats = writer.close()
    finally:
        filler.unlink()
    assert stats.replayed == left.journaled and stats.lost == 0
    assert len(EventStore(own_ledger_url).read_tenant(tenant)) == left.journaled + stats.accepted
