"""The writer process: ``python -m llm_ledger.store.writer_process``, started by ``ProcessWriter``.

It runs a ``BufferedWriter`` fed from its stdin (``wire.py``): each draft its application sends is drafted
again here, in a ``StreamSealer`` of its stream (its position checked; a stream first seen here resumes
from the ``prev_hash`` the application gives), with the payload's JSON values the application built. The
writer seals, journals (group commit: at once while a call of the application waits, which its frames
say) and stores as it does in an application; each settled batch is acknowledged on stdout with the hashes it
was sealed to, in the order the drafts came.

A writer process that replaces a dead one adopts its journal (``spool_lease``: the dead process's lock is
free) and learns the event ids journaled there: the application resends every draft not acknowledged,
and those already journaled are acknowledged with their journaled hash, not journaled again.

Its stdout carries frames only (the original descriptor is kept for them; file descriptor 1 is pointed at
stderr, so that nothing printed corrupts the stream); it logs to stderr, which the application forwards
to its own ``llm_ledger.store`` logger. It ignores SIGINT (a Ctrl-C is the application's to handle: it
closes this process in order), and closes when its stdin ends (the application is gone).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from llm_ledger.events import EventDraft
from llm_ledger.events.chain import StreamHeader, StreamSealer
from llm_ledger.events.encryption import DataKey
from llm_ledger.events.model import TERMINAL_EVENT_TYPES
from llm_ledger.events.values import JsonPayload, given, refused
from llm_ledger.store import wire
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter

log = logging.getLogger("llm_ledger.store")

ENDED_STREAMS_KEPT = 10_000
"""Sealers of streams whose terminal event came, kept in case an event still follows (most recent first)."""
STATUS_INTERVAL = 0.05
CLOSE_ON_EOF_SECONDS = 10.0


class _Entry:
    """A draft received, in order: its hash once settled."""

    __slots__ = ("digest", "ready")

    def __init__(self, digest: str | None = None, ready: bool = False) -> None:
        self.digest, self.ready = digest, ready


class WriterChild:
    def __init__(self, config: dict[str, Any], out_fd: int) -> None:
        self._out = out_fd
        self._out_lock = threading.Lock()
        self._out_broken = False
        self._lock = threading.Lock()  # the order of acknowledgements
        self._entries: deque[_Entry] = deque()
        self._in_writer: deque[_Entry] = deque()
        self._acked = 0
        self._sealers: dict[str, StreamSealer] = {}
        self._ended: OrderedDict[str, StreamSealer] = OrderedDict()
        self._max_queue = int(config["max_queue"])
        url = config["url"]
        store = EventStore(url, role=config.get("role"))
        embedded = store.engine.dialect.name == "sqlite"

        def prepare() -> None:
            if embedded and config.get("migrate_embedded", True):
                from llm_ledger.store.migrate import upgrade

                upgrade(url)

        self.writer = BufferedWriter(
            store,
            config["spool_dir"],
            batch_size=int(config["batch_size"]),
            flush_interval=float(config["flush_interval"]),
            max_queue=self._max_queue,
            hard_limit=int(config["hard_limit"]),
            retry_interval=float(config["retry_interval"]),
            durability=config["durability"],
            on_start=prepare,
            on_settled=self._settled,
        )
        self._resend = int(config.get("resend", 0))
        self._journaled = self._journaled_before() if self._resend else {}
        self._status_stop = threading.Event()
        self._status = threading.Thread(target=self._report, name="llm-ledger-writer-status", daemon=True)

    def _journaled_before(self) -> dict[str, str]:
        """The event ids (and hashes) of what the journals this writer took over hold: its predecessor's."""
        found: dict[str, str] = {}
        for spool in self.writer.spools_taken_over():
            for segment in list(spool.previous):
                # The predecessor may have died between writing a record and its fsync: what is acknowledged
                # as journaled on the strength of this segment must be on the disk, not in the page cache.
                if not _synced(segment):
                    continue  # journaled again instead (the store keeps one)
                for record in spool.peek(segment):
                    try:
                        for event in record.records():
                            found[str(event["event_id"])] = str(event["hash"])
                    except (ValueError, KeyError, TypeError):
                        continue  # the replay reports it
        return found

    # --- the pipes ------------------------------------------------------------------------------

    def send(self, kind: bytes, value: Any) -> None:
        data = wire.message(kind, value)
        with self._out_lock:
            if self._out_broken:
                return
            try:
                wire.write_all(self._out, data)
            except OSError:
                self._out_broken = True  # the application is gone: this process closes at its stdin's end

    def run(self, in_fd: int) -> None:
        self.send(wire.HELLO, {"pid": os.getpid(), "spool": str(self.writer.spool.directory)})
        self._status.start()
        timeout = CLOSE_ON_EOF_SECONDS
        while True:
            try:
                got = wire.read_frame(in_fd)
            except wire.WireError as exc:
                log.error("llm-ledger: the writer process's input is broken (%s): it closes", exc)
                got = None
            if got is None:
                break
            kind, body = got
            if kind in (wire.DRAFTS, wire.URGENT_DRAFTS):
                self._receive(orjson.loads(body))
                if kind == wire.URGENT_DRAFTS:
                    self.writer.hurry()
            elif kind == wire.HURRY:
                self.writer.hurry()
            elif kind == wire.CLOSE:
                timeout = float(orjson.loads(body)["timeout"])
                break
        stats = self.writer.close(timeout)
        self._status_stop.set()
        self._status.join(1.0)
        with self._lock:
            self._advance()
            acked = self._acked
        self.send(wire.BYE, {"acked": acked, "stored": self.writer.is_stored, "stats": asdict(stats)})

    # --- drafts in ------------------------------------------------------------------------------

    def _receive(self, items: list[list[Any]]) -> None:
        drafts: list[EventDraft] = []
        with self._lock:
            for item in items:
                skipped = self._skip(item)
                if skipped is not None:
                    self._entries.append(_Entry(skipped, True))
                    continue
                drafts.append(self._draft(item))
                entry = _Entry()
                self._entries.append(entry)
                self._in_writer.append(entry)
            self._advance()
        # Past max_queue the pipe is read slower: the application's handover waits, nothing is dropped here.
        while self.writer.backlog >= self._max_queue:
            time.sleep(0.005)
        if drafts and (kept := self.writer.emit_many(drafts)) < len(drafts):
            # Dropped (counted in the writer's stats.lost, and logged): acknowledged as never sealed, so that
            # the acknowledgements of the drafts after them stay in step.
            with self._lock:
                dropped = [self._in_writer.pop() for _ in range(len(drafts) - kept)]
                for entry in dropped:
                    entry.ready = True
                self._advance()

    def _skip(self, item: list[Any]) -> str | None:
        """The journaled hash of a resent draft that this writer's journal holds already (None: not there)."""
        if not self._resend:
            return None
        self._resend -= 1
        digest = self._journaled.get(item[11])
        if not self._resend:
            self._journaled = {}  # every resent draft has come: the rest are new
        if digest is None:
            return None
        self._sealer(item, known=True, prev=None).resume_at(item[6] + 1, digest)
        return digest

    def _sealer(self, item: list[Any], *, known: bool, prev: str | None) -> StreamSealer:
        stream_id, position = item[0], item[6]
        sealer = self._sealers.get(stream_id) or self._ended.pop(stream_id, None)
        if sealer is None:
            if not known:
                log.error(
                    "llm-ledger: the writer process got event %s at position %d of stream %s, which it does not "
                    "know, without its prev_hash: its chain breaks there",
                    item[11],
                    position,
                    stream_id,
                )
            header = StreamHeader(UUID(stream_id), item[1], item[2], item[3], item[4], item[5])
            sealer = StreamSealer.resume(header, position, prev)
        elif known and sealer.next_link != (position, prev):
            sealer.resume_at(position, prev)  # the application's word: it saw every earlier hash acknowledged
        elif not known and sealer.next_link[0] != position:
            log.error(
                "llm-ledger: the writer process expected position %d of stream %s, got %d",
                sealer.next_link[0],
                stream_id,
                position,
            )
            sealer.resume_at(position, sealer.next_link[1])
        self._sealers[stream_id] = sealer
        return sealer

    def _draft(self, item: list[Any]) -> EventDraft:
        (stream_id, *_, position, event_type, occurred_at, trace_id, span_id, event_id) = item[:12]
        known, prev, values, plain, error = item[12:17]
        sealer = self._sealer(item, known=known, prev=prev)
        payload = JsonPayload(given, values, plain) if error is None else JsonPayload(refused, error)
        draft = sealer.draft(
            event_type,
            payload,
            occurred_at=datetime.fromisoformat(occurred_at),
            trace_id=trace_id,
            span_id=span_id,
            event_id=UUID(event_id),
        )
        assert draft.stream_position == position
        if len(item) > 17 and item[17] is not None:
            draft.content_key = DataKey.from_record(item[17])  # made where its payload was built: stored here
        if event_type in TERMINAL_EVENT_TYPES:
            self._ended[stream_id] = self._sealers.pop(stream_id)
            if len(self._ended) > ENDED_STREAMS_KEPT:
                self._ended.popitem(last=False)
        return draft

    # --- acknowledgements out -------------------------------------------------------------------

    def _settled(self, batch: list[EventDraft]) -> None:
        with self._lock:
            for draft in batch:
                entry = self._in_writer.popleft()
                entry.digest, entry.ready = draft.sealed_hash, True
            self._advance()

    def _advance(self) -> None:
        """Acknowledge the drafts settled at the head of the order (the lock is held)."""
        hashes: list[str | None] = []
        entries = self._entries
        while entries and entries[0].ready:
            hashes.append(entries.popleft().digest)
        if hashes:
            self._acked += len(hashes)
            self.send(wire.JOURNALED, {"h": hashes})

    def _report(self) -> None:
        last: tuple[Any, ...] | None = None
        said = 0.0
        while not self._status_stop.wait(STATUS_INTERVAL):
            with self._lock:
                acked = self._acked
            stored = self.writer.is_stored
            stats = asdict(self.writer.stats)
            now = (acked, stored, tuple(stats.values()))
            if now != last or time.monotonic() - said > 1.0:
                self.send(wire.STATUS, {"acked": acked, "stored": stored, "stats": stats})
                last, said = now, time.monotonic()


def _synced(segment: os.PathLike[str]) -> bool:
    """fsync a journal segment a dead writer left; False if it cannot be (gone, or the disk failing)."""
    try:
        fd = os.open(segment, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out_fd, in_fd = os.dup(1), os.dup(0)
    os.dup2(2, 1)  # print() and stray writes go to stderr, never into the frames
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    got = wire.read_frame(in_fd)
    if got is None or got[0] != wire.INIT:
        log.error("llm-ledger: the writer process expects its configuration first (it is started by ProcessWriter)")
        sys.exit(2)
    try:
        child = WriterChild(orjson.loads(got[1]), out_fd)
    except Exception as exc:  # noqa: BLE001 - said to the application, which takes over
        log.error("llm-ledger: the writer process cannot start: %s: %s", type(exc).__name__, exc)
        sys.exit(3)
    # Every draft received is a few dozen objects (its payload's values), freed by reference counting, none
    # in a cycle: at the default thresholds the collector walked the queued drafts over and over (profiled
    # at about a third of the time spent drafting them here). The modules loaded are frozen out of its walks.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    child.run(in_fd)


if __name__ == "__main__":
    main()
