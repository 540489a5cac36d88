"""The buffered writer: the ``EventSink`` used in production.

``emit`` only appends to an in-memory queue. Two background threads do the rest:

- the **journaling** thread takes the drafts batch by batch, seals them (their hashes are computed there,
  off the LLM call), appends each batch to the local journal (the spool, ``spool.py``) and fsyncs it. A
  batch goes when ``batch_size`` drafts wait, when it is ``flush_interval`` old, or at once when a call
  waits for it: calls that finish while one fsync runs share the next one (group commit). With
  ``durability="journal"`` (the default) a call returns to its caller only once its events are journaled
  (``durable``, awaited by the executor without blocking the event loop), so an execution that returned
  survives a SIGKILL of its process.
- the **storing** thread writes the journaled batches to the database, from memory, and frees the
  journal's segments once they are stored. When the database cannot take them (an outage), or the
  journal runs ahead of the database by more than ``max_queue`` events, it reads them back from the
  journal instead (memory stays bounded), in order, once the database answers; the segments a previous
  run left are replayed the same way at the start. Neither replay nor an outage holds up the
  journaling: new events are still batched and journaled.

When the journal cannot be written (a full or failing disk), batches stay in memory and go to the
database as before; the writer says so loudly, counts them (``stats.memory_only``), tries the journal
again every ``retry_interval``, and calls do not wait for it. Only if the database is out of reach too and
``hard_limit`` events are held in memory does it drop what it cannot hold, counted (``stats.lost``) and
logged, rather than block the application. Nothing else accepted is dropped: an event is in the database,
in the journal, or (an event that can never be stored) in ``rejected.jsonl`` at the top of the spool
directory, counted.

Processes may share the spool directory (``spool_lease.py``): the writer journals in a subdirectory it
holds for its process's lifetime, adopted from a dead process (whose segments are its previous run's) or
new. The other orphans it finds, and the segments of the flat layout of earlier versions, are replayed
after its own, then removed: a restart with fewer workers than before leaves nothing behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from llm_ledger.events import EventDraft
from llm_ledger.store import spool_lease
from llm_ledger.store.content_keys import keys_of_rows
from llm_ledger.store.dialects import DirectCopyConflict
from llm_ledger.store.errors import ConcurrencyError, InvalidEventError
from llm_ledger.store.rows import CONTENT_KEY, event_to_row
from llm_ledger.store.settings import DURABILITY_MODES
from llm_ledger.store.spool import Spool, SpoolRecord, encode_batch
from llm_ledger.store.spool_lease import Lease
from llm_ledger.store.store import EventStore
from llm_ledger.store.waiters import DurabilityWaiters

log = logging.getLogger("llm_ledger.store")

Durability = Literal["journal", "buffered"]


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters since the writer started (events, not batches).

    ``accepted``: every event emitted to the writer, those it had to drop at once included (they are in
    ``lost``), so that what this run stored is ``accepted - lost - rejected`` unless the spool of an
    earlier run was found damaged (also in ``lost``);
    ``written``: stored from memory; ``replayed``: stored from the journal on disk (this run's backlog and
    the segments a previous run left); ``spooled``: this run's events left to the journal on disk rather
    than memory (an outage, a backlog, the close deadline); ``journaled``: fsynced into the journal;
    ``memory_only``: held now without a journal copy (the journal failing); ``lost``: dropped (past the hard
    limit, or emitted after ``close``), or found missing or damaged in the spool (each logged); ``queued``:
    waiting in memory (the batch being journaled included).
    """

    accepted: int
    written: int
    spooled: int
    replayed: int
    rejected: int
    queued: int
    state: str
    journaled: int = 0
    memory_only: int = 0
    lost: int = 0
    mode: str = "thread"
    """Where the sealing and journaling run: ``thread`` (this writer's threads, in the application's
    process), ``process`` (a writer process, ``process_writer.py``), ``taken-over`` (the application took
    over from a writer process that died or stalled, and journals in its own threads)."""


DEFAULT_BATCH_SIZE = 1_000
"""Events a transaction. Measured (BENCHMARKS.md, ingest): 1,000 sustains 5-15% more than 500 (the commit and
the end of each COPY are paid half as often) and no more is gained at 2,000; a batch also goes when it is
``flush_interval`` old, so a quiet writer does not wait for it to fill."""


@dataclass(slots=True)
class _Batch:
    """A sealed batch on its way to the database: its journal record (None: not journaled) and rows. Several
    consecutive records stored as one are ``first_seq`` through ``seq``."""

    seq: int | None
    end_event: int  # the journal's event count through this record
    rows: list[dict[str, Any]]
    first_seq: int | None = None

    @property
    def start(self) -> int | None:
        return self.seq if self.first_seq is None else self.first_seq


class BufferedWriter:
    """An ``EventSink`` that never waits for the database, and whose calls wait (``durable``) only for the
    local journal's fsync, shared with the calls around them."""

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
        durability: Durability | str = "journal",
        on_settled: Callable[[list[EventDraft]], None] | None = None,
    ) -> None:
        """``on_settled`` is called from the journaling thread with each batch of drafts once it is settled
        (journaled, held in memory, or set aside), in emission order: for the writer process."""
        if batch_size < 1 or max_queue < batch_size or hard_limit < max_queue:
            raise ValueError("BufferedWriter needs 1 <= batch_size <= max_queue <= hard_limit")
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, not {durability!r}")
        self.store = store
        self.spool_dir = Path(spool_dir)
        claim = spool_lease.claim(self.spool_dir)
        self._lease = claim.own
        try:
            self.spool = Spool(claim.own.directory)
            # Other orphans (dead processes' subdirectories) and the flat layout of earlier versions: replayed
            # after this one's, then removed. Their leases are held until then: nobody else replays them.
            self._leftovers: list[tuple[Spool, Lease]] = [(Spool(lease.directory), lease) for lease in claim.orphans]
            if claim.legacy is not None:
                self._leftovers.append((Spool(claim.legacy.directory), claim.legacy))
        except BaseException:
            for lease in [claim.own, *claim.orphans, *([claim.legacy] if claim.legacy else [])]:
                lease.release()
            raise
        self._all_spools = [self.spool] + [spool for spool, _ in self._leftovers]
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.hard_limit = hard_limit
        self.retry_interval = retry_interval
        self.durability = durability
        self._on_start = on_start
        self._on_settled = on_settled
        self._hurry_through = 0  # journal at once until this many events are settled (``hurry``)
        self._cond = threading.Condition()
        self._queue: deque[EventDraft] = deque()
        self._waiters = DurabilityWaiters()
        self._settled = 0  # events taken off the queue and journaled, stored, set aside or given up on
        self._journaling = 0  # events taken off the queue and not settled yet (the batch being sealed and journaled)
        self._handed: deque[_Batch] = deque()  # journaled (or memory-only) batches for the storing thread
        self._handed_events = 0
        self._on_disk = False  # journaled batches wait on disk only: the storer reads them back first
        self._next_seq = self.spool.state.journaled_seq + 1  # the first journal record not yet stored
        self._stored_events = self.spool.state.journaled_events
        self._storing: _Batch | None = None
        self._stopping = False
        self._journaling_done = False
        self._close_deadline = float("inf")
        self._state = "starting"
        self._outage = False
        self._retry_at = 0.0
        self._journal_failing = False
        self._journal_retry_at = 0.0
        self._freeing_failed = False
        self._orphan_keys: list[dict[str, Any]] = []  # data keys whose first event was set aside (_seal)
        self._streamable = True  # until the store says it cannot copy directly (append_streaming)
        self._accepted = self._written = self._spooled = self._replayed = self._rejected = 0
        self._journaled = self._memory_only = self._lost = 0
        # Emitted but dropped at once (closed, queue full): counted in stats.accepted and stats.lost, never
        # queued, so that _accepted stays the queue's count that flush and the durability waits go by.
        self._refused = 0
        self._journaler = threading.Thread(target=self._journal_batches, name="llm-ledger-writer", daemon=True)
        self._storer = threading.Thread(target=self._store_batches, name="llm-ledger-writer-store", daemon=True)
        self._journaler.start()
        self._storer.start()

    # --- the sink -------------------------------------------------------------------------------

    def emit(self, event: EventDraft) -> None:
        with self._cond:
            if self._journaling_done:  # closed (or its thread gone): nothing would ever take it off the queue
                self._refused += 1
                self._drop(1, "the writer is closed: an event emitted now is neither journaled nor stored")
                return
            if len(self._queue) >= self.hard_limit:
                self._refused += 1
                self._drop(1, "the writer's queue is full (its journaling thread cannot keep up)")
                return
            self._queue.append(event)
            self._accepted += 1
            if len(self._queue) >= self.batch_size:
                self._cond.notify_all()

    def emit_many(self, events: list[EventDraft]) -> int:
        """``emit`` of each event, waking the journaling thread at most once (the writer process hands frames); how
        many were queued (the first ones: the others are dropped, counted, as ``emit`` drops them)."""
        with self._cond:
            room = self.hard_limit - len(self._queue)
            if self._journaling_done or room < len(events):
                kept = [] if self._journaling_done else events[: max(room, 0)]
                refused = len(events) - len(kept)
                self._refused += refused
                why = "the writer is closed: an event emitted now is neither journaled nor stored"
                self._drop(refused, why if self._journaling_done else "the writer's queue is full")
                events = kept
            self._queue.extend(events)
            self._accepted += len(events)
            if len(self._queue) >= self.batch_size:  # as emit: a wake-up per frame would journal small batches
                self._cond.notify_all()
            return len(events)

    def hurry(self) -> None:
        """Journal every event emitted so far at once, as for a call waiting in ``durable`` (the writer
        process's callers wait in their application's process, which says so with a frame)."""
        with self._cond:
            self._hurry_through = self._accepted
            self._cond.notify_all()

    def spools_taken_over(self) -> list[Spool]:
        """This writer's journal and the orphans it replays: what dead writers of this directory left."""
        return list(self._all_spools)

    @property
    def backlog(self) -> int:
        """Events queued and not yet taken for journaling (the writer process reads its pipe slower past
        ``max_queue``, so that its application's handover waits rather than this queue dropping)."""
        return len(self._queue)

    def durable(self, event: EventDraft) -> Awaitable[None] | None:
        """An awaitable done once ``event`` (emitted before) and every earlier event is journaled or
        stored, or None when there is nothing to wait for (already done, ``durability="buffered"``, or
        the journal failing)."""
        if self.durability != "journal" or self._journal_failing or self._settled >= self._accepted:
            return None
        with self._cond:
            target = self._accepted
            if self._settled >= target or self._journaling_done:
                return None
            future = self._waiters.add(target)
            self._cond.notify_all()
            return future

    @property
    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                accepted=self._accepted + self._refused,
                written=self._written,
                spooled=self._spooled,
                replayed=self._replayed,
                rejected=self._rejected,
                queued=len(self._queue) + self._journaling + self._handed_events,
                state=self._state,
                journaled=self._journaled,
                memory_only=self._memory_only,
                lost=self._lost + sum(spool.lost_events for spool in self._all_spools),
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every accepted event is journaled or stored; False on timeout, or while some are
        held in memory only (the journal failing and the database out of reach)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._settled < self._accepted or self._memory_only:
                left = deadline - time.monotonic()
                if left <= 0 or not self._journaler.is_alive():
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def wait_stored(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted event and the journal's backlog is in the database; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._is_stored():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.notify_all()
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> WriterStats:
        """Journal what is queued, write what the database takes within ``timeout``, then stop: what is
        not in the database by then stays in the journal, replayed at the next start."""
        with self._cond:
            self._stopping = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._journaler.join(timeout + 1.0)
        self._storer.join(max(self._close_deadline - time.monotonic(), 0) + 1.0)
        with self._cond:
            left = list(self._handed) + ([self._storing] if self._storing else [])
            self._handed.clear()
            self._handed_events = 0
        for batch in left:  # the storer did not get to them (or hangs in the database): keep them on disk
            self._leave_on_disk(batch)
        if not self._storer.is_alive() and self._next_seq > self.spool.state.journaled_seq:
            self._free(self.spool.release_through, self._next_seq - 1, self._stored_events, everything=True)
        self.spool.close()
        self._lease.release()  # the next writer to start may adopt this subdirectory (and replay what is left)
        with self._cond:
            leftovers, self._leftovers = self._leftovers, []
        for spool, lease in leftovers:  # not replayed in time: left to the next start
            spool.close()
            lease.release()
        with self._cond:
            self._waiters.release_all()
        return self.stats

    @property
    def is_stored(self) -> bool:
        """Whether every accepted event and the journal's backlog is in the database (or set aside)."""
        with self._cond:
            return self._is_stored()

    def _is_stored(self) -> bool:
        return (
            self._settled >= self._accepted
            and not self._handed
            and self._storing is None
            and not self._on_disk
            and not self.spool.previous
            and not self._leftovers
        )

    def _drop(self, events: int, why: str) -> None:
        """Count events the writer cannot keep (it holds the lock); the first of an episode is logged."""
        if not self._lost:
            log.error(
                "llm-ledger: %s: %d event(s) dropped (stats.lost counts them)",
                why,
                events,
            )
        self._lost += events

    # --- the journaling thread --------------------------------------------------------------------

    def _journal_batches(self) -> None:
        try:
            while (batch := self._take()) is not None:
                rows, records = self._seal(batch)
                self._journal(batch, rows, records)
        finally:
            with self._cond:
                self._journaling_done = True
                self._waiters.release_all()  # no call waits for a thread that has stopped
                self._cond.notify_all()

    def _take(self) -> list[EventDraft] | None:
        """The next batch: at ``batch_size``, at ``flush_interval``, or at once for a waiting call; None
        once stopping with nothing left."""
        with self._cond:
            if (
                not self._stopping
                and len(self._queue) < self.batch_size
                and not self._waiters
                and self._settled >= self._hurry_through
            ):
                self._cond.wait(self.flush_interval)
            if not self._queue:
                if self._stopping:
                    self._journaling_done = True  # under the lock that found the queue empty: a later emit drops
                    return None
                return []
            self._journaling = min(self.batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(self._journaling)]

    def _seal(self, batch: list[EventDraft]) -> tuple[list[dict[str, Any]], list[bytes]]:
        """The rows of a batch and their journal records (each draft's canonical JSON with its hash);
        a draft that cannot be stored is set aside."""
        rows: list[dict[str, Any]] = []
        canonicals: list[bytes] = []
        for index, draft in enumerate(batch):
            try:
                row = event_to_row(draft, index)
            except Exception as exc:  # noqa: BLE001 - one unstorable event must not stop the others
                self._reject(draft, exc)
                if draft.content_key is not None:
                    # Later events of its session use the key: another row of this batch carries it instead.
                    self._orphan_keys.append(draft.content_key.record())
                continue
            rows.append(row)
            canonicals.append(draft.stored_form()[1])
        # Each orphan key on a row of this batch that carries none (same journal record, same transaction);
        # a key left over when every row carries one, or when the whole batch was set aside, goes with the
        # next batch's rows. Either way it is journaled no later than any ciphertext under it: such a
        # ciphertext is sealed after its key's first event, so in this batch or a later one.
        for row in rows:
            if not self._orphan_keys:
                break
            if CONTENT_KEY not in row:
                row[CONTENT_KEY] = self._orphan_keys.pop()
        records = []
        for row, canonical in zip(rows, canonicals, strict=True):
            key = row.get(CONTENT_KEY)
            # The data key in the record of its first event: a replayed journal stores it with that event.
            head = b'{"content_key":' + orjson.dumps(key) + b',"hash":"' if key is not None else b'{"hash":"'
            records.append(head + row["hash"].encode() + b'",' + canonical[1:])
        return rows, records

    def _journal(self, batch: list[EventDraft], rows: list[dict[str, Any]], records: list[bytes]) -> None:
        seq = self._append_to_journal(records) if rows else None
        with self._cond:
            if rows:
                self._hand_over(_Batch(seq, self.spool.state.journaled_events, rows))
            self._settled += len(batch)
            self._journaling = 0
            self._waiters.release_through(self._settled)
            self._cond.notify_all()
        if self._on_settled is not None:
            self._on_settled(batch)

    def _append_to_journal(self, records: list[bytes]) -> int | None:
        if self._journal_failing and time.monotonic() < self._journal_retry_at:
            return None
        try:
            seq = self.spool.append(encode_batch(records), len(records))
        except OSError as exc:
            self._journal_retry_at = time.monotonic() + self.retry_interval
            if not self._journal_failing:
                self._journal_failing = True
                log.error(
                    "llm-ledger: the journal in %s cannot be written (%s): events are kept in memory only "
                    "(at most %d; stats.memory_only counts them) and calls no longer wait for them, until it can",
                    self.spool.directory,
                    exc,
                    self.hard_limit,
                )
            return None
        with self._cond:
            self._journaled += len(records)
            if self._journal_failing:
                self._journal_failing = False
                log.warning("llm-ledger: the journal in %s can be written again", self.spool.directory)
        return seq

    def _hand_over(self, batch: _Batch) -> None:
        """Give a batch to the storing thread (the lock is held): in memory, or on disk only when the
        storer is behind or the database is out (a journaled batch); dropped, counted, past the hard limit
        (a memory-only one)."""
        size = len(batch.rows)
        if batch.seq is None:
            if self._handed_events + len(self._queue) + size > self.hard_limit:
                self._drop(
                    size,
                    f"{self._handed_events} events wait in memory and the journal and the database cannot take events",
                )
                return
            self._memory_only += size
        elif self._on_disk or self._state in ("spooling", "replaying") or self._handed_events + size > self.max_queue:
            self._on_disk = True
            self._spooled += size
            return
        self._handed.append(batch)
        self._handed_events += size

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
        self._set_aside(entry)

    def _set_aside(self, entry: dict[str, Any]) -> None:
        try:
            with open(self.spool_dir / "rejected.jsonl", "ab") as out:
                out.write(orjson.dumps(entry) + b"\n")
        except OSError as exc:
            log.error("llm-ledger: could not write rejected.jsonl (%s): %s", exc, entry)

    # --- the storing thread ---------------------------------------------------------------------

    def _set_state(self, state: str, reason: str = "") -> None:
        if state == "spooling":
            self._retry_at = time.monotonic() + self.retry_interval
        if state == self._state:
            return
        self._state = state
        if state == "spooling" and not self._outage:
            self._outage = True
            # Every pooled connection is suspect after a failure; reconnect from scratch when it is back.
            self.store.engine.dispose()
            log.warning(
                "llm-ledger: the event store cannot be written (%s); events go to the journal in %s until it can",
                reason,
                self.spool.directory,
            )
        elif state == "writing" and self._outage:
            self._outage = False
            log.warning("llm-ledger: the event store is back; the journal was replayed (%d events)", self._replayed)

    def _prepare(self) -> bool:
        if self._on_start is None:
            return True
        try:
            self._on_start()
        except Exception as exc:  # noqa: BLE001 - a failed preparation is an outage like any other
            self._set_state("spooling", f"{type(exc).__name__}: {exc}")
            return False
        self._on_start = None
        return True

    def _is_down(self) -> bool:
        """Whether the database is (still) out: probed every ``retry_interval`` during an outage."""
        if self._state != "spooling":
            return False
        if time.monotonic() < self._retry_at:
            return True
        if not self._database_answers() or not self._prepare():
            self._retry_at = time.monotonic() + self.retry_interval
            return True
        self._state = "replaying"  # new batches stay on disk until the replay has caught up
        return False

    def _store_batches(self) -> None:
        self._prepare()
        while not self._past_deadline():
            if self._is_down():
                self._shed_memory()
                with self._cond:
                    if self._stopping and self._journaling_done:
                        return  # what is left stays in the journal
                    self._cond.wait(max(self._retry_at - time.monotonic(), 0.01))
                continue
            if self.spool.previous:
                self._replay_previous(self.spool)
                continue
            if self._leftovers:
                self._replay_leftover()
                continue
            if self._on_disk:
                self._replay_own()
                continue
            batch = self._next_batch()
            if batch is None:
                return
            if batch is not _NOTHING:
                self._store(batch)

    def _past_deadline(self) -> bool:
        return self._stopping and time.monotonic() > self._close_deadline

    def _next_batch(self) -> _Batch | None:
        """The next batch in memory (``_NOTHING`` if none yet); None once everything is done at close."""
        with self._cond:
            if not self._handed:
                if self._stopping and self._journaling_done:
                    return None
                self._cond.wait(self.retry_interval if self._state == "spooling" else 0.5)
                if not self._handed:
                    return _NOTHING
            first = self._handed.popleft()
            self._handed_events -= len(first.rows)
            batch = self._merged(first)
            self._storing = batch
            return batch

    def _merged(self, batch: _Batch) -> _Batch:
        """``batch`` and the consecutive batches after it in memory, up to ``batch_size`` rows, as one (the
        lock is held). When calls wait for the journal, each batch is the few events journaled while the last
        fsync ran: stored a transaction each, the storing fell behind the journal under load, and once behind
        stayed behind (replayed from disk, record by record)."""
        if not self._handed or (batch.seq is not None and batch.seq != self._next_seq):
            return batch  # one stored from the journal meanwhile, or after a gap: _store decides alone
        rows, last = list(batch.rows), batch
        while self._handed:
            following = self._handed[0]
            if (following.seq is None) != (last.seq is None) or len(rows) + len(following.rows) > self.batch_size:
                break
            if last.seq is not None and following.seq != last.seq + 1:
                break
            rows.extend(self._handed.popleft().rows)
            self._handed_events -= len(following.rows)
            last = following
        if last is batch:
            return batch
        return _Batch(last.seq, last.end_event, rows, first_seq=batch.seq)

    def _store(self, batch: _Batch) -> None:
        if batch.seq is not None and batch.seq < self._next_seq:
            with self._cond:
                self._spooled += len(batch.rows)  # stored from the journal: counted as replayed
            self._stored(batch, 0)
            return
        if batch.start is not None and batch.start > self._next_seq:
            # Records before it are on disk only (dropped from memory when the storer was behind).
            with self._cond:
                self._handed.appendleft(batch)
                self._handed_events += len(batch.rows)
                self._storing = None
                self._on_disk = True
            return
        self.store.maintain_partitions()  # the coming months' partitions: at start, then daily; never raises
        try:
            self._append(batch.rows)
        except Exception as exc:  # noqa: BLE001 - any failure to write is an outage for the writer
            self._set_state("spooling", f"{type(exc).__name__}: {exc}")
            with self._cond:
                self._storing = None
                if batch.seq is None:
                    self._handed.appendleft(batch)  # memory only: keep it for when the database is back
                    self._handed_events += len(batch.rows)
                else:
                    self._on_disk, self._spooled = True, self._spooled + len(batch.rows)
            return
        self._set_state("writing")
        self._stored(batch, len(batch.rows))

    def _stored(self, batch: _Batch, written: int) -> None:
        advanced = False
        with self._cond:
            self._written += written
            self._storing = None
            if batch.seq is None:
                self._memory_only -= len(batch.rows)
            elif batch.seq >= self._next_seq:  # (a batch stored from the journal already is behind it)
                self._next_seq, self._stored_events = batch.seq + 1, batch.end_event
                advanced = True
            self._cond.notify_all()
        if advanced:
            self._free(self.spool.release_through, self._next_seq - 1, self._stored_events)

    def _free(self, release: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Free journal segments whose events are stored. Failing to (the directory removed under the
        writer, a disk gone read-only) is said once and is not an outage: the events are in the database,
        and a segment left behind is replayed idempotently at the next start. It must not stop the storing."""
        try:
            release(*args, **kwargs)
        except OSError as exc:
            if not self._freeing_failed:
                self._freeing_failed = True
                log.error(
                    "llm-ledger: the writer cannot free stored segments of the journal in %s (%s); it goes on "
                    "storing, and what it leaves there is skipped when replayed",
                    self.spool.directory,
                    exc,
                )

    def _database_answers(self) -> bool:
        try:
            self.store.ping()
        except Exception:  # noqa: BLE001 - still unreachable
            return False
        return True

    def _shed_memory(self) -> None:
        """During an outage: journaled batches need not stay in memory (the journal has them); memory-only
        ones are journaled now if the journal can take them."""
        with self._cond:
            kept: deque[_Batch] = deque()
            for batch in self._handed:
                if batch.seq is not None:
                    self._on_disk, self._spooled = True, self._spooled + len(batch.rows)
                else:
                    kept.append(batch)
            self._handed = kept
            self._handed_events = sum(len(batch.rows) for batch in kept)
        for batch in list(kept):
            if self._journal_failing and time.monotonic() < self._journal_retry_at:
                return
            if self._leave_on_disk(batch):
                with self._cond:
                    kept.remove(batch)
                    self._handed_events -= len(batch.rows)

    def _leave_on_disk(self, batch: _Batch) -> bool:
        """Make sure a batch not stored is in the journal (for close and outages); False if it cannot be."""
        if batch.seq is not None:
            with self._cond:
                self._spooled += len(batch.rows)
            return True
        records = [orjson.dumps(_jsonable(row)) for row in batch.rows]
        if self._append_to_journal(records) is None:
            with self._cond:
                if self._stopping:
                    self._drop(
                        len(batch.rows), "the writer is closing and the journal and the database cannot take events"
                    )
                    self._memory_only -= len(batch.rows)
            return False
        with self._cond:
            self._memory_only -= len(batch.rows)
            self._spooled += len(batch.rows)
            self._on_disk = True
        return True

    def _replay_previous(self, spool: Spool) -> bool:
        """Store the segments a previous run left in ``spool``, oldest first, reporting what they lost;
        whether all of them are stored."""
        tracker = spool.tracker()
        try:
            while spool.previous:
                segment = spool.previous[0]
                last: SpoolRecord | None = None
                for record in spool.read(segment):
                    if self._past_deadline():
                        return False  # closing: the rest stays in the journal for the next start
                    if tracker.is_new(record):
                        self._replay(record.records())
                    last = record
                self._free(spool.remove_previous, segment, last.seq if last else None, last.end_event if last else 0)
                spool.previous.pop(0)
        except Exception as exc:  # noqa: BLE001 - unreachable: replayed again (idempotently) when it is back
            self._set_state("spooling", f"{type(exc).__name__}: {exc}")
            return False
        start = spool.started
        tracker.finish(start.journaled_seq, start.journaled_events)
        self._set_state("writing")
        return True

    def _replay_leftover(self) -> None:
        """Replay the next orphan (or the flat layout), then remove it: its process is gone for good."""
        with self._cond:
            if not self._leftovers:
                return  # closed meanwhile: their leases are released, left to the next start
            spool, lease = self._leftovers[0]
        if not self._replay_previous(spool):
            return
        spool.settle()  # what it lost is reported once: kept evidence does not report it at every start
        spool.close()
        if lease.directory == self.spool_dir:
            self._free(spool_lease.retire_legacy, lease)
        else:
            self._free(lease.remove)
        with self._cond:
            if self._leftovers and self._leftovers[0][1] is lease:
                self._leftovers.pop(0)

    def _replay_own(self) -> None:
        """Store this run's journaled batches that are on disk only, in order, then go back to memory."""
        with self._cond:
            self._on_disk = False  # batches journaled from now on are handed in memory again
            through, through_events = self.spool.state.journaled_seq, self.spool.state.journaled_events
        try:
            for segment, size in self.spool.own_segments():
                for record in self.spool.read(segment, size):
                    assert record.seq is not None
                    if record.seq < self._next_seq or record.seq > through:
                        continue
                    if self._past_deadline():
                        with self._cond:
                            self._on_disk = True  # closing: the rest stays in the journal for the next start
                        return
                    self._replay(record.records())
                    with self._cond:
                        self._next_seq, self._stored_events = record.seq + 1, record.end_event
                    self._free(self.spool.release_through, record.seq, record.end_event)
        except Exception as exc:  # noqa: BLE001 - unreachable again: keep it on disk
            with self._cond:
                self._on_disk = True
            self._set_state("spooling", f"{type(exc).__name__}: {exc}")
            return
        if self._next_seq <= through:
            # A record this run journaled is no longer on disk (a segment deleted or damaged under it).
            self.spool.report_missing(
                through - self._next_seq + 1, through_events - self._stored_events, "of this run's journal"
            )
            with self._cond:
                self._next_seq, self._stored_events = through + 1, through_events
        self._set_state("writing")

    def _replay(self, records: list[dict[str, Any]]) -> None:
        rows = []
        for index, record in enumerate(records):
            try:
                rows.append(event_to_row(record, index))
            except InvalidEventError as exc:
                self._reject_record(record, exc)
        self._append(rows)
        with self._cond:
            self._replayed += len(rows)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            try:
                # A batch carrying data keys goes through append_rows, which stores them in its transaction.
                streamable = self._streamable and not keys_of_rows(rows)
                stored = self.store.append_streaming(iter(rows)) if streamable else None
            except DirectCopyConflict:
                self.store.append_rows(rows, direct=False)  # rolled back: the staging path skips what is stored
                return
            if stored is None:
                if streamable:
                    self._streamable = False  # this store cannot copy directly: append_rows from now on
                self.store.append_rows(rows)
        except ConcurrencyError:
            # Some event's position is taken by a different event: store the others one by one and
            # set the conflicting ones aside rather than lose the whole batch.
            for row in rows:
                try:
                    self.store.append_rows([row])
                except ConcurrencyError as exc:
                    self._reject_record(row, exc)

    def _reject_record(self, row: dict[str, Any], exc: Exception) -> None:
        """Set a stored row or a journal record aside in rejected.jsonl, without its data key's secret: the
        key is stored on its own at once (later events of its session need it). A key that cannot be stored
        now raises, so that the batch stays journaled and is tried again."""
        row = dict(row)
        key = row.pop(CONTENT_KEY, None)
        entry: dict[str, Any] = {"error": str(exc), "record": _jsonable(row)}
        if isinstance(key, dict):
            self.store.store_content_keys([key])
            entry["content_key_id"] = key.get("key_id")  # stored in the key table, not here
        with self._cond:
            self._rejected += 1
        log.error("llm-ledger: event %s cannot be stored and was set aside: %s", row.get("event_id"), exc)
        self._set_aside(entry)


_NOTHING = _Batch(None, 0, [])
"""What ``_next_batch`` returns when no batch came in time (the storer checks its state again)."""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as its stored JSON record (the spool keeps records, replayed through the same checks)."""
    record = dict(row)
    occurred_at = record.get("occurred_at")
    if occurred_at is not None and not isinstance(occurred_at, str):
        record["occurred_at"] = occurred_at.replace(tzinfo=None).isoformat() + "Z"
    return record
