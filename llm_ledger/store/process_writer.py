"""The process writer: an ``EventSink`` whose sealing, journaling and storing run in a writer process.

The buffered writer (``writer.py``) seals and copies in threads of the application's own interpreter, and
under load they compete with the application for it. A ``ProcessWriter`` starts a writer process
(``python -m llm_ledger.store.writer_process``, pipes, never a fork of a threaded process), which runs a
``BufferedWriter`` of its own. The application pays only what must run where its objects are: a handover
thread builds each draft's payload values (the ``JsonPayload`` builders read the application's objects)
and serializes them with the draft's envelope fields, a frame at a time (``wire.py``), to the child's
stdin. The child seals, journals (fsync, group commit) and acknowledges "journaled" with the hash of every
draft; a call awaiting ``durable`` (durability ``journal``) returns on that acknowledgement. The
acknowledged drafts leave the application (taken off their ``StreamSealer``'s queue, its ``prev_hash``
moved on to their hash), so its memory does not grow with them, and the application's sealers stay able
to seal the rest themselves with the very same hashes.

When the child dies, the application starts another (``max_restarts`` within a minute, with a backoff),
which adopts the dead one's journal (its lock died with it) and is sent again every draft not acknowledged;
it acknowledges those it finds journaled already without journaling them twice. When the child stalls (no
acknowledgement for ``stall_timeout`` while drafts wait) or cannot be restarted, the application kills it
and takes over: an in-process ``BufferedWriter`` of its own journals and stores from then on, sealing the
drafts not acknowledged itself (sealing is deterministic: a draft both journaled gets the same hash in
both, and the store's idempotent append keeps it once). Each switch is logged as an error;
``stats.mode`` says which mode the writer is in.

``close(timeout)`` hands over what is queued, asks the child to close within the deadline and waits for it;
a child that does not finish by then is killed and what it did not acknowledge is journaled by the
application itself. What was accepted ends in the database or in a journal replayed at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from llm_ledger.environment import child_environment
from llm_ledger.events import EventDraft
from llm_ledger.store import wire
from llm_ledger.store.settings import DURABILITY_MODES
from llm_ledger.store.store import EventStore
from llm_ledger.store.waiters import DurabilityWaiters
from llm_ledger.store.writer import DEFAULT_BATCH_SIZE, BufferedWriter, WriterStats

log = logging.getLogger("llm_ledger.store")

HANDOVER_BATCH = 500
"""Drafts a frame at most: large enough to cost one write and one wake-up of the child per many drafts,
small enough that the child starts sealing a burst before all of it has been serialized."""
RESTART_WINDOW = 60.0
START_TIMEOUT = 30.0
CLOSE_GRACE = 1.5
"""How long after the close deadline the child may take to answer (its journaling thread joins with a
margin of one second)."""
CLOSE_STALL = 2.0
"""While closing, how long the child may acknowledge nothing while drafts wait before it is killed (at most
``stall_timeout``): the rest of the budget goes to journaling them in this process."""
_COUNTERS = ("written", "spooled", "replayed", "rejected", "journaled", "memory_only", "lost")


@dataclass(frozen=True, slots=True)
class SpoolPlace:
    """Where the writer journals (the child's leased subdirectory, once it said it)."""

    directory: Path


@dataclass(eq=False)
class _Child:
    """One writer process and what it said."""

    proc: subprocess.Popen[bytes]
    stdin: int
    stdout: IO[bytes]
    started: float
    acked: int = 0  # drafts this child acknowledged
    hello: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    bye: bool = False
    eof: bool = False
    broken: bool = False  # a write to its stdin failed
    resend_left: int = 0  # drafts resent to it (at the head of _pending) not handed to it yet
    ended: bool = False  # ended: its drafts not acknowledged went elsewhere, a late acknowledgement is ignored
    last_progress: float = 0.0  # the last acknowledgement, or when drafts began to wait for one
    reader: threading.Thread | None = None
    stderr_reader: threading.Thread | None = None
    counted: dict[str, int] = field(default_factory=dict)


class ProcessWriter:
    """An ``EventSink`` (and ``DurableSink``) with ``BufferedWriter``'s surface whose work runs in a writer
    process the library starts and supervises; see the module's docstring."""

    def __init__(
        self,
        database_url: str,
        spool_dir: str | Path,
        *,
        role: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        hard_limit: int = 100_000,
        retry_interval: float = 1.0,
        durability: str = "journal",
        stall_timeout: float = 10.0,
        max_restarts: int = 3,
        migrate_embedded: bool = True,
        command: list[str] | None = None,
    ) -> None:
        if batch_size < 1 or max_queue < batch_size or hard_limit < max_queue:
            raise ValueError("ProcessWriter needs 1 <= batch_size <= max_queue <= hard_limit")
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, not {durability!r}")
        self.database_url = database_url
        self.spool_dir = Path(spool_dir).absolute()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        # Unusable, it fails here, as the buffered writer's does (the child would fail where no one sees it).
        probe, name = tempfile.mkstemp(prefix=".probe-", dir=self.spool_dir)
        os.close(probe)
        os.unlink(name)
        self.durability = durability
        self.hard_limit = hard_limit
        self.stall_timeout = stall_timeout
        self.max_restarts = max_restarts
        self._role = role
        self._config: dict[str, Any] = {
            "url": database_url,
            "role": role,
            "spool_dir": str(self.spool_dir),
            "batch_size": batch_size,
            "flush_interval": flush_interval,
            "max_queue": max_queue,
            "hard_limit": hard_limit,
            "retry_interval": retry_interval,
            "durability": durability,
            "migrate_embedded": migrate_embedded,
        }
        self._command = command or [sys.executable, "-P", "-m", "llm_ledger.store.writer_process"]
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # one writer of the child's stdin; held to replace the child
        self._pending: deque[EventDraft] = deque()  # emitted, not sent yet
        self._unacked: deque[EventDraft] = deque()  # sent to the current child, not acknowledged
        self._waiters = DurabilityWaiters()
        self._accepted = self._acked = self._refused = self._lost = 0
        self._finished: dict[str, int] = dict.fromkeys(_COUNTERS, 0)  # counters of children gone
        self._mode = "process"
        self._fallback: BufferedWriter | None = None
        self._closing = False
        self._closed = False
        self._close_sent = False
        self._hurry = False  # a call waits for drafts sent already: say so to the child
        self._close_deadline = float("inf")
        self._restarts: list[float] = []
        self._wake = threading.Event()
        self._last_state = "starting"
        self._stored_at_close = False  # what the last child said as it closed
        self._holding = False  # no child, and the take-over could not start: the drafts wait in memory
        self._retry_interval = retry_interval
        self._child: _Child | None = self._start_child(resend=0)
        if self._child is None:
            self._take_over(None, "the writer process could not be started")
        self._handover = threading.Thread(target=self._hand_over, name="llm-ledger-handover", daemon=True)
        self._supervisor = threading.Thread(target=self._supervise, name="llm-ledger-writer-supervisor", daemon=True)
        self._handover.start()
        self._supervisor.start()

    # --- the sink -------------------------------------------------------------------------------

    def emit(self, event: EventDraft) -> None:
        with self._cond:
            if self._closed:
                self._refuse("the writer is closed: an event emitted now is neither journaled nor stored")
                return
            if self._fallback is not None:
                self._accepted += 1
                self._fallback.emit(event)
                return
            if len(self._pending) + len(self._unacked) >= self.hard_limit:
                self._refuse("the writer's queue is full (its writer process cannot keep up)")
                return
            self._pending.append(event)
            self._accepted += 1
            if len(self._pending) == 1:
                self._cond.notify_all()

    def _refuse(self, why: str) -> None:
        if not self._lost:
            log.error("llm-ledger: %s: event(s) dropped (stats.lost counts them)", why)
        self._refused += 1
        self._lost += 1

    def durable(self, event: EventDraft) -> Awaitable[None] | None:
        """An awaitable done once ``event`` and every earlier one is journaled (by the writer process, or by
        this process after a take-over); None when there is nothing to wait for."""
        if self.durability != "journal":
            return None
        fallback = self._fallback
        if fallback is not None:
            return fallback.durable(event)
        with self._cond:
            if self._fallback is not None:
                return self._fallback.durable(event)
            target = self._accepted
            if self._acked >= target or self._closed or self._holding:
                return None  # (holding: nothing journals now; as a writer whose journal fails, calls go on)
            if not self._pending:
                self._hurry = True  # its drafts are sent already: the handover tells the child to journal them
                self._cond.notify_all()
            return self._waiters.add(target)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def child_pid(self) -> int | None:
        """The writer process's pid (None between a death and its replacement, or once taken over)."""
        child = self._child
        return None if child is None else child.proc.pid

    @property
    def restarts(self) -> int:
        """Writer processes started after the first one died (in the last minute)."""
        return len(self._restarts)

    @property
    def spool(self) -> SpoolPlace:
        fallback, child = self._fallback, self._child
        if fallback is not None:
            return SpoolPlace(fallback.spool.directory)
        if child is not None and child.hello is not None:
            return SpoolPlace(Path(child.hello["spool"]))
        return SpoolPlace(self.spool_dir)

    @property
    def stats(self) -> WriterStats:
        with self._cond:
            counters = dict(self._finished)
            state = self._last_state
            queued = len(self._pending) + len(self._unacked)
            child = self._child
            if child is not None and child.status is not None:
                for name in _COUNTERS:
                    counters[name] += int(child.status["stats"][name])
                state = str(child.status["stats"]["state"])
                queued += int(child.status["stats"]["queued"])
            if self._fallback is not None:
                taken = self._fallback.stats
                for name in _COUNTERS:
                    counters[name] += getattr(taken, name)
                state, queued = taken.state, queued + taken.queued
            return WriterStats(
                accepted=self._accepted + self._refused,
                queued=queued,
                state=state,
                mode=self._mode,
                written=counters["written"],
                spooled=counters["spooled"],
                replayed=counters["replayed"],
                rejected=counters["rejected"],
                journaled=counters["journaled"],
                memory_only=counters["memory_only"],
                lost=counters["lost"] + self._lost,
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every accepted event is journaled (acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._fallback is None and self._acked < self._accepted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            fallback = self._fallback
        return fallback is None or fallback.flush(max(deadline - time.monotonic(), 0.0))

    def wait_stored(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted event and the journal's backlog is in the database; False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.is_stored:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    @property
    def is_stored(self) -> bool:
        with self._cond:
            if self._pending or self._unacked:
                return False
            if self._fallback is not None:
                return self._fallback.is_stored
            child = self._child
            if child is None:
                return self._closed and self._stored_at_close  # between a death and a restart: not known
            return _all_stored(child)

    def close(self, timeout: float = 5.0) -> WriterStats:
        """Hand over what is queued, let the writer process journal it and store what the database takes
        within ``timeout``, then stop it; what it did not acknowledge by then this process journals itself.
        What is not in the database stays in a journal, replayed at the next start."""
        with self._cond:
            if self._closed:
                return self.stats
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._wake.set()
        while (child := self._child) is not None and self._fallback is None:
            self._wait_for_close(child, self._close_deadline + CLOSE_GRACE)
            if self._child is child:  # not replaced meanwhile (a restart under way as the close began)
                self._end_child(child)
        with self._cond:
            self._closed = True
            left_over = list(self._unacked) + list(self._pending)
        self._supervisor.join(2.0)
        if left_over and self._fallback is None:
            self._take_over(None, "the writer process closed without acknowledging every event")
        fallback = self._fallback
        if fallback is not None:
            fallback.close(max(self._close_deadline - time.monotonic(), 0.2))
        with self._cond:
            self._waiters.release_all()
        return self.stats

    def _wait_for_close(self, child: _Child, until: float) -> None:
        """Until the child exits (the handover sends it the close frame once everything is sent), ``until``
        passes, or it acknowledges nothing for ``CLOSE_STALL`` while drafts wait: a child that takes nothing
        must not spend the budget this process needs to journal what it did not acknowledge."""
        quiet_bound = min(self.stall_timeout, CLOSE_STALL)
        while child.proc.poll() is None:
            with self._cond:
                if self._fallback is not None or self._child is not child:
                    return  # taken over or replaced meanwhile: what is left is the take-over's
                now = time.monotonic()
                waiting = bool(self._unacked or self._pending)
                if waiting and now - child.last_progress > quiet_bound:
                    why = f"acknowledged nothing for {now - child.last_progress:.1f} s while closing"
                elif now >= until:
                    why = "did not close in time"
                else:
                    self._cond.wait(0.05)
                    continue
            log.error(
                "llm-ledger: the writer process %d %s: killed, and this process journals what it did not acknowledge",
                child.proc.pid,
                why,
            )
            return

    # --- the child --------------------------------------------------------------------------------

    def _start_child(self, resend: int) -> _Child | None:
        package_root = str(Path(__file__).resolve().parents[2])  # the directory holding llm_ledger/
        env = child_environment()  # this package first: the child runs the application's own code
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is the application's; it closes the child
                close_fds=True,
            )
        except OSError as exc:
            log.error("llm-ledger: the writer process cannot be started (%s)", exc)
            return None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        child = _Child(proc, proc.stdin.fileno(), proc.stdout, time.monotonic(), resend_left=resend)
        child.last_progress = child.started
        try:
            wire.write_all(child.stdin, wire.message(wire.INIT, {**self._config, "resend": resend}))
        except OSError:
            child.broken = True
        child.reader = threading.Thread(target=self._read, args=(child,), name="llm-ledger-writer-acks", daemon=True)
        child.stderr_reader = threading.Thread(
            target=_forward_logs, args=(proc,), name="llm-ledger-writer-logs", daemon=True
        )
        child.reader.start()
        child.stderr_reader.start()
        return child

    def _read(self, child: _Child) -> None:
        """The child's acknowledgements and status, until its stdout ends."""
        fd = child.stdout.fileno()
        try:
            while (got := wire.read_frame(fd)) is not None:
                kind, body = got
                value = orjson.loads(body)
                if kind == wire.JOURNALED:
                    self._journaled(child, value["h"])
                elif kind in (wire.STATUS, wire.BYE):
                    with self._cond:
                        child.status = value
                        child.bye = child.bye or kind == wire.BYE
                        self._cond.notify_all()
                elif kind == wire.HELLO:
                    with self._cond:
                        child.hello = value
                        child.last_progress = time.monotonic()  # what waits has waited for the start
        except (wire.WireError, orjson.JSONDecodeError, KeyError) as exc:
            log.error("llm-ledger: the writer process %d sent what is not a frame (%s)", child.proc.pid, exc)
        finally:
            with self._cond:
                child.eof = True
                self._cond.notify_all()
            self._wake.set()

    def _journaled(self, child: _Child, hashes: list[str | None]) -> None:
        with self._cond:
            if child.ended:
                # Its reader outlived the wait in _end_child: _unacked holds another child's drafts now.
                log.error("llm-ledger: an acknowledgement of the ended writer process %d ignored", child.proc.pid)
                return
            drafts = [self._unacked.popleft() for _ in hashes]
        # Outside the lock that emit takes (a few hundred drafts a frame). Nothing needs them moved on before
        # the next acknowledgement: a draft sent meanwhile is one the child has the stream of.
        for draft, digest in zip(drafts, hashes, strict=True):
            try:
                draft.sealer.sealed_elsewhere(draft, digest)
            except ValueError as exc:  # pragma: no cover - a draft sealed out of order here: said, kept going
                log.error("llm-ledger: %s", exc)
        with self._cond:
            self._acked += len(hashes)
            child.acked += len(hashes)
            child.last_progress = time.monotonic()
            self._waiters.release_through(self._acked)
            self._cond.notify_all()

    def _end_child(self, child: _Child) -> None:
        """Make sure the child is gone and every acknowledgement it sent is read."""
        _kill(child)
        child.proc.wait()
        if child.reader is not None:
            child.reader.join(10.0)
        with self._cond:
            child.ended = True
            if child.status is not None and not child.counted:
                child.counted = {name: int(child.status["stats"][name]) for name in _COUNTERS}
                for name, value in child.counted.items():
                    self._finished[name] += value
                self._last_state = str(child.status["stats"]["state"])
                self._stored_at_close = child.bye and _all_stored(child)
            if self._child is child:
                self._child = None
        for stream in (child.proc.stdin, child.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    # --- the handover thread --------------------------------------------------------------------

    def _hand_over(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._hurry and not self._closing and self._fallback is None:
                    self._cond.wait(0.5)
            with self._send_lock:
                with self._cond:
                    child = self._child
                    urgent, self._hurry = bool(self._waiters) or self._hurry, False
                    if self._fallback is not None:
                        return  # taken over: emit goes to the application's own writer
                    if child is None or child.broken or child.eof:
                        batch: list[EventDraft] = []  # the supervisor replaces it
                    else:
                        batch = [self._pending.popleft() for _ in range(min(len(self._pending), HANDOVER_BATCH))]
                        child.resend_left = max(child.resend_left - len(batch), 0)
                        if batch and not self._unacked:
                            child.last_progress = time.monotonic()
                        self._unacked.extend(batch)
                    closing = self._closing and not self._pending
                    deadline = self._close_deadline
                if child is not None and (batch or urgent):
                    kind = wire.URGENT_DRAFTS if urgent else wire.DRAFTS
                    data = wire.frame(kind, encode_drafts(batch)) if batch else wire.frame(wire.HURRY, b"")
                    try:
                        wire.write_all(child.stdin, data)
                    except OSError:
                        child.broken = True  # dead or killed: the supervisor resends what it did not acknowledge
                        self._wake.set()
                    if batch:
                        continue
                if closing and child is not None and not child.broken and not child.eof:
                    left = max(deadline - time.monotonic() - 0.5, 0.0)
                    try:
                        wire.write_all(child.stdin, wire.message(wire.CLOSE, {"timeout": left}))
                    except OSError:
                        child.broken = True
                    self._close_sent = True
                    return
                if closing and child is None:
                    return
            if not batch:
                time.sleep(0.01)

    # --- the supervisor -------------------------------------------------------------------------

    def _supervise(self) -> None:
        while True:
            self._wake.wait(0.1)
            self._wake.clear()
            with self._cond:
                child, closed, closing = self._child, self._closed, self._closing
                waiting = bool(self._unacked)
            if closed or self._fallback is not None:
                return
            if child is None:
                if not self._holding or closing:
                    return
                time.sleep(self._retry_interval)  # the take-over failed: held in memory, tried again
                self._take_over(None, "the writer process is gone")
                continue
            if child.eof or child.broken or child.proc.poll() is not None:
                if closing:
                    return  # close() deals with it
                self._replace(child)
                continue
            quiet = time.monotonic() - child.last_progress
            # Starting (importing, taking its journal, learning what a predecessor journaled) has a bound of
            # its own; after that, no acknowledgement for stall_timeout while drafts wait is a stall.
            bound = max(self.stall_timeout, START_TIMEOUT) if child.hello is None else self.stall_timeout
            if (waiting or child.hello is None) and quiet > bound and not closing:
                self._take_over(
                    child, f"the writer process {child.proc.pid} acknowledged nothing for {quiet:.0f} s (stalled)"
                )
                return

    def _replace(self, child: _Child) -> None:
        """The child died: start another (bounded, with a backoff) or take over."""
        code = child.proc.poll()
        now = time.monotonic()
        self._restarts = [at for at in self._restarts if now - at < RESTART_WINDOW]
        if len(self._restarts) >= self.max_restarts or (child.hello is None and code is not None and code > 0):
            self._take_over(child, f"the writer process {child.proc.pid} exited ({code}) and is not restarted")
            return
        _kill(child)  # its output unreadable, it may be alive: the handover could block on its stdin (the lock)
        time.sleep(min(0.2 * 2 ** len(self._restarts), 2.0))
        self._restarts.append(time.monotonic())
        with self._send_lock:
            self._end_child(child)
            with self._cond:
                resend = list(self._unacked)
                self._unacked.clear()
                self._pending.extendleft(reversed(resend))
                # What it was resent and never got goes on to the next, which must look for it in the journal
                # too (its predecessor's predecessor journaled some of it, perhaps).
                owed = len(resend) + child.resend_left
            log.error(
                "llm-ledger: the writer process %d exited (%s); another is started, and the %d event(s) it had not "
                "acknowledged are sent to it again",
                child.proc.pid,
                child.proc.returncode,
                len(resend),
            )
            replacement = self._start_child(resend=owed)
            with self._cond:
                self._child = replacement
                self._cond.notify_all()
        if replacement is None:
            self._take_over(None, "the writer process cannot be restarted")

    def _take_over(self, child: _Child | None, why: str) -> None:
        """Journal and store in this process from now on, the drafts not acknowledged first."""
        # Killed before the send lock is taken: a stalled child stops reading its stdin, and the handover
        # holds that lock while it blocks writing to the full pipe until the write fails (the reader gone).
        for doomed in (child, self._child):
            if doomed is not None:
                _kill(doomed)
        with self._send_lock:
            if child is not None:
                self._end_child(child)
            with self._cond:
                if self._fallback is not None:
                    return
                current = self._child
            if current is not None:
                self._end_child(current)
            try:
                fallback = self._in_process_writer()
            except Exception as exc:  # noqa: BLE001 - the supervisor must live on: it tries again
                with self._cond:
                    held = len(self._unacked) + len(self._pending)
                    # As a writer whose journal fails: the calls do not wait (for ever) for it.
                    self._waiters.release_all()
                    first, self._holding = not self._holding, True
                if first:
                    log.error(
                        "llm-ledger: %s, and this process cannot journal its events itself either (%s: %s): %d "
                        "event(s) held in memory only, tried again every %.1f s",
                        why,
                        type(exc).__name__,
                        exc,
                        held,
                        self._retry_interval,
                    )
                return
            with self._cond:
                self._holding = False
                drafts = list(self._unacked) + list(self._pending)
                self._unacked.clear()
                self._pending.clear()
                self._fallback, self._mode = fallback, "taken-over"
                fallback.emit_many(drafts)  # sealed here, by the sealers the acknowledgements kept current
                self._cond.notify_all()
        log.error(
            "llm-ledger: %s: this process journals and stores its events itself from now on, in %s (%d event(s) "
            "not acknowledged taken over)",
            why,
            fallback.spool.directory,
            len(drafts),
        )
        threading.Thread(target=self._release_after, args=(fallback,), daemon=True).start()

    def _in_process_writer(self) -> BufferedWriter:
        store = EventStore(self.database_url, role=self._role)
        return BufferedWriter(
            store,
            self.spool_dir,
            on_start=_migrating(self.database_url) if store.engine.dialect.name == "sqlite" else None,
            batch_size=int(self._config["batch_size"]),
            flush_interval=float(self._config["flush_interval"]),
            max_queue=int(self._config["max_queue"]),
            hard_limit=int(self._config["hard_limit"]),
            retry_interval=self._retry_interval,
            durability=self.durability,
        )

    def _release_after(self, fallback: BufferedWriter) -> None:
        """Calls that waited for the writer process wait for the take-over's journal instead."""
        fallback.flush(30.0)
        with self._cond:
            self._waiters.release_all()


def _kill(child: _Child) -> None:
    """Kill the child if it still runs (``Popen.kill``: SIGKILL, and TerminateProcess where there are no signals)."""
    if child.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            child.proc.kill()


def _all_stored(child: _Child) -> bool:
    """Whether the child said everything it acknowledged, and its journal's backlog, is in the database."""
    status = child.status
    return status is not None and bool(status["stored"]) and int(status["acked"]) >= child.acked


def _migrating(url: str) -> Callable[[], None]:
    def prepare() -> None:
        from llm_ledger.store.migrate import upgrade

        upgrade(url)

    return prepare


def encode_drafts(batch: list[EventDraft]) -> bytes:
    """The body of a drafts frame (``wire.DRAFT_FIELDS``), the payload values built here."""
    items = [_item(draft) for draft in batch]
    try:
        return orjson.dumps(items)
    except (orjson.JSONEncodeError, TypeError):
        parts = []
        for item in items:
            try:
                parts.append(orjson.dumps(item))
            except (orjson.JSONEncodeError, TypeError) as exc:
                item[14], item[15], item[16] = None, False, f"its payload cannot be serialized: {exc}"
                parts.append(orjson.dumps(item))
        return b"[" + b",".join(parts) + b"]"


def _item(draft: EventDraft) -> list[Any]:
    sealer = draft.sealer
    header = sealer.header
    known, prev = sealer.next_unsealed_link(draft)
    try:
        values: Any
        values, plain = draft.payload_values()
        error = None
    except Exception as exc:  # noqa: BLE001 - sealed as unsealable there, as it would be here
        values, plain, error = None, False, f"{type(exc).__name__}: {exc}"
    return [
        header.stream_id, header.tenant_id, header.agent_id, header.session_id, header.turn_id, header.step,
        draft.stream_position, draft.event_type, draft.occurred_at, draft.trace_id, draft.span_id, draft.event_id,
        known, prev, values, plain, error,
        None if draft.content_key is None else draft.content_key.record(),
    ]  # fmt: skip


_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _forward_logs(proc: subprocess.Popen[bytes]) -> None:
    """The child's stderr, line by line, to this process's ``llm_ledger.store`` logger."""
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip("\n")
        level_name, _, message = line.partition(" ")
        level = _LEVELS.get(level_name)
        if level is None:
            level, message = logging.WARNING, line
        log.log(level, "[writer process %d] %s", proc.pid, message)
    proc.stderr.close()
