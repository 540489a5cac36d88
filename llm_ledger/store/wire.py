"""The framing between an application and its writer process (``process_writer.py``, ``writer_process.py``).

Both directions carry frames on a pipe: ``length (u32) | kind (1 byte) | body`` (the body JSON, ``length``
bytes). The application writes to the child's stdin:

- ``I`` (init, first): the writer's configuration, the database URL among it (sent here rather than on the
  command line, where ``ps`` would show its password);
- ``D`` (drafts): a JSON array of drafts, each ``DRAFT_FIELDS`` in order: the stream's header, the draft's
  envelope fields, whether its ``prev_hash`` is known to the application (every earlier draft of its stream
  acknowledged) and which, and its payload's JSON values (or why they could not be built), and the data key
  made for its content when its values were built (``events.encryption``; None for most);
- ``E``: drafts, as ``D``, while a call of the application waits for its events to be journaled, and ``U``
  (hurry, empty) when a call begins to wait for drafts sent already: journal everything received at once,
  as the buffered writer does for a call waiting (``D`` alone waits for ``batch_size`` or
  ``flush_interval``, so that a writer nobody waits for journals and stores in large batches);
- ``C`` (close): ``{"timeout": seconds}``: journal what was sent, store what the database takes by then,
  answer ``B`` and exit.

The child writes to its stdout:

- ``H`` (hello): ``{"pid", "spool"}``, once its journal is open;
- ``J`` (journaled): ``{"h": [hash or null, ...]}``: the next ``len(h)`` drafts it was sent, in order, are
  journaled (fsynced), each with the hash it was sealed to (null: set aside, not sealable);
- ``S`` (status): ``{"acked", "stored", "stats"}``: how many drafts it has acknowledged, whether every one
  of them and its journal's backlog was in the database when it looked, and its writer's counters;
- ``B`` (bye): the same as ``S``, last, after its writer closed.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import orjson

from llm_ledger.store.errors import StoreError

HEADER = struct.Struct(">IB")
MAX_FRAME = 1 << 30

INIT, DRAFTS, URGENT_DRAFTS, HURRY, CLOSE = b"I", b"D", b"E", b"U", b"C"
HELLO, JOURNALED, STATUS, BYE = b"H", b"J", b"S", b"B"

DRAFT_FIELDS = (
    "stream_id", "tenant_id", "agent_id", "session_id", "turn_id", "step",
    "stream_position", "event_type", "occurred_at", "trace_id", "span_id", "event_id",
    "prev_known", "prev_hash", "values", "plain", "error", "content_key",
)  # fmt: skip
"""The items of a draft on the wire, in order (a list, not an object: the keys would cost more than most
values)."""


class WireError(StoreError):
    """The other end sent something that is not a frame (it is not our peer, or a bug): the pipe is dropped."""


def frame(kind: bytes, body: bytes) -> bytes:
    return HEADER.pack(len(body), kind[0]) + body


def message(kind: bytes, value: Any) -> bytes:
    return frame(kind, orjson.dumps(value))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (a pipe takes at most its buffer at a time). Raises OSError (BrokenPipeError) when
    the reader is gone."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int) -> tuple[bytes, bytes] | None:
    """The next frame's kind and body, or None at the end of the stream (the writer closed it, or died)."""
    head = _read_exactly(fd, HEADER.size)
    if head is None:
        return None
    length, kind = HEADER.unpack(head)
    if length > MAX_FRAME:
        raise WireError(f"a frame of {length} bytes announced: not a writer process's pipe")
    body = _read_exactly(fd, length) if length else b""
    if body is None:
        return None  # cut off mid-frame: the writer died while writing it
    return bytes([kind]), body


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    left = size
    while left:
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
