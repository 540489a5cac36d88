"""The events table holds exactly the envelope that ``events.model`` declares: a column per field, of the
field's name, nullable exactly when the field is optional, as long as the field's values; the row
conversion and the COPY of a row go by the same names."""

from __future__ import annotations

import re
import types
from datetime import UTC, datetime
from typing import Any, Union, get_args, get_origin
from uuid import UUID

import pytest
from pydantic import AwareDatetime
from pydantic.fields import FieldInfo
from sqlalchemy import JSON, DateTime, Integer, SmallInteger, String, Text

from llm_ledger.events import (
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    EventEnvelope,
    Scrubber,
    StreamHeader,
    StreamSealer,
    TokenUsage,
    uuid7,
)
from llm_ledger.events import values as builders
from llm_ledger.events.values import JsonPayload
from llm_ledger.store import dialects
from llm_ledger.store.rows import event_to_row, row_to_record
from llm_ledger.store.schema import STORED_COLUMNS, events

_FIELDS: dict[str, FieldInfo] = EventEnvelope.model_fields


def _is_optional(field: FieldInfo) -> bool:
    annotation = field.annotation
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _length(field: FieldInfo) -> int | None:
    """The one length of the field's values, from its pattern (``^[0-9a-f]{64}$``), or a UUID's text."""
    if field.annotation is UUID:
        return 36
    patterns = [getattr(m, "pattern", None) for m in field.metadata]
    found = [re.fullmatch(r"\^\[0-9a-f\]\{(\d+)\}\$", p) for p in patterns if p]
    return int(found[0].group(1)) if found and found[0] else None


def test_every_envelope_field_is_a_stored_column_and_nothing_else_is() -> None:
    assert set(STORED_COLUMNS) == set(ENVELOPE_FIELDS)
    assert set(events.c.keys()) - set(ENVELOPE_FIELDS) == {"global_position", "recorded_at"}


@pytest.mark.parametrize("name", ENVELOPE_FIELDS)
def test_a_column_is_nullable_exactly_when_its_field_is_optional(name: str) -> None:
    assert events.c[name].nullable == _is_optional(_FIELDS[name]), name


@pytest.mark.parametrize("name", ENVELOPE_FIELDS)
def test_a_column_is_of_its_fields_type(name: str) -> None:
    field, column_type = _FIELDS[name], events.c[name].type
    length = _length(field)
    bare = next((a for a in get_args(field.annotation) if a is not type(None)), field.annotation)
    expected: dict[Any, tuple[type[Any], ...]] = {
        str: (String,) if length else (Text,),
        UUID: (String,),
        int: (Integer, SmallInteger),
        AwareDatetime: (DateTime,),
    }
    if name == "payload":
        assert isinstance(column_type, JSON)
        return
    if name == "event_type":  # a bounded name: every registered one must fit
        assert isinstance(column_type, String) and column_type.length is not None
        assert max(len(event_type) for event_type in EVENT_TYPES) <= column_type.length
        return
    assert type(column_type) in expected[bare], (name, column_type)
    if isinstance(column_type, DateTime):
        assert column_type.timezone
    if length is not None:
        assert isinstance(column_type, String) and column_type.length == length, name


def test_copy_sends_every_envelope_field_with_the_payload_last() -> None:
    assert set(dialects._COPY_COLUMNS) == set(ENVELOPE_FIELDS)
    assert dialects._COPY_COLUMNS[-1] == "payload"


def test_a_row_reads_back_as_the_sealed_record_field_for_field() -> None:
    header = StreamHeader(stream_id=uuid7(), tenant_id="t1", agent_id="a", session_id="s", turn_id="u", step="p")
    build = JsonPayload(
        builders.execution_succeeded,
        model="m",
        provider="p",
        attempts=1,
        fallback_used=False,
        latency_ms=3.5,
        usage=TokenUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        finish_reason="stop",
        output=builders.output_values("ok", "hash", Scrubber([])),
    )
    draft = StreamSealer(header).draft("ExecutionSucceeded", build, occurred_at=datetime.now(UTC))
    row = {**event_to_row(draft, 0), "global_position": 1, "recorded_at": datetime.now(UTC)}
    record = row_to_record(row)
    assert list(record) == list(ENVELOPE_FIELDS)
    assert record == draft.event.to_record()
