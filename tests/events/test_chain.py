"""The hash chain: any change to any stored event is named by verify_chain."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from llm_ledger.events import (
    AttemptFailedPayload,
    AttemptStartedPayload,
    FallbackTriggeredPayload,
    StreamHeader,
    compute_hash,
    parse_event,
    seal_event,
    uuid7,
    verify_chain,
)
from llm_ledger.events.model import EventEnvelope


def _stream(length: int = 4) -> list[EventEnvelope]:
    header = StreamHeader(stream_id=uuid7(), tenant_id="acme", agent_id="support", session_id="s-1", step="gen")
    events: list[EventEnvelope] = []
    prev = None
    for position in range(length):
        if position % 3 == 0:
            payload: Any = AttemptStartedPayload(
                attempt=position + 1,
                model="openai/gpt-4.1",
                provider="openai",
                fallback_index=0,
                retry=0,
                timeout_seconds=30.0,
            )
            kind = "AttemptStarted"
        elif position % 3 == 1:
            payload = AttemptFailedPayload(
                attempt=position,
                model="openai/gpt-4.1",
                provider="openai",
                latency_ms=12.5,
                error_type="rate_limit",
                error_class="RateLimitError",
                message="slow down",
                status_code=429,
                retry_after_seconds=1.0,
                next_action="fall_back",
            )
            kind = "AttemptFailed"
        else:
            payload = FallbackTriggeredPayload(
                from_model="openai/gpt-4.1", to_model="groq/llama", from_index=0, to_index=1, reason="rate_limit"
            )
            kind = "FallbackTriggered"
        event = seal_event(
            header, position=position, prev_hash=prev, payload=payload, event_type=kind, occurred_at=datetime.now(UTC)
        )
        prev = event.hash
        events.append(event)
    return events


def test_a_sealed_stream_verifies() -> None:
    report = verify_chain(_stream())
    assert report.ok, str(report)
    assert report.events_checked == 4 and report.streams_checked == 1


def test_stored_records_round_trip_to_the_same_hash() -> None:
    for event in _stream():
        record = json.loads(json.dumps(event.to_record()))
        assert compute_hash(record) == event.hash
        assert parse_event(record) == event


def test_changing_any_byte_of_any_stored_event_names_that_event() -> None:
    events = _stream(3)
    stored = [json.dumps(e.to_record(), sort_keys=True) for e in events]
    for target, text in enumerate(stored):
        for offset in range(len(text)):
            original = text[offset]
            replacement = "0" if original != "0" else "1"
            mutated = text[:offset] + replacement + text[offset + 1 :]
            try:
                record = json.loads(mutated)
            except json.JSONDecodeError:
                continue  # a byte change that is not JSON any more cannot be stored as an event
            records = [json.loads(s) for s in stored]
            records[target] = record
            report = verify_chain(records)
            assert not report.ok, f"change at byte {offset} of event {target} went unnoticed"
            assert target in {b.index for b in report.breaks}, (offset, target, str(report))


def test_a_removed_event_is_named_at_the_gap() -> None:
    events = _stream(4)
    report = verify_chain([events[0], events[1], events[3]])
    kinds = {(b.event_id, b.kind) for b in report.breaks}
    assert (str(events[3].event_id), "position_gap") in kinds
    assert (str(events[3].event_id), "prev_hash_mismatch") in kinds


def test_reordered_events_are_named() -> None:
    events = _stream(4)
    report = verify_chain([events[0], events[2], events[1], events[3]])
    assert not report.ok
    assert {b.kind for b in report.breaks} >= {"position_gap", "duplicate_position"}


def test_a_recomputed_hash_is_caught_by_the_next_event_link() -> None:
    events = _stream(3)
    forged = events[1].to_record()
    forged["payload"]["message"] = "nothing happened"
    forged["hash"] = compute_hash(forged)
    report = verify_chain([events[0].to_record(), forged, events[2].to_record()])
    assert [(b.index, b.kind) for b in report.breaks] == [(2, "prev_hash_mismatch")]


def test_interleaved_streams_verify_independently() -> None:
    a, b = _stream(3), _stream(3)
    assert verify_chain([a[0], b[0], a[1], b[1], b[2], a[2]]).ok


@pytest.mark.parametrize("microsecond", [0, 1, 999_999])
def test_the_hash_is_over_exactly_the_stored_form(microsecond: int) -> None:
    header = StreamHeader(stream_id=uuid7(), tenant_id="acme", turn_id=None, step=None)
    payload = FallbackTriggeredPayload(from_model="a/b", to_model="c/d", from_index=0, to_index=1, reason="timeout")
    moment = datetime(2026, 11, 21, 12, 0, 0, microsecond, tzinfo=UTC)
    event = seal_event(
        header,
        position=0,
        prev_hash=None,
        payload=payload,
        event_type="FallbackTriggered",
        occurred_at=moment,
        trace_id="ab" * 16,
        span_id="cd" * 8,
    )
    assert compute_hash(event.to_record()) == event.hash
    assert parse_event(event.to_record()) == event
    assert verify_chain([event]).ok


def test_sealing_rejects_a_time_that_is_not_utc() -> None:
    from datetime import timedelta, timezone

    header = StreamHeader(stream_id=uuid7(), tenant_id="acme")
    payload = FallbackTriggeredPayload(from_model="a/b", to_model="c/d", from_index=0, to_index=1, reason="timeout")
    with pytest.raises(ValueError, match="UTC"):
        seal_event(
            header,
            position=0,
            prev_hash=None,
            payload=payload,
            event_type="FallbackTriggered",
            occurred_at=datetime.now(timezone(timedelta(hours=2))),
        )
