"""The local journal ("spool"): every batch the writer takes, on disk until the database has it.

A spool is a directory of segment files ``spool-<segment>.log`` and one state file, ``spool.state``. It has
one writer: each writer process journals in a subdirectory ``writer-<unique>`` of the configured spool
directory that it holds with a lock (``spool_lease.py``); the numbering, state and set-aside files below are
that subdirectory's. Earlier versions wrote a spool directly in the configured directory: it is read as one
more spool, once.

Each record of a segment is one batch, appended and fsynced before the batch counts as journaled::

    b"LLS2" | seq (u64) | first_event (u64) | count (u32) | length (u32) | crc32 (u32) | body

``seq`` numbers the records of the spool's whole life (it never restarts: the state file keeps the last
one), ``first_event`` is how many events the spool had journaled before this record and ``count`` how many
it holds, so that a missing record is counted in events, not only noticed. ``crc32`` covers the header's
first 28 bytes and the body. The body is a JSON array of the batch's event records (each with its hash),
replayed through the same checks as any event given to the store.

``spool.state`` (48 bytes, checksummed) holds the last record journaled (``seq`` and event count, written
after each fsync of a segment, without an fsync of its own: it may lag after a power cut, never lead), the
last record stored in the database whose segment was removed (fsynced before the segment is unlinked),
and the last segment number used. On reading, the spool checks what it finds against it:

- a damaged record (a flipped bit, a torn write) is set aside alone: the reader scans forward for the next
  magic with a valid checksum and replays from there; the damaged bytes go to a new
  ``spool-<segment>.at-<offset>[.<n>].torn`` file (never overwritten);
- a record missing (a segment truncated at a record boundary or to zero bytes, a segment deleted) shows as
  a gap in ``seq``, or as records the state file says were journaled and no segment holds: reported with
  the number of batches and events lost.

Segment numbers continue after the highest one in the directory, set-aside files included, and after the
one in the state file, so evidence is never overwritten. Replay is in ``seq`` order and idempotent (the
store skips event ids it already has), so a record replayed twice (a crash between the database's commit
and the segment's removal) stores nothing twice. Records of the first format (``b"LLS1" | length | crc32 |
body``, no sequence) are still read.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("llm_ledger.store")

_MAGIC = b"LLS2"
_HEADER = struct.Struct(">4sQQIII")
_CHECKED = _HEADER.size - 4  # the header bytes the checksum covers (all but itself)
_MAGIC_V1 = b"LLS1"
_HEADER_V1 = struct.Struct(">4sII")
_STATE = struct.Struct(">4sQQQQQI")
_STATE_MAGIC = b"LLST"
STATE_FILE = "spool.state"
_NUMBERED = re.compile(r"spool-(\d+)")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

SEGMENT_BYTES = 16 << 20
"""A segment is closed and a new one started past this size, so that stored segments free disk."""

RELEASE_BYTES = 1 << 20
"""The segment being written is closed and removed once everything in it is stored and it is this big
(a quiet writer keeps one small segment; a busy one frees its disk every megabyte)."""

MAX_RECORD_BYTES = 1 << 30
"""A header announcing a longer body is damage, not a record."""


class SpoolRecord:
    """One journaled batch: its sequence number (None for a record of the first format), how many events
    the spool had journaled before it and how many it holds; its event records are parsed when asked for
    (a replay skips the records already stored without parsing them)."""

    __slots__ = ("_body", "_records", "count", "first_event", "seq")

    def __init__(self, seq: int | None, first_event: int, count: int, body: bytes) -> None:
        self.seq = seq
        self.first_event = first_event
        self.count = count
        self._body = body
        self._records: list[dict[str, Any]] | None = None

    @property
    def end_event(self) -> int:
        return self.first_event + self.count

    def records(self) -> list[dict[str, Any]]:
        """The batch's event records (its checksum held, so its body is the JSON the writer wrote)."""
        if self._records is None:
            records = orjson.loads(self._body)
            if not isinstance(records, list):
                raise ValueError(f"spool record {self.seq} is not a JSON array")
            self._records = records
        return self._records


@dataclass(slots=True)
class SpoolState:
    """What the state file holds (see the module's docstring)."""

    journaled_seq: int = 0
    journaled_events: int = 0
    stored_seq: int = 0
    stored_events: int = 0
    last_segment: int = 0

    def pack(self) -> bytes:
        fields = (self.journaled_seq, self.journaled_events, self.stored_seq, self.stored_events, self.last_segment)
        head = _STATE.pack(_STATE_MAGIC, *fields, 0)[:-4]
        return head + struct.pack(">I", zlib.crc32(head))

    @classmethod
    def unpack(cls, data: bytes) -> SpoolState | None:
        if len(data) != _STATE.size:
            return None
        magic, *fields, checksum = _STATE.unpack(data)
        if magic != _STATE_MAGIC or zlib.crc32(data[:-4]) != checksum:
            return None
        return cls(*fields)


class LossTracker:
    """Follows the sequence numbers of records as they are replayed and reports the ones missing."""

    def __init__(self, spool: Spool, next_seq: int | None, next_event: int) -> None:
        self._spool = spool
        self.next_seq = next_seq  # None: start from the first record seen (no state to trust)
        self.next_event = next_event

    def is_new(self, record: SpoolRecord) -> bool:
        """Whether a record is to be stored (not one already stored), reporting any gap before it."""
        if record.seq is None:
            return True
        if self.next_seq is not None and record.seq < self.next_seq:
            return False
        if self.next_seq is not None and record.seq > self.next_seq:
            self._spool.report_missing(
                record.seq - self.next_seq, record.first_event - self.next_event, f"before record {record.seq}"
            )
        self.next_seq, self.next_event = record.seq + 1, record.end_event
        return True

    def finish(self, journaled_seq: int, journaled_events: int) -> None:
        """Report the records journaled (says the state file) after the last one found."""
        if self.next_seq is not None and journaled_seq >= self.next_seq:
            self._spool.report_missing(
                journaled_seq - self.next_seq + 1, journaled_events - self.next_event, "at the end of the spool"
            )


class Spool:
    """Append-only, checksummed, fsynced batches in a directory; read back in order."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        state_path = self.directory / STATE_FILE
        existed = state_path.exists()
        self._state_fd = os.open(state_path, os.O_RDWR | os.O_CREAT, 0o600)
        found = SpoolState.unpack(os.pread(self._state_fd, _STATE.size, 0)) if existed else None
        self.previous: list[Path] = self._segments()
        """The segments a previous run left, oldest first: the writer replays them."""
        if existed and found is None:
            log.error(
                "llm-ledger: the spool's state file %s is unreadable: records lost at the end of the spool "
                "cannot be detected this time",
                state_path,
            )
        self.state_trusted = found is not None
        self.state = found or SpoolState()
        # The state is written after each fsync of a segment: a kill in between leaves it one record behind.
        # Numbering must continue after the last record on disk, or a record would share its seq.
        last = self._last_record()
        if last is not None and last.seq is not None and last.seq > self.state.journaled_seq:
            self.state.journaled_seq, self.state.journaled_events = last.seq, last.end_event
        self.state.last_segment = max(self.state.last_segment, self._highest_number())
        self.started = replace(self.state)
        """The state as this run found it (what the previous segments are checked against)."""
        try:
            self._write_state(sync=True)  # a spool directory that cannot be written fails here, at the start
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            # A full disk is not a configuration error: the writer starts, and its appends say so.
            log.error("llm-ledger: the spool's state file %s cannot be written: %s", state_path, exc)
        self._fd: int | None = None
        self._current: Path | None = None
        self._size = 0
        self._last_seq: dict[Path, int] = {}  # this run's segments -> the last record in each
        self.lost_events = 0
        self.lost_records = 0
        self.set_aside_bytes = 0

    # --- writing --------------------------------------------------------------------------------

    def append(self, body: bytes, count: int) -> int:
        """Write one batch (``body``: a JSON array of ``count`` event records) durably (fsync); its seq."""
        with self._lock:
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None and self._current is not None
            seq, first = self.state.journaled_seq + 1, self.state.journaled_events
            head = _HEADER.pack(_MAGIC, seq, first, count, len(body), 0)[:_CHECKED]
            frame = head + struct.pack(">I", zlib.crc32(body, zlib.crc32(head))) + body
            try:
                _write_all(self._fd, frame)
                os.fsync(self._fd)
            except OSError:
                # Disk full (or failing): cut the partial frame off so the segment stays whole for the next
                # append; if even that fails, the reader sets the torn bytes aside.
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    self._close_segment()
                raise
            self._size += len(frame)
            self.state.journaled_seq, self.state.journaled_events = seq, first + count
            self._last_seq[self._current] = seq
            self._write_state(sync=False)
            if self._size > SEGMENT_BYTES:
                self._close_segment()
            return seq

    def _open_segment(self) -> None:
        number = self.state.last_segment + 1
        path = self.directory / f"spool-{number:012d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._current, self._size = path, 0
        self.state.last_segment = number
        _fsync_directory(self.directory)

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._current = None, None

    def _write_state(self, *, sync: bool) -> None:
        try:
            os.pwrite(self._state_fd, self.state.pack(), 0)
            if sync:
                os.fsync(self._state_fd)
        except OSError:
            if sync:
                raise
            # In place, over bytes already allocated: this fails only with the disk itself; the append
            # it follows is fsynced, and a state that lags is checked as a lag, never as a loss.

    def release_through(self, seq: int, events: int, *, everything: bool = False) -> None:
        """Remove this run's segments whose records are all stored (``seq`` and before); the one being
        written too once it holds ``RELEASE_BYTES`` (or with ``everything``)."""
        with self._lock:
            done = [path for path, last in self._last_seq.items() if last <= seq]
            if self._current in done and (everything or self._size >= RELEASE_BYTES):
                self._close_segment()
            done = [path for path in done if path != self._current]
            if not done:
                return
            self.state.stored_seq, self.state.stored_events = seq, events
            self._write_state(sync=True)
            for path in done:
                del self._last_seq[path]
                path.unlink(missing_ok=True)
            _fsync_directory(self.directory)

    def remove_previous(self, segment: Path, seq: int | None, events: int) -> None:
        """Forget a previous run's segment whose records are all in the database."""
        with self._lock:
            if seq is not None and seq > self.state.stored_seq:
                self.state.stored_seq, self.state.stored_events = seq, events
                self._write_state(sync=True)
            segment.unlink(missing_ok=True)
            _fsync_directory(self.directory)

    def settle(self) -> None:
        """Mark everything journaled as dealt with (a replayed orphan's losses are reported once)."""
        with self._lock:
            self.state.stored_seq, self.state.stored_events = self.state.journaled_seq, self.state.journaled_events
            self._write_state(sync=True)

    def close(self) -> None:
        with self._lock:
            self._close_segment()

    # --- reading --------------------------------------------------------------------------------

    def tracker(self) -> LossTracker:
        """A tracker for replaying the previous segments, from the last record stored before them."""
        known = self.state_trusted or self.state.stored_seq > 0
        return LossTracker(self, self.state.stored_seq + 1 if known else None, self.state.stored_events)

    def own_segments(self) -> list[tuple[Path, int]]:
        """This run's segments still on disk, oldest first, each with the bytes fully written so far."""
        with self._lock:
            return [(path, self._size if path == self._current else -1) for path in self._last_seq]

    def read(self, segment: Path, limit: int = -1) -> Iterator[SpoolRecord]:
        """The intact records of a segment (its first ``limit`` bytes), in order; damaged bytes are set
        aside in a ``.torn`` file and reported, and reading resumes at the next intact record."""
        try:
            with open(segment, "rb") as source:
                data = source.read(limit) if limit >= 0 else source.read()
        except FileNotFoundError:
            return
        for item in _frames(data):
            if isinstance(item, SpoolRecord):
                yield item
            else:
                self._set_aside(segment, *item)

    def peek(self, segment: Path) -> Iterator[SpoolRecord]:
        """The intact records of a segment, without setting anything aside or reporting (the replay does):
        for a writer process learning what its predecessor journaled."""
        try:
            data = segment.read_bytes()
        except OSError:
            return
        for item in _frames(data):
            if isinstance(item, SpoolRecord):
                yield item

    def _last_record(self) -> SpoolRecord | None:
        """The intact record with the highest seq in the previous segments (None if there is none)."""
        for segment in reversed(self.previous):
            try:
                data = segment.read_bytes()
            except OSError:
                continue
            records = [item for item in _frames(data) if isinstance(item, SpoolRecord) and item.seq is not None]
            if records:
                return max(records, key=lambda record: record.seq or 0)
        return None

    def report_missing(self, records: int, events: int, where: str) -> None:
        self.lost_records += records
        self.lost_events += max(events, 0)
        log.error(
            "llm-ledger: the spool in %s lost %d batch(es), %d event(s), %s (a segment truncated or deleted, "
            "or damaged records): those events are not in the ledger",
            self.directory,
            records,
            max(events, 0),
            where,
        )

    def _set_aside(self, segment: Path, offset: int, damaged: bytes) -> None:
        torn = _unique(self.directory, f"{segment.stem}.at-{offset}", ".torn")
        try:
            with open(torn, "xb") as out:
                out.write(_without_secrets(damaged))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            log.error("llm-ledger: could not keep the damaged bytes of %s aside in %s: %s", segment, torn, exc)
        self.set_aside_bytes += len(damaged)
        log.error(
            "llm-ledger: spool segment %s has %d damaged byte(s) at offset %d (a torn write or a corrupted "
            "disk); they are kept in %s, the intact records around them are replayed",
            segment.name,
            len(damaged),
            offset,
            torn.name,
        )

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.log"))

    def _highest_number(self) -> int:
        numbers = (_NUMBERED.match(path.name) for path in self.directory.iterdir())
        return max((int(match.group(1)) for match in numbers if match), default=0)


_SECRET = re.compile(rb'"secret":"[^"]*"?')


def _without_secrets(damaged: bytes) -> bytes:
    """Damaged journal bytes with every data key's secret blanked (what a ``.torn`` file keeps is evidence,
    never a key: the key of an intact record is replayed from the journal; a torn one cannot be)."""
    return _SECRET.sub(b'"secret":"(removed)"', damaged)


def encode_batch(records: Sequence[bytes]) -> bytes:
    """The body of a record: event records, each already JSON, as one JSON array."""
    return b"[" + b",".join(records) + b"]"


def _frames(data: bytes) -> Iterator[SpoolRecord | tuple[int, bytes]]:
    """The records of a segment's bytes, and ``(offset, bytes)`` for each damaged stretch between them."""
    position, end = 0, len(data)
    while position < end:
        found = _frame_at(data, position)
        if found is not None:
            record, position = found
            yield record
            continue
        start = position
        position = _next_frame(data, position + 1)
        yield start, data[start:position]


def _next_frame(data: bytes, position: int) -> int:
    """Where the next intact record starts at or after ``position`` (the end of ``data`` if none does)."""
    while True:
        candidates = [i for i in (data.find(_MAGIC, position), data.find(_MAGIC_V1, position)) if i >= 0]
        if not candidates:
            return len(data)
        position = min(candidates)
        if _frame_at(data, position) is not None:
            return position
        position += 1


def _frame_at(data: bytes, position: int) -> tuple[SpoolRecord, int] | None:
    magic = data[position : position + 4]
    if magic == _MAGIC and position + _HEADER.size <= len(data):
        _, seq, first, count, length, checksum = _HEADER.unpack_from(data, position)
        body_start = position + _HEADER.size
        head = data[position : position + _CHECKED]
        if length > MAX_RECORD_BYTES or body_start + length > len(data):
            return None
        body = data[body_start : body_start + length]
        if zlib.crc32(body, zlib.crc32(head)) != checksum:
            return None
        return SpoolRecord(seq, first, count, body), body_start + length
    if magic == _MAGIC_V1 and position + _HEADER_V1.size <= len(data):
        _, length, checksum = _HEADER_V1.unpack_from(data, position)
        body_start = position + _HEADER_V1.size
        body = data[body_start : body_start + length]
        if len(body) < length or zlib.crc32(body) != checksum or (records := _records(body)) is None:
            return None
        return SpoolRecord(None, 0, len(records), body), body_start + length
    return None


def _records(body: bytes) -> list[dict[str, Any]] | None:
    try:
        records = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return records if isinstance(records, list) else None


def _unique(directory: Path, stem: str, suffix: str) -> Path:
    path, n = directory / f"{stem}{suffix}", 1
    while path.exists():
        path, n = directory / f"{stem}.{n}{suffix}", n + 1
    return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
