"""The writer process (``ProcessWriter``): the application hands its drafts over, a child seals, journals and
stores them; whatever happens to the child, nothing accepted is lost or doubled and every chain holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llm_ledger.events import Event, EventDraft, values, verify_chain
from llm_ledger.events.chain import StreamHeader, StreamSealer
from llm_ledger.events.values import JsonPayload
from llm_ledger.executor import FanOutSink
from llm_ledger.store.errors import InvalidEventError
from llm_ledger.store.process_writer import ProcessWriter
from llm_ledger.store.rows import event_to_row
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import DraftSink, make_events, run_executions, table_locked

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("ExecutionSucceeded", "ExecutionFailed")


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


def _in_stream_order(stored: list[Event]) -> list[Event]:
    return sorted(stored, key=lambda e: (str(e.stream_id), e.stream_position))


def _assert_stored_once(url: str, tenant: str, drafts: list[EventDraft]) -> None:
    """Every draft accepted is in the ledger exactly once, and every stream's chain verifies."""
    stored = EventStore(url).read_tenant(tenant)
    stored_ids = [str(e.event_id) for e in stored]
    assert len(stored_ids) == len(set(stored_ids))
    assert sorted(stored_ids) == sorted(str(d.event_id) for d in drafts), "every accepted event, once"
    report = verify_chain(_in_stream_order(stored))
    assert report.ok, str(report)


async def _run_while(writer: ProcessWriter, drafts: list[EventDraft], tenant: str, count: int) -> None:
    await run_executions(FanOutSink([DraftSink(drafts), writer]), count, tenant=tenant)


def _poll(condition: Callable[[], bool]) -> None:
    while not condition():
        time.sleep(0.01)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (in a thread: the calls run on this loop meanwhile) until ``condition()`` holds."""
    await asyncio.to_thread(_poll, condition)


async def _when_acked(writer: ProcessWriter, at_least: int) -> None:
    await _until(lambda: writer.stats.journaled >= at_least)


async def test_sigkill_of_the_writer_process_under_load_loses_and_doubles_nothing(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, drafts = _tenant(), list[EventDraft]()
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    writer = ProcessWriter(own_writer_url, tmp_path / "spool", role="llm_ledger_writer")
    killed: list[int] = []

    async def kill_twice() -> None:
        for at_least in (500, 2_000):
            await _when_acked(writer, at_least)
            pid = writer.child_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # while calls are in flight: some drafts sent and not acknowledged
            killed.append(pid)
            await _until(lambda: writer.child_pid not in (pid, None))  # noqa: B023 - this pid

    killer = asyncio.create_task(kill_twice())
    await _run_while(writer, drafts, tenant, 1_500)
    await killer
    assert writer.wait_stored(60)
    stats = writer.close()
    assert len(killed) == 2 and writer.restarts == 2 and stats.mode == "process", "restarted, not taken over"
    assert stats.accepted == len(drafts) and stats.lost == 0
    assert [r for r in caplog.records if "another is started" in r.getMessage()], "each restart is said"
    _assert_stored_once(own_ledger_url, tenant, drafts)


async def test_a_stalled_database_slows_no_call_and_everything_is_stored_once_it_answers(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    tenant, drafts = _tenant(), list[EventDraft]()
    writer = ProcessWriter(own_writer_url, tmp_path / "spool", role="llm_ledger_writer", batch_size=200)
    with table_locked(own_ledger_url):
        await _run_while(writer, drafts, tenant, 1_000)  # every call returns: journaled, not stored
        assert writer.flush(60), "every event is journaled by the writer process"
        stats = writer.stats
        assert stats.mode == "process" and stats.accepted == len(drafts) > 4_000
        assert not writer.is_stored, "the database could take nothing"
    assert writer.wait_stored(120), "everything is stored once the database answers"
    stats = writer.close()
    assert stats.journaled >= len(drafts) and stats.lost == 0
    _assert_stored_once(own_ledger_url, tenant, drafts)


def _stop_child_after(writer: ProcessWriter, draft: EventDraft) -> int:
    """Once the child has started and acknowledged ``draft``, SIGSTOP it (alive, taking nothing): its pid."""
    writer.emit(draft)
    assert writer.flush(60), "the child started and acknowledged"
    pid = writer.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_an_application_exiting_with_its_writer_behind_leaves_everything_to_the_next_start(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    script = (
        "import asyncio, sys\n"
        "from llm_ledger import LLMExecutor, LLMMessage, execution_context\n"
        "from llm_ledger.executor.sink import get_default_sink\n"
        "async def main():\n"
        "    executor = LLMExecutor('mock/m?p50_ms=0', step_name='generation')\n"
        "    async def one(i):\n"
        f"        with execution_context(tenant_id='{tenant}', session_id=f's-{{i}}'):\n"
        "            response = await executor.generate([LLMMessage(role='user', content='hi')])\n"
        "        print('RETURNED', response.execution_id, flush=True)\n"
        "    await asyncio.gather(*(one(i) for i in range(400)))\n"
        "    print('MODE', get_default_sink().stats.mode, flush=True)\n"
        "asyncio.run(main())\n"  # and exit: the default writer is closed at interpreter exit
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LEDGER_")}
    env.update(LLM_LEDGER_DATABASE_URL=own_writer_url, LLM_LEDGER_SPOOL_DIR=str(spool), PYTHONPATH=str(ROOT))
    env["LLM_LEDGER_DIGEST_KEY"] = os.environ["LLM_LEDGER_DIGEST_KEY"]  # a PostgreSQL writer's requirement
    with table_locked(own_ledger_url):  # the writer process cannot store anything before the exit
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    returned = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("RETURNED ")]
    assert "MODE process" in done.stdout and len(returned) == 400
    assert EventStore(own_ledger_url).read_tenant(tenant) == [], "nothing could be stored before the exit"

    replay = BufferedWriter(EventStore(own_writer_url), spool)  # the next start
    assert replay.wait_stored(60)
    replay.close()
    stored = EventStore(own_ledger_url).read_tenant(tenant)
    assert len(stored) == 4 * 400 == len({e.event_id for e in stored}), "every event of every call, once"
    assert {str(e.stream_id) for e in stored if e.event_type in TERMINAL} == set(returned)
    assert verify_chain(_in_stream_order(stored)).ok


class _App:
    """An application process calling through its own writer process (``tests.store.calling_process``)."""

    OPTIONS = ("--concurrency", "4", "--writer", "process")

    def __init__(self, url: str, spool: Path, tenant: str) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "tests.store.calling_process", url, str(spool), tenant, *self.OPTIONS],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: list[str] = []
        self.writer_pid = 0

    def read_until(self, calls: int) -> None:
        assert self.child.stdout is not None
        deadline = time.monotonic() + 60
        while len(self.returned) < calls:
            line = self.child.stdout.readline()
            assert line, f"the application exited with {self.child.poll()}"
            assert time.monotonic() < deadline, f"{len(self.returned)} calls returned in 60 s, not {calls}"
            if line.startswith("CHILD "):
                self.writer_pid = int(line.split()[1])
            self.lines.append(line)

    @property
    def returned(self) -> list[str]:
        return [line.split()[1] for line in self.lines if line.startswith("RETURNED ") and line.endswith("\n")]

    def kill(self) -> None:
        self.child.send_signal(signal.SIGKILL)
        self.child.wait(30)


def _writer_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_several_applications_with_writer_processes_share_one_spool_and_one_database(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    apps = [_App(own_writer_url, spool, tenant) for _ in range(3)]
    try:
        for app in apps:
            app.read_until(150)
        apps[0].kill()  # its writer process sees its stdin end: it journals and stores what it has, and exits
        for app in apps[1:]:
            app.read_until(300)
    finally:
        for app in apps:
            app.kill()
    deadline = time.monotonic() + 60
    while not all(_writer_gone(app.writer_pid) for app in apps):  # each closes on its own at its stdin's end
        assert time.monotonic() < deadline, "a writer process outlived its application by 60 s"
        time.sleep(0.1)
    replay = BufferedWriter(EventStore(own_writer_url), spool)  # whatever they left in the shared directory
    assert replay.wait_stored(60)
    replay.close()
    stored = EventStore(own_ledger_url).read_tenant(tenant)
    returned = {execution for app in apps for execution in app.returned}
    missing = returned - {str(e.stream_id) for e in stored if e.event_type in TERMINAL}
    assert not missing, f"{len(missing)} of {len(returned)} returned executions are not in the ledger"
    assert len(stored) == len({e.event_id for e in stored})
    assert verify_chain(_in_stream_order(stored)).ok
    assert not list(spool.glob("writer-*/spool-*.log")), "every journal is replayed and freed"


def _failing_restarts(tmp_path: Path) -> list[str]:
    """A writer process command that runs the real one the first time only, and fails to start after."""
    marker = tmp_path / "started-once"
    script = (
        "import os, sys\n"
        f"marker = {str(marker)!r}\n"
        "if os.path.exists(marker):\n"
        "    sys.stderr.write('ERROR this writer process will not start\\n'); sys.exit(3)\n"
        "open(marker, 'w').close()\n"
        "from llm_ledger.store.writer_process import main\n"
        "main()\n"
    )
    return [sys.executable, "-P", "-c", script]


async def test_a_writer_process_that_cannot_be_restarted_is_taken_over_by_the_application(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, drafts = _tenant(), list[EventDraft]()
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    writer = ProcessWriter(
        own_writer_url, tmp_path / "spool", role="llm_ledger_writer", command=_failing_restarts(tmp_path)
    )
    await _run_while(writer, drafts, tenant, 300)
    pid = writer.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # These calls wait for their events to be journaled: they return once the application took over.
    await _run_while(writer, drafts, tenant, 300)
    assert writer.mode == "taken-over"
    assert writer.wait_stored(60)
    stats = writer.close()
    assert stats.mode == "taken-over" and stats.accepted == len(drafts) and stats.lost == 0
    assert [r for r in caplog.records if "journals and stores its events itself" in r.getMessage()]
    _assert_stored_once(own_ledger_url, tenant, drafts)


async def test_a_stalled_writer_process_is_killed_and_taken_over(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, drafts = _tenant(), list[EventDraft]()
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    writer = ProcessWriter(own_writer_url, tmp_path / "spool", role="llm_ledger_writer", stall_timeout=1.0)
    await _run_while(writer, drafts, tenant, 200)
    pid = writer.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive, and acknowledging nothing
    # These calls wait for their events to be journaled: they return once the application took over.
    await _run_while(writer, drafts, tenant, 300)
    assert writer.mode == "taken-over"
    assert writer.wait_stored(60)
    stats = writer.close()
    assert stats.mode == "taken-over" and stats.lost == 0
    assert [r for r in caplog.records if "(stalled)" in r.getMessage()]
    _assert_stored_once(own_ledger_url, tenant, drafts)


def test_acknowledged_drafts_leave_the_application_and_seal_the_same_here(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    # One long-lived stream of 2,000 events, held by the application all along: the drafts the writer
    # process acknowledged do not stay queued in its sealer.
    tenant = _tenant()
    events = make_events(500, tenant=tenant)
    sealer = StreamSealer(StreamHeader(stream_id=uuid.uuid4(), tenant_id=tenant, session_id="long"))
    writer = ProcessWriter(own_writer_url, tmp_path / "spool", role="llm_ledger_writer")
    drafts = []
    for event in events:
        draft = sealer.draft(event.event_type, event.payload, occurred_at=event.occurred_at)
        drafts.append(draft)
        writer.emit(draft)
    assert writer.flush(60)
    assert sealer.unsealed == 0, "every acknowledged draft left the sealer's queue"
    assert writer.wait_stored(60)
    writer.close()
    stored = EventStore(own_ledger_url).read_stream(sealer.header.stream_id)
    assert len(stored) == len(drafts) and verify_chain(stored).ok
    # Read here after the child sealed them, drafts seal again alone to the very same events.
    for draft in (drafts[0], drafts[1], drafts[-1]):
        assert draft.event.hash == stored[draft.stream_position].hash


def test_the_writer_process_loads_neither_agno_nor_telemetry() -> None:
    probe = (
        "import sys, llm_ledger.store.writer_process\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('agno', 'opentelemetry') "
        "or m.startswith('llm_ledger.telemetry') or m.startswith('llm_ledger.agno')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_writer_process_seals_exactly_as_the_application_would(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    # Floats canonical JSON writes otherwise than orjson (1e-07, 3e+20) and a payload whose builder raises:
    # the child's hashes and the chain around the unsealable draft are the ones an in-process writer makes.
    tenant, stream_id = _tenant(), uuid.uuid4()
    timeouts = [0.1, 1e-7, 3e20, 1.5, 2.0]
    header = StreamHeader(stream_id=stream_id, tenant_id=tenant, session_id="floats")
    here, there = StreamSealer(header), StreamSealer(header)
    moment = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
    writer = ProcessWriter(own_writer_url, tmp_path / "spool", role="llm_ledger_writer")
    expected: list[str | None] = []
    for position, timeout in enumerate(timeouts):
        attempt = 0 if position == 3 else 1  # attempt 0: the builder refuses it
        arguments = {"attempt": attempt, "model": "m", "provider": "p", "fallback_index": 0, "retry": 0}
        event_id = uuid.uuid4()
        for sealer in (here, there):
            draft = sealer.draft(
                "AttemptStarted",
                JsonPayload(values.attempt_started, **arguments, timeout_seconds=timeout),
                occurred_at=moment,
                event_id=event_id,
            )
            if sealer is there:
                writer.emit(draft)
            else:
                try:
                    expected.append(event_to_row(draft, position)["hash"])
                except InvalidEventError:
                    expected.append(None)
    assert writer.wait_stored(60)
    stats = writer.close()
    assert stats.rejected == 1
    stored = {e.stream_position: e.hash for e in EventStore(own_ledger_url).read_stream(stream_id)}
    assert [stored.get(position) for position in range(len(timeouts))] == expected
    assert expected[3] is None and None not in expected[:3] + expected[4:]


async def test_a_writer_process_on_the_embedded_sqlite_file_migrates_it_and_stores(
    sqlite_url: str, tmp_path: Path
) -> None:
    tenant, drafts = _tenant(), list[EventDraft]()
    writer = ProcessWriter(sqlite_url, tmp_path / "spool")  # LLM_LEDGER_WRITER=process with the local default
    await _run_while(writer, drafts, tenant, 50)
    assert writer.wait_stored(60)
    assert writer.close().mode == "process"
    assert writer.is_stored, "closed with everything stored, and says so (the exit hook warns otherwise)"
    _assert_stored_once(sqlite_url, tenant, drafts)


def _drafts_of(count: int, tenant: str) -> list[EventDraft]:
    """The drafts of ``count`` executions' events on one long stream, unsealed (none emitted yet)."""
    sealer = StreamSealer(StreamHeader(stream_id=uuid.uuid4(), tenant_id=tenant, session_id="burst"))
    return [sealer.draft(e.event_type, e.payload, occurred_at=e.occurred_at) for e in make_events(count, tenant=tenant)]


def test_a_writer_process_stalled_with_its_pipe_full_is_still_taken_over(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path
) -> None:
    # A burst far larger than a pipe's buffer: the handover blocks writing to the stalled child's stdin. The
    # supervisor must still be able to kill it and take over (the handover holds the send lock meanwhile).
    tenant = _tenant()
    drafts = _drafts_of(2_000, tenant)
    writer = ProcessWriter(own_writer_url, tmp_path / "spool", role="llm_ledger_writer", stall_timeout=1.0)
    pid = _stop_child_after(writer, drafts[0])
    try:
        for draft in drafts[1:]:
            writer.emit(draft)
        assert writer.flush(60), "taken over and journaled by the application"
        assert writer.mode == "taken-over"
        assert writer.wait_stored(60)
        stats = writer.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert stats.lost == 0
    _assert_stored_once(own_ledger_url, tenant, drafts)


def test_closing_with_a_stalled_writer_process_leaves_the_budget_to_journaling_here(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The child takes nothing while the application closes. Waiting for it until the deadline (and the
    # handover blocked on its full pipe for as long again) left a fraction of a second to journal here what
    # it never acknowledged, and at exit the rest dies: it is killed once it is seen taking nothing.
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    tenant, spool = _tenant(), tmp_path / "spool"
    drafts = _drafts_of(2_000, tenant)
    # A stall timeout that emitting 2,000 drafts cannot reach on a loaded machine (at 10 s it did, and the stall
    # was found before the close): the close still bounds its wait by CLOSE_STALL, which is what this tests.
    writer = ProcessWriter(own_writer_url, spool, role="llm_ledger_writer", stall_timeout=600.0)
    pid = _stop_child_after(writer, drafts[0])
    try:
        for draft in drafts[1:]:
            writer.emit(draft)
        with table_locked(own_ledger_url):  # nothing stored during the close: all of it must be journaled
            stats = writer.close(5.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert [r for r in caplog.records if "while closing" in r.getMessage()], "killed as seen taking nothing"
    assert stats.queued == 0 and stats.lost == 0 and stats.memory_only == 0, stats
    replay = BufferedWriter(EventStore(own_writer_url), spool)  # the next start
    assert replay.wait_stored(60)
    replay.close()
    _assert_stored_once(own_ledger_url, tenant, drafts)


async def test_a_take_over_that_cannot_start_holds_the_events_and_tries_again(
    own_writer_url: str, own_ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The writer process dies and the application's own writer cannot be made (its spool directory is
    # gone, a file in its place): the supervisor thread died of it, and every call waiting hung for ever.
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")
    tenant, drafts, spool = _tenant(), list[EventDraft](), tmp_path / "spool"
    writer = ProcessWriter(own_writer_url, spool, role="llm_ledger_writer", max_restarts=0, retry_interval=0.2)
    await _run_while(writer, drafts, tenant, 20)
    moved = tmp_path / "moved"
    spool.rename(moved)
    spool.write_text("not a directory")
    pid = writer.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: bool([r for r in caplog.records if "cannot journal its events" in r.getMessage()]))
    await asyncio.wait_for(_run_while(writer, drafts, tenant, 20), 120)  # the calls return meanwhile
    spool.unlink()
    moved.rename(spool)
    await _until(lambda: writer.mode == "taken-over")
    assert writer.wait_stored(60)
    stats = writer.close()
    assert stats.lost == 0 and stats.accepted == len(drafts)
    _assert_stored_once(own_ledger_url, tenant, drafts)
