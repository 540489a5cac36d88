"""The local spool: batches the database could not take, on disk until it can.

A spool is a directory of segment files ``spool-<sequence>.log``. Each record is one batch:
``b"LLS1" | length (u32) | crc32 (u32) | canonical JSON of the batch's event records``, appended and
fsynced before the batch counts as spooled. A record torn by a crash (short, or failing its checksum)
ends the segment: everything before it is replayed, the torn tail is reported and kept aside.
Replay is in sequence order and idempotent (the store skips event ids it already has), so a segment
replayed twice (a crash between the database commit and the segment's removal) stores nothing twice.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("llm_ledger.store")

_MAGIC = b"LLS1"
_HEADER = struct.Struct(">4sII")
SEGMENT_BYTES = 64 << 20
"""A segment is closed and a new one started past this size, so that replayed segments free disk."""


class Spool:
    """Append-only, checksummed, fsynced batches in a directory; read back in order."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._current: Path | None = None
        self._file: Any = None

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.log"))

    def _next_segment(self) -> Path:
        existing = self._segments()
        last = int(existing[-1].stem.split("-")[1]) if existing else 0
        return self.directory / f"spool-{last + 1:012d}.log"

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write one batch durably (fsync) before returning."""
        body = orjson.dumps(records)
        frame = _HEADER.pack(_MAGIC, len(body), zlib.crc32(body)) + body
        with self._lock:
            if self._file is None or self._file.tell() > SEGMENT_BYTES:
                self._close_current()
                self._current = self._next_segment()
                self._file = open(self._current, "ab")  # noqa: SIM115 - kept open across appends
                _fsync_directory(self.directory)
            self._file.write(frame)
            self._file.flush()
            os.fsync(self._file.fileno())

    def _close_current(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._current = None

    def close(self) -> None:
        with self._lock:
            self._close_current()

    def pending_segments(self) -> list[Path]:
        """Segments to replay, oldest first (the one being written is closed first, so it is included)."""
        with self._lock:
            self._close_current()
            return self._segments()

    def read(self, segment: Path) -> Iterator[list[dict[str, Any]]]:
        """The intact batches (their event records) of a segment, in order, one in memory at a time; a torn
        tail is moved aside and reported once."""
        with open(segment, "rb") as source:
            while header := source.read(_HEADER.size):
                if len(header) < _HEADER.size:
                    self._set_aside(segment, header + source.read(), "a truncated record header")
                    return
                magic, length, checksum = _HEADER.unpack(header)
                body = source.read(length) if magic == _MAGIC else b""
                if magic != _MAGIC or len(body) < length or zlib.crc32(body) != checksum:
                    self._set_aside(segment, header + body + source.read(), "a record that fails its checksum")
                    return
                yield orjson.loads(body)

    def remove(self, segment: Path) -> None:
        """Forget a segment whose batches are all in the database."""
        segment.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def _set_aside(self, segment: Path, tail: bytes, what: str) -> None:
        torn = segment.with_suffix(".torn")
        torn.write_bytes(tail)
        log.warning(
            "llm-ledger: spool segment %s ends with %s (%d bytes, from a crash while writing); the "
            "records before it are replayed, the tail is kept in %s",
            segment.name,
            what,
            len(tail),
            torn.name,
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
