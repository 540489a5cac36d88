"""Events to table rows and back: the stored form is exactly the hashed form."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from pydantic import ValidationError

from llm_ledger.events import (
    ENVELOPE_FIELDS,
    CanonicalizationError,
    Event,
    EventDraft,
    canonical_json,
    compute_hash,
    parse_event,
)
from llm_ledger.events.storable import MAX_EVENT_BYTES as MAX_EVENT_BYTES
from llm_ledger.events.storable import MAX_EXACT_INTEGER
from llm_ledger.store.errors import InvalidEventError, UnreadableEventError

CONTENT_KEY = "content_key"
"""The field of a row (and of a journal record) that carries the data key made for its event's content: no
column of the events, stored in the key table with it (``content_keys``)."""

# A NUL character, escaped in JSON text (an odd run of backslashes before "u0000").
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def event_to_row(item: Event | EventDraft | Mapping[str, Any], index: int) -> dict[str, Any]:
    """The row of one event, after checking that it can be stored and read back to the same hash."""
    if isinstance(item, EventDraft):
        return _draft_row(item, index)
    key = None
    if isinstance(item, Mapping):
        event_id = item.get("event_id")
        if CONTENT_KEY in item:  # a journal record of an event that carries its data key
            item = dict(item)
            key = item.pop(CONTENT_KEY)
        try:
            event: Event = parse_event(dict(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise InvalidEventError(
                f"not a valid event: {loc}: {first['msg']}", index=index, event_id=str(event_id) if event_id else None
            ) from None
    else:
        event = item
    record = event.to_record()
    try:
        canonical = canonical_json(record)
    except CanonicalizationError as exc:
        raise InvalidEventError(
            f"cannot be stored as UTF-8 JSON: {exc}", index=index, event_id=record["event_id"]
        ) from None
    _check_integers(record["payload"], "payload", index, record["event_id"])
    _check_size(canonical, 0, index, record["event_id"])
    if compute_hash(record) != record["hash"]:
        raise InvalidEventError("its content does not match its hash", index=index, event_id=record["event_id"])
    _check_nul(canonical, index, record["event_id"])
    row = dict(record)
    row["occurred_at"] = event.occurred_at
    if key is not None:
        row[CONTENT_KEY] = key
    return row


def _draft_row(draft: EventDraft, index: int) -> dict[str, Any]:
    """The row of a draft this process sealed: its hash is known good, and its fields, canonical form and
    payload JSON were computed by the sealing, so only the storability checks remain."""
    try:
        fields, canonical = draft.stored_form()
    except CanonicalizationError as exc:
        raise InvalidEventError(
            f"cannot be stored as UTF-8 JSON: {exc}", index=index, event_id=str(draft.event_id)
        ) from None
    except (ValueError, TypeError) as exc:  # a payload value no event can hold (values.py says which)
        raise InvalidEventError(
            f"its {draft.event_type} payload cannot be sealed: {exc}", index=index, event_id=str(draft.event_id)
        ) from None
    _check_size(canonical, 80, index, fields["event_id"])  # + the hash field, which the canonical form leaves out
    _check_nul(canonical, index, fields["event_id"])
    row = dict(fields)  # its payload carries its JSON text
    if draft.content_key is not None:
        row[CONTENT_KEY] = draft.content_key.record()
    return row


def _check_size(canonical: bytes, margin: int, index: int, event_id: str) -> None:
    if len(canonical) + margin > MAX_EVENT_BYTES:
        raise InvalidEventError(
            f"is {len(canonical)} bytes, more than the {MAX_EVENT_BYTES} an event may take",
            index=index,
            event_id=event_id,
        )


def _check_integers(value: Any, where: str, index: int, event_id: str) -> None:
    """Refuse an integer beyond 2**53 - 1: RFC 8785 writes numbers as doubles, so an auditor's
    canonical form of it would differ from ours (orjson writes it exactly) and its hash would not match."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_integers(item, f"{where}.{key}", index, event_id)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_integers(item, f"{where}[{position}]", index, event_id)
    elif type(value) is int and not -MAX_EXACT_INTEGER <= value <= MAX_EXACT_INTEGER:
        raise InvalidEventError(
            f"{where} is {value}, beyond the integers an event can hold exactly (|n| <= 2**53 - 1)",
            index=index,
            event_id=event_id,
        )


def _check_nul(canonical: bytes, index: int, event_id: str) -> None:
    if b"\\u0000" in canonical and _NUL.search(canonical):
        raise InvalidEventError(
            "contains a NUL character, which PostgreSQL cannot store in JSON", index=index, event_id=event_id
        )


_ENVELOPE_VALUES = itemgetter(*ENVELOPE_FIELDS)


def row_to_record(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The stored record of a row, as it was hashed (timestamps back in UTC, ids as text): every envelope
    field (``ENVELOPE_FIELDS``, in its order), each from its column of the same name."""
    record = dict(zip(ENVELOPE_FIELDS, _ENVELOPE_VALUES(row), strict=True))
    record["event_id"] = str(record["event_id"])
    record["stream_id"] = str(record["stream_id"])
    record["occurred_at"] = as_utc(record["occurred_at"]).replace(tzinfo=None).isoformat() + "Z"
    return record


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp in UTC: SQLite gives timestamps back without their zone; they were stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def row_to_event(row: Mapping[Any, Any]) -> Event:
    record = row_to_record(row)
    try:
        return parse_event(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise UnreadableEventError(
            f"stored event {record.get('event_id')} (stream {record.get('stream_id')}, position"
            f" {record.get('stream_position')}) is no longer a valid event: {field}: {first['msg']}"
        ) from exc
