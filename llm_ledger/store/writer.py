"""The buffered writer: the ``EventSink`` used in production.

``emit`` only appends to an in-memory queue; a background thread takes the drafts batch by batch (by size
or age), seals them (their hashes are computed there, off the LLM call) and stores them: in the database
or, when the database cannot take them, in the local spool (fsynced), replayed in order when the database
is back and at the next start.

On PostgreSQL (the direct COPY as the ingest role) a batch is sealed while it is copied: the transaction
and the COPY are opened first and each draft is sealed and written to the COPY in turn; psycopg sends
the data as it accumulates, so the server stores the first rows of the batch while the thread seals the
next, one thread and no hand-over between threads. Elsewhere (SQLite, the staging path, the spool) a
second thread stores batch N while batch N+1 is sealed (psycopg releases the GIL while the server works).
Either way batches are stored in the order they were taken. Nothing accepted is dropped: a batch is
either in the database, in the spool, or (an event that can never be stored) in the spool's
``rejected.jsonl``, counted and reported.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from llm_ledger.events import EventDraft
from llm_ledger.store.dialects import DirectCopyConflict
from llm_ledger.store.errors import ConcurrencyError, InvalidEventError
from llm_ledger.store.rows import event_to_row
from llm_ledger.store.spool import Spool
from llm_ledger.store.store import EventStore

log = logging.getLogger("llm_ledger.store")

_YIELD_EVERY = 16
"""Drafts sealed between two offers of the GIL to the storing thread (about 0.5 ms of sealing)."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters since the writer started (events, not batches)."""

    accepted: int
    written: int
    spooled: int
    replayed: int
    rejected: int
    queued: int
    state: str


DEFAULT_BATCH_SIZE = 1_000
"""Events a transaction. Measured (BENCHMARKS.md, ingest): 1,000 sustains 5-15% more than 500 (the commit and
the end of each COPY are paid half as often) and no more is gained at 2,000; a batch also goes when it is
``flush_interval`` old, so a quiet writer does not wait for it to fill."""


class BufferedWriter:
    """An ``EventSink`` that never waits for the database.

    ``max_queue`` events may wait in memory; beyond that, batches go straight to the spool instead of
    the database (the database is slower than the callers), so memory stays bounded. Only if even the
    spool cannot keep up and ``hard_limit`` events are waiting does ``emit`` wait for the writer: a
    safety limit for a process producing events faster than a local disk absorbs them.
    """

    def __init__(
        self,
        store: EventStore,
        spool_dir: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        hard_limit: int = 100_000,
        retry_interval: float = 1.0,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        if batch_size < 1 or max_queue < batch_size or hard_limit < max_queue:
            raise ValueError("BufferedWriter needs 1 <= batch_size <= max_queue <= hard_limit")
        self.store = store
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.hard_limit = hard_limit
        self.retry_interval = retry_interval
        self._on_start = on_start
        self._queue: deque[EventDraft] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0  # batches taken from the queue and not yet in the database or the spool
        self._stopping = False
        self._close_deadline = float("inf")
        self._spool_pending = True  # until the spool is read at start: it may hold a previous run's batches
        self._state = "starting"
        self._last_probe = 0.0
        self._streamable = True  # until the store says it cannot copy while sealing (then: two threads)
        self._accepted = self._written = self._spooled = self._replayed = self._rejected = 0
        # The storing stage: one sealed batch may wait while another is stored (None stops the thread).
        self._sealed: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=1)
        self._store_failure: BaseException | None = None
        self._storer = threading.Thread(target=self._store_batches, name="llm-ledger-writer-store", daemon=True)
        self._storer.start()
        self._thread = threading.Thread(target=self._run, name="llm-ledger-writer", daemon=True)
        self._thread.start()

    # --- the sink -------------------------------------------------------------------------------

    def emit(self, event: EventDraft) -> None:
        with self._cond:
            while len(self._queue) >= self.hard_limit and not self._stopping:
                self._cond.wait(0.05)
            self._queue.append(event)
            self._accepted += 1
            if len(self._queue) >= self.batch_size:
                self._cond.notify_all()

    @property
    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                accepted=self._accepted,
                written=self._written,
                spooled=self._spooled,
                replayed=self._replayed,
                rejected=self._rejected,
                queued=len(self._queue),
                state=self._state,
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every accepted event is in the database or the spool; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while (self._queue or self._in_flight) and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> WriterStats:
        """Write what is left, or spool it, within ``timeout``; then stop the thread."""
        with self._cond:
            self._stopping = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 1.0)
        self.spool.close()
        return self.stats

    # --- the background thread ------------------------------------------------------------------

    def _set_state(self, state: str, reason: str = "") -> None:
        if state == self._state:
            return
        previous, self._state = self._state, state
        if state == "spooling":
            # Every pooled connection is suspect after a failure; reconnect from scratch when it is back.
            self.store.engine.dispose()
            log.warning(
                "llm-ledger: the event store cannot be written (%s); events go to the spool in %s until it can",
                reason,
                self.spool.directory,
            )
        elif state == "writing" and previous == "spooling":
            log.warning("llm-ledger: the event store is back; the spool was replayed (%d events)", self._replayed)

    def _take(self) -> list[EventDraft]:
        with self._cond:
            if not self._stopping and len(self._queue) < self.batch_size:
                self._cond.wait(self.flush_interval)
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self._in_flight += bool(batch)
            if len(self._queue) < self.hard_limit:
                self._cond.notify_all()
            return batch

    def _run(self) -> None:
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception as exc:  # noqa: BLE001 - a failed preparation is an outage like any other
                self._set_state("spooling", f"{type(exc).__name__}: {exc}")
        self._try_replay(force=True)
        try:
            self._seal_batches()
        finally:
            self._sealed.put(None)

    def _seal_batches(self) -> None:
        while True:
            batch = self._take()
            if batch and self._streamable and self._state != "spooling" and not self._spill():
                self._wait_stored()  # an earlier batch handed over is stored first
                try:
                    self._stream(batch)
                finally:
                    self._batch_done()
            elif batch:
                self._hand_over(self._rows(batch))
            elif self._stopping:
                self._wait_stored()
                # Last chance for the spool before exit (what stays there is replayed at the next start).
                if self._spool_pending and time.monotonic() < self._close_deadline:
                    self._try_replay(force=True)
                return
            # The spool holds batches from an outage, or spilled when the queue ran long: replay them
            # once the database answers (probed every retry_interval) and the queue is short again.
            if self._spool_pending and (self._state == "spooling" or len(self._queue) < self.batch_size):
                self._wait_stored()  # the batches handed over come first, and the replay shares the engine
                self._try_replay(force=self._state != "spooling")

    def _hand_over(self, rows: list[dict[str, Any]]) -> None:
        """Queue a sealed batch for the storing thread (waits while it still holds an earlier one)."""
        self._raise_store_failure()
        if rows:
            self._sealed.put(rows)
        else:
            self._batch_done()

    def _wait_stored(self) -> None:
        self._sealed.join()
        self._raise_store_failure()

    def _raise_store_failure(self) -> None:
        # A batch that neither the database nor the spool took (the disk failed): stop, as the writer did
        # when it had one thread, rather than keep accepting what cannot be kept.
        if self._store_failure is not None:
            raise self._store_failure

    def _batch_done(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _store_batches(self) -> None:
        while (rows := self._sealed.get()) is not None:
            try:
                if self._store_failure is None:
                    self._write(rows)
            except BaseException as exc:  # noqa: BLE001 - raised again in the sealing thread
                self._store_failure = exc
            finally:
                self._batch_done()
                self._sealed.task_done()
        self._sealed.task_done()

    def _rows(self, batch: list[EventDraft]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        bad: list[tuple[EventDraft, Exception]] = []
        for index, _ in enumerate(_sealed_rows(batch, rows, bad)):
            if not index % _YIELD_EVERY:
                # Let the storing thread take the GIL: after each round trip it waits for it, and without
                # this it would wait for the interpreter's switch interval (5 ms) several times a batch
                # (measured on a loaded machine: 9,100-10,200 -> 10,700-13,900 events/s).
                time.sleep(0)
        for draft, error in bad:
            self._reject(draft, error)
        return rows

    def _stream(self, batch: list[EventDraft]) -> None:
        """Seal a batch while the database copies it (in this thread); as ``_write`` does, a conflict
        takes the staging path and an outage sends the batch, sealed, to the spool."""
        rows: list[dict[str, Any]] = []
        bad: list[tuple[EventDraft, Exception]] = []
        produced = _sealed_rows(batch, rows, bad)
        stored: int | None = None
        direct = True
        try:
            stored = self.store.append_streaming(produced)
        except DirectCopyConflict:
            direct = False  # rolled back: the staging path skips what is already stored
        except Exception as exc:  # noqa: BLE001 - any failure to write is an outage for the writer
            self._set_state("spooling", f"{type(exc).__name__}: {exc}")
        else:
            self._streamable = stored is not None  # if not, this store cannot: seal, then store, from now on
        for _ in produced:  # what the COPY did not take: the batch is sealed whole whatever happened
            pass
        for draft, error in bad:
            self._reject(draft, error)
        if stored is not None:
            with self._cond:
                self._written += stored
            self._set_state("writing")
            return
        self._write(rows, direct=direct)

    def _reject(self, draft: EventDraft, exc: Exception) -> None:
        with self._cond:
            self._rejected += 1
            first = self._rejected == 1
        if first:
            log.error("llm-ledger: an event cannot be stored and was set aside in rejected.jsonl: %s", exc)
        entry = {
            "error": f"{type(exc).__name__}: {exc}",
            "stream_id": str(draft.stream_id),
            "stream_position": draft.stream_position,
            "event_type": draft.event_type,
        }
        with open(self.spool.directory / "rejected.jsonl", "ab") as out:
            out.write(orjson.dumps(entry) + b"\n")

    def _spill(self) -> bool:
        # Past the close deadline, or with more waiting than memory should hold, the spool is faster.
        return len(self._queue) > self.max_queue or (self._stopping and time.monotonic() > self._close_deadline)

    def _write(self, rows: list[dict[str, Any]], *, direct: bool = True) -> None:
        if self._state != "spooling" and not self._spill():
            try:
                self._append(rows, direct=direct)
                with self._cond:
                    self._written += len(rows)
                self._set_state("writing")
                return
            except Exception as exc:  # noqa: BLE001 - any failure to write is an outage for the writer
                self._set_state("spooling", f"{type(exc).__name__}: {exc}")
        self.spool.append([_jsonable(row) for row in rows])
        self._spool_pending = True
        with self._cond:
            self._spooled += len(rows)

    def _append(self, rows: list[dict[str, Any]], *, direct: bool = True) -> None:
        try:
            self.store.append_rows(rows, direct=direct)
        except ConcurrencyError:
            # Some event's position is taken by a different event: store the others one by one and
            # set the conflicting ones aside rather than lose the whole batch.
            for row in rows:
                try:
                    self.store.append_rows([row])
                except ConcurrencyError as exc:
                    self._reject_record(row, exc)

    def _reject_record(self, row: dict[str, Any], exc: Exception) -> None:
        with self._cond:
            self._rejected += 1
        log.error("llm-ledger: event %s conflicts with a stored event and was set aside: %s", row["event_id"], exc)
        with open(self.spool.directory / "rejected.jsonl", "ab") as out:
            out.write(orjson.dumps({"error": str(exc), "record": _jsonable(row)}) + b"\n")

    def _try_replay(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_probe < self.retry_interval:
            return
        self._last_probe = now
        if self._state == "spooling":
            # A cheap probe first: reading the spool (and closing its current segment) only pays off
            # once the database answers.
            try:
                self.store.ping()
            except Exception:  # noqa: BLE001 - still unreachable
                return
        segments = self.spool.pending_segments()
        try:
            for segment in segments:
                for records in self.spool.read(segment):
                    rows = []
                    for index, record in enumerate(records):
                        try:
                            rows.append(event_to_row(record, index))
                        except InvalidEventError as exc:
                            self._reject_record(record, exc)
                    self._append(rows)
                    with self._cond:
                        self._replayed += len(rows)
                self.spool.remove(segment)
        except Exception as exc:  # noqa: BLE001 - still unreachable: keep spooling
            self._set_state("spooling", f"{type(exc).__name__}: {exc}")
            return
        self._spool_pending = False
        self._set_state("writing")


def _sealed_rows(
    batch: list[EventDraft], rows: list[dict[str, Any]], bad: list[tuple[EventDraft, Exception]]
) -> Iterator[dict[str, Any]]:
    """The rows of a batch, sealing each draft when it is asked for; each row is also kept in ``rows``
    and each draft that cannot be stored in ``bad`` (this never raises for one event)."""
    for index, draft in enumerate(batch):
        try:
            row = event_to_row(draft, index)
        except Exception as exc:  # noqa: BLE001 - one unstorable event must not stop the others
            bad.append((draft, exc))
            continue
        rows.append(row)
        yield row


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as its stored JSON record (the spool keeps records, replayed through the same checks)."""
    record = dict(row)
    occurred_at = record["occurred_at"]
    if not isinstance(occurred_at, str):
        record["occurred_at"] = occurred_at.replace(tzinfo=None).isoformat() + "Z"
    return record
