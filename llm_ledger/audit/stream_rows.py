"""A verify's stored rows as plain tuples, and the check of one stream's chain straight from its columns.

``audit verify`` recomputes the hash of every event it reads (tens of millions). Two costs per event that do
not find anything were most of its time: reading each column of a SQLAlchemy ``Row`` by name (7 us for the
17 of an event, against 0.1 us to unpack it), and building each event's stored record as a dict, copying it
without its hash and serializing it whole with sorted keys for the canonical form (``events.chain_holds``).
``StoredRow`` is the row as a named tuple, and ``stored_chain_holds`` assembles each event's canonical form
from its columns (the envelope's fields in their sorted places around the payload's canonical JSON, as the
sealer does), so that only the payload is serialized.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from llm_ledger.events import CanonicalizationError, parse_event
from llm_ledger.events.canonical import json_text, orjson_canonical, sha256_hex


class StoredRow(NamedTuple):
    """One event as the stream query reads it (``store.schema.READ_COLUMNS``, in their order; the payload as its
    JSON text, or its values as an archive's reader gives them), read by position or by name."""

    global_position: int | None
    tenant_id: Any
    event_id: Any
    event_type: Any
    schema_version: Any
    stream_id: Any
    stream_position: Any
    agent_id: Any
    session_id: Any
    turn_id: Any
    step: Any
    occurred_at: Any
    trace_id: Any
    span_id: Any
    payload: Any
    prev_hash: Any
    hash: Any

    @property
    def _mapping(self) -> dict[str, Any]:
        # What ``store.rows.row_to_record`` reads a row by, as it reads a SQLAlchemy row's ``_mapping``.
        return self._asdict()

    @classmethod
    def of(cls, row: Any) -> StoredRow:
        """A row of any reader that has these columns as ``_mapping`` (an archived one: ``global_position``
        may be missing)."""
        if type(row) is cls:
            return row
        mapping = row._mapping
        return cls(*(mapping.get(name) for name in cls._fields))


def stored_chain_holds(rows: Sequence[StoredRow]) -> bool:
    """``events.chain_holds`` over one stream's stored rows, in stream order, with the same verdict: True only
    when ``events.verify_chain`` finds nothing wrong in their records; False when something may be wrong
    (``verify_chain`` then says what, if anything), which includes every event whose canonical form has a float
    to rewrite, whose payload orjson does not read, or whose stored values are not of the types the columns
    give (tests/audit/test_stream_rows.py holds the two to the same verdict).

    Each event's canonical form is what ``canonical_json`` gives for its stored record without ``hash``
    (``store.rows.row_to_record``): its keys in sorted order, every text value written by ``json_text``, the
    time as the record has it (UTC, ``...T12:00:00.123456Z``), the payload's own canonical JSON."""
    prev_hash: str | None = None
    first_stream: str | None = None
    # A stream's events share their tenant, agent, session, turn, step and stream id, and a few event types:
    # each value's JSON is written once per stream.
    written: dict[Any, str] = {}
    try:
        for position, row in enumerate(rows):
            (
                _,
                tenant_id,
                event_id,
                event_type,
                schema_version,
                stream_id,
                stream_position,
                agent_id,
                session_id,
                turn_id,
                step,
                occurred_at,
                trace_id,
                span_id,
                payload,
                prev,
                stored,
            ) = row
            if type(stream_position) is not int or stream_position != position or prev != prev_hash:
                return False
            if type(stored) is not str or type(schema_version) is not int or not isinstance(occurred_at, datetime):
                return False
            stream_text = str(stream_id)
            if first_stream is None:
                first_stream = stream_text
            elif stream_text != first_stream:
                return False
            values = orjson.loads(payload) if type(payload) is str else payload
            payload_json = orjson_canonical(values)
            if payload_json is None:
                return False
            event_text = str(event_id)
            moment = _record_time(occurred_at)
            shared = []
            for value in (agent_id, event_type, session_id, step, stream_text, tenant_id, turn_id):
                text = written.get(value)
                if text is None:
                    text = written[value] = json_text(value)
                shared.append(text)
            canonical = "".join(
                (
                    '{"agent_id":', shared[0],
                    ',"event_id":', json_text(event_text),
                    ',"event_type":', shared[1],
                    ',"occurred_at":"', moment,
                    '","payload":', payload_json.decode(),
                    ',"prev_hash":', json_text(prev),
                    ',"schema_version":', str(schema_version),
                    ',"session_id":', shared[2],
                    ',"span_id":', json_text(span_id),
                    ',"step":', shared[3],
                    ',"stream_id":', shared[4],
                    ',"stream_position":', str(stream_position),
                    ',"tenant_id":', shared[5],
                    ',"trace_id":', json_text(trace_id),
                    ',"turn_id":', shared[6],
                    "}",
                )
            ).encode()  # fmt: skip
            if sha256_hex(canonical) != stored:
                return False
            # The event model over the same bytes with the hash added, parsed by pydantic itself: the record's
            # values are what these bytes say (JSON mode reads text, numbers and times as the record has them).
            parse_event(b"".join((canonical[:-1], b',"hash":"', stored.encode(), b'"}')))
            prev_hash = stored
    # Whatever the values: a text column holding no text (AttributeError in json_text), a lone surrogate,
    # a payload orjson cannot read or write, an invalid event. The records' own check names it.
    except (orjson.JSONDecodeError, CanonicalizationError, ValidationError, AttributeError, TypeError, ValueError):
        return False
    return True


_NO_OFFSET = timedelta(0)


def _record_time(moment: datetime) -> str:
    """The stored record's ``occurred_at`` (``row_to_record``): UTC, without an offset, and a ``Z``. A time
    read in UTC (the audit's sessions read them so) is written as it is."""
    offset = moment.utcoffset()
    if offset is None:  # SQLite: UTC without its zone
        return moment.isoformat() + "Z"
    if offset == _NO_OFFSET:
        return moment.isoformat()[:-6] + "Z"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
