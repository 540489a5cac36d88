"""The hash chain: any change to any stored event is named by verify_chain."""

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from llm_ledger.events import (
    AttemptFailedPayload,
    AttemptStartedPayload,
    FallbackTriggeredPayload,
    StreamHeader,
    chain_holds,
    compute_hash,
    parse_event,
    seal_event,
    sha256_hex,
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


def _rehashed(records: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """The records with the hashes from ``start`` on recomputed, each linked to the one before: a forger's
    self-consistent chain."""
    for index in range(start, len(records)):
        if index:
            records[index]["prev_hash"] = records[index - 1]["hash"]
        records[index]["hash"] = compute_hash(records[index])
    return records


def _mutations() -> list[tuple[str, list[dict[str, Any]]]]:
    """One stream's stored records, changed in each way the chain check tells apart (and some it must pass)."""

    def fresh() -> list[dict[str, Any]]:
        return [json.loads(json.dumps(e.to_record())) for e in _stream(4)]

    made: list[tuple[str, list[dict[str, Any]]]] = [("intact", fresh())]
    records = fresh()
    records[1]["payload"]["message"] = "nothing happened"
    made.append(("payload changed", records))
    records = fresh()
    records[2]["hash"] = "0" * 64
    made.append(("hash replaced", records))
    made.append(("event removed", [r for i, r in enumerate(fresh()) if i != 1]))
    records = fresh()
    made.append(("reordered", [records[0], records[2], records[1], records[3]]))
    records = fresh()
    records[1]["payload"]["message"] = "nothing happened"
    made.append(("rehashed from the change on", _rehashed(records, 1)))
    records = fresh()
    records[1]["payload"]["surprise"] = True  # the model forbids it; every hash recomputed
    made.append(("invalid, rehashed", _rehashed(records, 1)))
    records = fresh()
    records[1]["payload"]["status_code"] = 2**70  # beyond what orjson writes: no canonical form
    made.append(("integer beyond 64 bits", records))
    records = fresh()
    records[1]["stream_position"] = 1.0  # verify_chain leaves the links of a non-integer position unchecked
    made.append(("float position", _rehashed(records, 1)))
    records = fresh()
    records[1]["stream_position"] = True  # equal to 1, and an int to verify_chain; the model refuses it
    made.append(("bool position, rehashed", _rehashed(records, 1)))
    records = fresh()
    records[2]["stream_id"] = str(uuid7())
    made.append(("another stream's event", _rehashed(records, 2)))
    records = fresh()
    records[0]["prev_hash"] = "f" * 64
    made.append(("a first event linked to something", _rehashed(records, 0)))
    records = fresh()
    records[1]["payload"]["latency_ms"] = 1e-7  # a float canonical JSON writes as ECMAScript does
    made.append(("a float to rewrite, rehashed", _rehashed(records, 1)))
    return made


# Where chain_holds is only cautious: it sends the stream to verify_chain, which passes it.
_CAUTIOUS = ("a float to rewrite, rehashed", "bool position, rehashed")


@pytest.mark.parametrize(("change", "records"), _mutations(), ids=[name for name, _ in _mutations()])
def test_chain_holds_gives_the_verdict_of_verify_chain(change: str, records: list[dict[str, Any]]) -> None:
    report = verify_chain(records)
    if change in _CAUTIOUS:
        assert report.ok and not chain_holds(records)
    else:
        assert chain_holds(records) == report.ok, str(report)
    # A chain rehashed from the change on is self-consistent: only the seals tell (tests/audit).
    assert report.ok == (change in ("intact", "rehashed from the change on", *_CAUTIOUS)), str(report)


def test_chain_holds_passes_no_record_whose_payload_a_reader_may_have_read_otherwise() -> None:
    # orjson reads an integer beyond 64 bits as a float: a forger who hashed that float's canonical form
    # must not pass the fast check, since json.loads (the column's reader) keeps the integer, which has none.
    records = [json.loads(json.dumps(e.to_record())) for e in _stream(2)]
    records[1]["payload"]["status_code"] = float(2**70)
    _rehashed(records, 1)
    assert not chain_holds(records)


def _orjson_hashed(records: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """``_rehashed``, each hash over orjson's sorted output as it stands (no canonical float rewrite)."""
    for index in range(start, len(records)):
        if index:
            records[index]["prev_hash"] = records[index - 1]["hash"]
        unhashed = {key: value for key, value in records[index].items() if key != "hash"}
        records[index]["hash"] = sha256_hex(orjson.dumps(unhashed, option=orjson.OPT_SORT_KEYS))
    return records


@pytest.mark.parametrize(
    ("number", "canonical_differs"),
    [(2.0, True), (float(2**70), False)],
    ids=["float written 2.0 by orjson, 2 canonically", "integer beyond 64 bits as orjson reads it"],
)
def test_chain_holds_passes_no_record_hashed_over_orjson_bytes_with_a_float_to_rewrite(
    number: float, canonical_differs: bool
) -> None:
    # What a fast check that skipped the float scan (canonical._may_differ) would pass. 2.0: verify_chain finds
    # the hash wrong. 2**70 read by orjson: its canonical form is orjson's, but json.loads keeps the integer,
    # which has none (tests/audit/test_fast_path.py), so the record must not pass either.
    records = [json.loads(json.dumps(e.to_record())) for e in _stream(2)]
    assert records[0]["event_type"] == "AttemptStarted"
    records[0]["payload"]["timeout_seconds"] = number
    _orjson_hashed(records, 0)

    report = verify_chain(records)

    assert not chain_holds(records)
    assert [b.kind for b in report.breaks] == (["hash_mismatch"] if canonical_differs else [])
