"""The payload values the executor seals (``values.py``) are byte for byte the payload models' JSON."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from llm_ledger.events import (
    PAYLOAD_TYPES,
    AttemptFailedPayload,
    AttemptStartedPayload,
    AttemptSucceededPayload,
    DigestKey,
    DigestSecret,
    ExecutionFailedPayload,
    ExecutionStartedPayload,
    ExecutionSucceededPayload,
    FallbackTriggeredPayload,
    RequestParameters,
    Scrubber,
    StreamHeader,
    StreamSealer,
    TokenUsage,
    canonical_json,
    compute_hash,
    record_input,
    record_output,
    uuid7,
    verify_chain,
)
from llm_ledger.events import values as payloads
from llm_ledger.events.canonical import json_text
from llm_ledger.events.values import JsonPayload, plain_floats, usage_values

# Floats of every shape: integral ones (written as ints), tiny and huge ones (exponents), and ints given
# for a float field (the models take them).
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3)),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0.0, -0.0, 1e-7, 1e-6, 5e-324, 1e16, 2.0**53, 2.0**53 + 2, 1e21, 1e22, 123456.5, 0.1]),
)
texts = st.text(max_size=40)
# What a provider supplies is made storable (NULs replaced, values cut or clamped: test_storable.py); the
# values equal the model's for whatever needs no such change.
provider_texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)
retry_afters = st.floats(min_value=0, max_value=86400) | st.integers(min_value=0, max_value=86400)
ids = st.integers(min_value=0, max_value=10**6)
opt = st.none

usages = st.none() | st.builds(
    TokenUsage,
    prompt_tokens=ids,
    completion_tokens=ids,
    total_tokens=ids,
    cached_tokens=opt() | ids,
    reasoning_tokens=opt() | ids,
    # A provider's reported cost: left out of the values while None (an AddedLater field), tiny ones
    # written with an exponent.
    cost_usd=opt() | st.floats(min_value=0, max_value=1e6) | st.sampled_from([1e-7, 0.0123, 5e-324, 2.0]),
)
parameters = st.builds(
    RequestParameters,
    temperature=opt() | numbers,
    max_tokens=opt() | ids,
    stop_sequences=opt() | st.lists(texts, max_size=3).map(tuple),
)
policies = st.sampled_from(["none", "hash", "full"])
# A tenant's key (the executor's digests: ``digest``, ``digest_alg``, ``key_id``), or none (the plain
# ``sha256`` of events before keyed digests).
digest_keys = st.sampled_from([None, DigestSecret.generate().tenant_key("acme")])
scrubber = Scrubber(["sk-secret-key-123456"])
messages = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), texts), max_size=4)


def _same(build: Callable[..., dict[str, Any]], expected: BaseModel, /, **kwargs: Any) -> None:
    """The values serialize to the model's canonical JSON (by orjson alone when ``plain_floats`` says so),
    and the model is rebuilt from them."""
    values, plain = plain_floats(JsonPayload(build, **kwargs))
    dumped = expected.model_dump(mode="json")
    assert values == dumped
    assert canonical_json(values) == canonical_json(dumped)
    if plain:
        assert orjson.dumps(values, option=orjson.OPT_SORT_KEYS) == canonical_json(dumped)
    assert type(expected).model_validate(values) == expected


@settings(max_examples=300)
@given(
    operation=st.sampled_from(["generate", "generate_structured", "generate_stream"]),
    chain=st.lists(texts, min_size=1, max_size=3).map(tuple),
    max_retries=ids,
    timeout_seconds=numbers,
    attempt_timeout_seconds=numbers,
    params=parameters,
    msgs=messages,
    output_schema=opt() | texts,
    capture=policies,
    digest_key=digest_keys,
)
def test_execution_started(
    operation: Any,
    chain: tuple[str, ...],
    max_retries: int,
    timeout_seconds: float,
    attempt_timeout_seconds: float,
    params: RequestParameters,
    msgs: list[tuple[str, str]],
    output_schema: str | None,
    capture: Any,
    digest_key: DigestKey | None,
) -> None:
    common = {
        "operation": operation,
        "chain": chain,
        "max_retries": max_retries,
        "timeout_seconds": timeout_seconds,
        "attempt_timeout_seconds": attempt_timeout_seconds,
        "parameters": params,
        "output_schema": output_schema,
        "capture": capture,
    }
    model = ExecutionStartedPayload(**common, input=record_input(msgs, capture, scrubber, digest_key))
    values = payloads.input_values(msgs, capture, scrubber, digest_key)
    _same(payloads.execution_started, model, **common, input=values)


@settings(max_examples=200)
@given(
    attempt=st.integers(min_value=1, max_value=100),
    model=texts,
    provider=texts,
    fallback_index=st.integers(min_value=0, max_value=10),
    retry=st.integers(min_value=0, max_value=10),
    timeout_seconds=numbers,
)
def test_attempt_started(**kwargs: Any) -> None:
    _same(payloads.attempt_started, AttemptStartedPayload(**kwargs), **kwargs)


@pytest.mark.parametrize("bad", [{"attempt": 0}, {"fallback_index": -1}, {"retry": -1}])
def test_attempt_started_bounds(bad: dict[str, int]) -> None:
    kwargs: dict[str, Any] = {
        "attempt": 1,
        "model": "m",
        "provider": "p",
        "fallback_index": 0,
        "retry": 0,
        "timeout_seconds": 1.0,
        **bad,
    }
    with pytest.raises(ValidationError):
        AttemptStartedPayload(**kwargs)
    with pytest.raises(ValueError, match="out of range"):
        payloads.attempt_started(**kwargs)


@settings(max_examples=300)
@given(
    attempt=ids,
    model=texts,
    provider=texts,
    latency_ms=numbers,
    usage=usages,
    finish_reason=opt() | provider_texts,
    request_id=opt() | provider_texts,
    response_id=opt() | provider_texts,
    response_model=opt() | provider_texts,
    time_to_first_chunk_ms=opt() | numbers,
    text=provider_texts,
    capture=policies,
    digest_key=digest_keys,
)
def test_attempt_succeeded(text: str, capture: Any, digest_key: DigestKey | None, **kwargs: Any) -> None:
    model = AttemptSucceededPayload(**kwargs, output=record_output(text, capture, scrubber, digest_key))
    output = payloads.output_values(text, capture, scrubber, digest_key)
    _same(payloads.attempt_succeeded, model, **kwargs, output=output)


@settings(max_examples=300)
@given(
    attempt=ids,
    model=texts,
    provider=texts,
    latency_ms=numbers,
    error_type=texts,
    error_class=texts,
    message=provider_texts,
    status_code=opt() | st.integers(min_value=100, max_value=599),
    request_id=opt() | provider_texts,
    retry_after_seconds=opt() | retry_afters,
    next_action=st.sampled_from(["retry", "fall_back", "fail"]),
    backoff_seconds=opt() | numbers,
    chunks_delivered=ids,
)
def test_attempt_failed(**kwargs: Any) -> None:
    _same(payloads.attempt_failed, AttemptFailedPayload(**kwargs), **kwargs)


@settings(max_examples=100)
@given(from_model=texts, to_model=texts, from_index=ids, to_index=ids, reason=texts)
def test_fallback_triggered(**kwargs: Any) -> None:
    _same(payloads.fallback_triggered, FallbackTriggeredPayload(**kwargs), **kwargs)


@settings(max_examples=300)
@given(
    model=texts,
    provider=texts,
    attempts=ids,
    fallback_used=st.booleans(),
    latency_ms=numbers,
    usage=usages,
    finish_reason=opt() | provider_texts,
    text=provider_texts,
    capture=policies,
    digest_key=digest_keys,
)
def test_execution_succeeded(text: str, capture: Any, digest_key: DigestKey | None, **kwargs: Any) -> None:
    model = ExecutionSucceededPayload(**kwargs, output=record_output(text, capture, scrubber, digest_key))
    output = payloads.output_values(text, capture, scrubber, digest_key)
    _same(payloads.execution_succeeded, model, **kwargs, output=output)


@settings(max_examples=200)
@given(
    error_type=texts,
    message=provider_texts,
    attempts=ids,
    latency_ms=numbers,
    last_model=opt() | texts,
    chunks_delivered=ids,
)
def test_execution_failed(**kwargs: Any) -> None:
    _same(payloads.execution_failed, ExecutionFailedPayload(**kwargs), **kwargs)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_like_the_models(value: float) -> None:
    with pytest.raises(ValidationError):
        ExecutionFailedPayload(error_type="e", message="m", attempts=1, latency_ms=value)
    with pytest.raises(ValueError, match="finite"):
        payloads.execution_failed(
            error_type="e", message="m", attempts=1, latency_ms=value, last_model=None, chunks_delivered=0
        )


_FAILED = {
    "attempt": 1,
    "model": "m",
    "provider": "p",
    "latency_ms": 1.5,
    "error_type": "rate_limited",
    "error_class": "RateLimitError",
    "message": "slow down",
    "status_code": 429,
    "request_id": None,
    "retry_after_seconds": None,
    "next_action": "retry",
    "backoff_seconds": 0.5,
    "chunks_delivered": 0,
}


@pytest.mark.parametrize(
    "loose",
    [
        {"status_code": 429.0},
        {"status_code": "429"},
        {"attempt": True},
        {"latency_ms": "12.5"},
        {"latency_ms": 12},
        {"retry_after_seconds": "3"},
        {"request_id": "req-1"},
    ],
)
def test_values_not_of_the_exact_type_are_validated_as_the_model_does(loose: dict[str, Any]) -> None:
    kwargs = {**_FAILED, **loose}
    _same(payloads.attempt_failed, AttemptFailedPayload(**kwargs), **kwargs)


@pytest.mark.parametrize(
    "bad",
    [
        {"status_code": 429.5},
        {"request_id": 123},
        {"message": None},
        {"next_action": "panic"},
        {"latency_ms": "slow"},
        {"attempt": "first"},
    ],
)
def test_values_the_model_refuses_are_refused(bad: dict[str, Any]) -> None:
    kwargs = {**_FAILED, **bad}
    with pytest.raises(ValidationError):
        AttemptFailedPayload(**kwargs)
    with pytest.raises(ValueError):  # a ValidationError, or ours for the literals
        payloads.attempt_failed(**kwargs)


@pytest.mark.parametrize("value", [1e-7, 1e-6, 9.9e-6, 2.0**53, 1e16 + 2, 1e22, -1e-300])
def test_floats_orjson_writes_differently_take_the_rewriting(value: float) -> None:
    kwargs = {**_FAILED, "latency_ms": value}
    values, plain = plain_floats(JsonPayload(payloads.attempt_failed, **kwargs))
    assert not plain
    assert canonical_json(values) == canonical_json(AttemptFailedPayload(**kwargs).model_dump(mode="json"))


def test_the_plain_float_flag_is_per_payload() -> None:
    plain_floats(JsonPayload(payloads.attempt_failed, **{**_FAILED, "latency_ms": 1e-7}))
    assert plain_floats(JsonPayload(payloads.attempt_failed, **_FAILED))[1]


def _failed_values() -> dict[str, Any]:
    return payloads.execution_failed(
        error_type="timeout", message="late", attempts=2, latency_ms=60.0, last_model="m", chunks_delivered=0
    )


def test_a_json_payload_seals_to_the_same_event_as_its_model() -> None:
    header = StreamHeader(stream_id=uuid7(), tenant_id="t1", agent_id="a")
    moment = datetime.now(UTC)
    event_id = uuid7()
    by_values = StreamSealer(header).draft(
        "ExecutionFailed", JsonPayload(_failed_values), occurred_at=moment, event_id=event_id
    )
    model = PAYLOAD_TYPES["ExecutionFailed"].model_validate(_failed_values())
    by_model = StreamSealer(header).draft("ExecutionFailed", model, occurred_at=moment, event_id=event_id)
    (values_fields, values_canonical), (model_fields, model_canonical) = by_values.stored_form(), by_model.stored_form()
    assert values_canonical == model_canonical
    assert values_fields["payload"].json_text == model_fields["payload"].json_text
    assert by_values.event == by_model.event
    assert by_values.payload == model
    assert compute_hash(by_values.event.to_record()) == by_values.event.hash
    assert verify_chain([by_values.event])


def test_the_payload_model_is_built_only_when_read() -> None:
    calls: list[int] = []

    def build() -> dict[str, Any]:
        calls.append(1)
        return _failed_values()

    sealer = StreamSealer(StreamHeader(stream_id=uuid7(), tenant_id="t1"))
    draft = sealer.draft("ExecutionFailed", JsonPayload(build), occurred_at=datetime.now(UTC))
    draft.stored_form()
    assert draft._payload is None
    assert isinstance(draft.payload, ExecutionFailedPayload)
    assert calls == [1]  # the values are built once, for the sealing and the model


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, 0, 120000, tzinfo=timezone(timedelta(0))),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=ZoneInfo("UTC")),
    ],
)
def test_occurred_at_is_hashed_as_pydantic_writes_it(moment: datetime) -> None:
    sealer = StreamSealer(StreamHeader(stream_id=uuid7(), tenant_id="t1"))
    event = sealer.draft("ExecutionFailed", JsonPayload(_failed_values), occurred_at=moment).event
    assert compute_hash(event.to_record()) == event.hash
    assert verify_chain([event.to_record()])


@settings(max_examples=500)
@given(st.none() | st.text() | st.sampled_from(['a"b', "a\\b", "tab\there", "\x7f", "\u2028", "é", "😀", "/"]))
def test_the_stream_fields_are_written_as_orjson_writes_them(value: str | None) -> None:
    assert json_text(value) == orjson.dumps(value).decode()


def test_usage_without_a_reported_cost_keeps_its_form_and_one_with_it_is_stored() -> None:
    usage = TokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cached_tokens=4)

    assert "cost_usd" not in usage.model_dump(mode="json")
    assert "cost_usd" not in (usage_values(usage) or {})
    billed = usage.model_copy(update={"cost_usd": 0.0123})
    assert billed.model_dump(mode="json")["cost_usd"] == usage_values(billed)["cost_usd"] == 0.0123  # type: ignore[index]
    assert (billed + billed).cost_usd == 0.0246
    assert (usage + billed).cost_usd is None, "a sum over a call of unknown cost is unknown, not a partial bill"


def test_usage_without_cache_writes_keeps_its_form_and_one_with_them_is_stored() -> None:
    usage = TokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cached_tokens=4)

    assert "cache_write_tokens" not in usage.model_dump(mode="json")
    assert "cache_write_tokens" not in (usage_values(usage) or {})
    written = usage.model_copy(update={"cache_write_tokens": 3})
    assert written.model_dump(mode="json")["cache_write_tokens"] == usage_values(written)["cache_write_tokens"] == 3  # type: ignore[index]
    assert (usage + written).cache_write_tokens == 3
