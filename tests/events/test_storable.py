"""What an event can hold (``events.storable``), and the store refusing the rest as the last line of
defence: a clear ``InvalidEventError`` naming the event, never an exception of another kind."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from llm_ledger.events import (
    ExecutionFailedPayload,
    StreamHeader,
    StreamSealer,
    TokenUsage,
    compute_hash,
    uuid7,
)
from llm_ledger.events import values as payloads
from llm_ledger.events.storable import (
    MAX_EXACT_INTEGER,
    MAX_RETRY_AFTER_SECONDS,
    provider_count,
    provider_seconds,
    provider_text,
    text_problem,
)
from llm_ledger.events.values import JsonPayload
from llm_ledger.store.errors import InvalidEventError
from llm_ledger.store.rows import event_to_row


@pytest.mark.parametrize(
    ("value", "problem"),
    [("plain", None), ("é and 😀", None), ("a\x00b", "contains a NUL character (U+0000) at index 1"),
     ("ab\ud800", "contains a lone surrogate (U+D800) at index 2")],
)  # fmt: skip
def test_text_problem_names_what_and_where(value: str, problem: str | None) -> None:
    assert text_problem(value) == problem


def test_provider_text_is_made_storable() -> None:
    assert provider_text("gpt\x00-4\udfff") == "gpt\ufffd-4\ufffd"
    cut = provider_text("x" * 5000)
    assert len(cut) == 1024 and cut.endswith("…[truncated]")
    assert provider_text("x" * 5000, None) == "x" * 5000


@pytest.mark.parametrize(
    ("value", "count"),
    [(12, 12), (0, 0), (12.0, 12), (MAX_EXACT_INTEGER, MAX_EXACT_INTEGER), (MAX_EXACT_INTEGER + 1, None),
     (10**30, None), (-1, None), (1.5, None), (math.inf, None), (math.nan, None), (True, None), ("12", None)],
)  # fmt: skip
def test_provider_counts_an_event_cannot_hold_exactly_are_unknown(value: Any, count: int | None) -> None:
    assert provider_count(value) == count


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(2.5, 2.5), (-3.0, 0.0), (math.inf, MAX_RETRY_AFTER_SECONDS), (-math.inf, 0.0), (1e308, MAX_RETRY_AFTER_SECONDS),
     (math.nan, None), (None, None)],
)  # fmt: skip
def test_provider_seconds_are_clamped(value: float | None, seconds: float | None) -> None:
    assert provider_seconds(value) == seconds


def test_a_usage_beyond_exact_integers_is_sealed_as_unknown() -> None:
    assert payloads.usage_values(TokenUsage(prompt_tokens=10**30, completion_tokens=1, total_tokens=2)) is None
    kept = payloads.usage_values(TokenUsage(prompt_tokens=1, completion_tokens=1, total_tokens=2, cached_tokens=-4))
    assert kept is not None and kept["cached_tokens"] is None


# --- the store's last line of defence -----------------------------------------------------------------


def _draft(payload: Any, event_type: str = "ExecutionFailed") -> Any:
    sealer = StreamSealer(StreamHeader(stream_id=uuid7(), tenant_id="t"))
    return sealer.draft(event_type, payload, occurred_at=datetime.now(UTC))


def test_a_draft_whose_payload_cannot_be_sealed_is_an_invalid_event() -> None:
    build = JsonPayload(payloads.execution_failed, error_type="e", message="m", attempts=1, latency_ms=math.inf,
                        last_model=None, chunks_delivered=0)  # fmt: skip
    with pytest.raises(InvalidEventError, match=r"event 3 \(.*\): its ExecutionFailed payload cannot be sealed: inf"):
        event_to_row(_draft(build), 3)


def test_a_nul_or_a_lone_surrogate_in_a_draft_is_an_invalid_event() -> None:
    nul = ExecutionFailedPayload(error_type="e", message="a\x00b", attempts=1, latency_ms=1.0)
    with pytest.raises(InvalidEventError, match="contains a NUL character"):
        event_to_row(_draft(nul), 0)
    surrogate = ExecutionFailedPayload(error_type="e", message="a\ud800b", attempts=1, latency_ms=1.0)
    with pytest.raises(InvalidEventError, match="cannot be stored as UTF-8 JSON"):
        event_to_row(_draft(surrogate), 0)


def test_a_record_with_an_integer_beyond_two_to_the_53_is_an_invalid_event() -> None:
    event = _draft(ExecutionFailedPayload(error_type="e", message="m", attempts=1, latency_ms=1.0)).event
    record = event.to_record()
    record["payload"]["attempts"] = 2**60
    record["hash"] = compute_hash(record)
    with pytest.raises(InvalidEventError, match=r"payload\.attempts is 1152921504606846976, beyond the integers"):
        event_to_row(record, 0)
