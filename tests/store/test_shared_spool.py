"""Writer processes sharing one spool directory (every worker of ``gunicorn --workers N`` on the default
``~/.llm-ledger/spool``): none takes another's live journal for leftovers, and whatever a dead one left is
replayed by the next start, however many workers come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import run_executions

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"  # port 9 (discard) is closed here: refused at once
TERMINAL = ("ExecutionSucceeded", "ExecutionFailed")


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


class _Caller:
    """A child process calling through its own BufferedWriter without end (``tests.store.calling_process``),
    the execution ids it reported as returned to their callers collected as they come."""

    def __init__(self, url: str, spool: Path, tenant: str) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "tests.store.calling_process", url, str(spool), tenant, "--concurrency", "4"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.lines.append(line)

    @property
    def returned(self) -> list[str]:
        return [line.split()[1] for line in list(self.lines) if line.startswith("RETURNED ") and line.endswith("\n")]

    def wait_returned(self, calls: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.returned) < calls:
            assert self.child.poll() is None, f"the calling process exited with {self.child.returncode}"
            assert time.monotonic() < deadline, f"{len(self.returned)} calls returned in {timeout} s, not {calls}"
            time.sleep(0.05)

    def kill(self) -> None:
        self.child.send_signal(signal.SIGKILL)
        self.child.wait(30)
        self._reader.join(30)


def _replay(url: str, spool: Path) -> BufferedWriter:
    writer = BufferedWriter(EventStore(url), spool)
    assert writer.wait_stored(60), "the journal is replayed"
    writer.close()
    return writer


def _terminal_stream_ids(url: str, tenant: str) -> set[str]:
    return {str(e.stream_id) for e in EventStore(url).read_tenant(tenant) if e.event_type in TERMINAL}


def test_two_live_writers_on_one_spool_directory_lose_nothing_when_one_is_killed(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    down_tenant, up_tenant = _tenant(), _tenant()
    # Worker 1 cannot reach its database: everything it returns is in its journal only.
    down = _Caller(UNREACHABLE, spool, down_tenant)
    try:
        down.wait_returned(50)
        # Worker 2 starts on the same directory, its database up: worker 1's journal is live, not leftovers.
        up = _Caller(own_writer_url, spool, up_tenant)
        try:
            up.wait_returned(100)
            before = len(down.returned)
            down.wait_returned(before + 100)  # worker 1 keeps journaling after worker 2's start
        finally:
            up.kill()
    finally:
        down.kill()
    assert len(down.returned) >= 150

    _replay(own_writer_url, spool)
    for caller, tenant in ((down, down_tenant), (up, up_tenant)):
        missing = set(caller.returned) - _terminal_stream_ids(own_ledger_url, tenant)
        assert not missing, f"{len(missing)} of {len(caller.returned)} returned executions are not in the ledger"


async def test_the_flat_layout_of_earlier_versions_is_replayed_once(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    spool, tenant = tmp_path / "spool", _tenant()
    down = BufferedWriter(EventStore(UNREACHABLE), spool, flush_interval=0.05)
    await run_executions(down, 20, tenant=tenant)
    left = down.close(timeout=3)
    assert left.journaled == left.accepted > 0
    # Earlier versions kept the same files directly in the spool directory.
    (own,) = spool.glob("writer-*")
    for path in own.iterdir():
        if path.name != "lock":
            path.rename(spool / path.name)
    (own / "lock").unlink()
    own.rmdir()
    assert list(spool.glob("spool-*.log")) and (spool / "spool.state").exists()

    again = _replay(own_writer_url, spool)
    assert again.stats.replayed == left.accepted
    assert len(EventStore(own_ledger_url).read_tenant(tenant)) == left.accepted
    assert not list(spool.glob("spool-*.log")) and not (spool / "spool.state").exists(), "replayed once"
    assert _replay(own_writer_url, spool).stats.replayed == 0


def test_three_orphans_are_all_replayed_by_one_restart(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    spool, tenant = tmp_path / "spool", _tenant()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.spooling_process", UNREACHABLE, str(spool), "20", tenant],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(3)
    ]
    spooled = 0
    try:
        for child in children:  # all three alive at once: three subdirectories
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("SPOOLED"), line
            spooled += int(line.split()[1])
    finally:
        for child in children:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    assert len(list(spool.glob("writer-*"))) == 3

    writer = _replay(own_writer_url, spool)  # one worker comes back
    assert writer.stats.replayed == spooled
    assert writer.stats.lost == 0
    assert len(EventStore(own_ledger_url).read_tenant(tenant)) == spooled
    assert len(list(spool.glob("writer-*"))) == 1, "the orphans replayed are removed, the adopted one kept"
    assert not list(spool.rglob("spool-*.log"))
