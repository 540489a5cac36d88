"""The hashes of a fixed stream, as the ledger has always computed them (written down from commit 1026cd0,
before the event declaration was restructured): a change to the canonical form, to a builder's values or
to the envelope that would make stored ledgers fail ``audit verify`` fails here first. Both of the
sealing's routes are held to them: the payload builders' (``JsonPayload``) and the payload models'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from llm_ledger.events import (
    PAYLOAD_TYPES,
    RequestParameters,
    Scrubber,
    StreamHeader,
    StreamSealer,
    TokenUsage,
    compute_hash,
)
from llm_ledger.events import values as builders
from llm_ledger.events.values import JsonDict, JsonPayload

_scrubber = Scrubber([])
_usage = TokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cached_tokens=2)
_output = builders.output_values("hi there", "full", _scrubber)
_input = builders.input_values([("user", "hello \u00e9 \u2028")], "full", _scrubber)

# Floats in both of orjson's forms (1e-7 and 3e20 are written otherwise than canonical JSON writes them).
_STREAM: list[tuple[str, Any, dict[str, Any]]] = [
    ("ExecutionStarted", builders.execution_started, {
        "operation": "generate", "chain": ("openai/gpt-4.1", "groq/llama"), "max_retries": 2,
        "timeout_seconds": 60.0, "attempt_timeout_seconds": 12.5,
        "parameters": RequestParameters(temperature=0.5, max_tokens=100, stop_sequences=("\n",)),
        "input": _input, "output_schema": None, "capture": "full",
    }),
    ("AttemptStarted", builders.attempt_started, {
        "attempt": 1, "model": "openai/gpt-4.1", "provider": "openai", "fallback_index": 0, "retry": 0,
        "timeout_seconds": 12.5,
    }),
    ("AttemptFailed", builders.attempt_failed, {
        "attempt": 1, "model": "openai/gpt-4.1", "provider": "openai", "latency_ms": 1e-7,
        "error_type": "rate_limited", "error_class": "RateLimitError", "message": "slow down", "status_code": 429,
        "request_id": "req-1", "retry_after_seconds": 1.5, "next_action": "fall_back", "backoff_seconds": None,
        "chunks_delivered": 0,
    }),
    ("FallbackTriggered", builders.fallback_triggered, {
        "from_model": "openai/gpt-4.1", "to_model": "groq/llama", "from_index": 0, "to_index": 1,
        "reason": "rate_limited",
    }),
    ("AttemptSucceeded", builders.attempt_succeeded, {
        "attempt": 2, "model": "groq/llama", "provider": "groq", "latency_ms": 123.456, "usage": _usage,
        "finish_reason": "stop", "request_id": None, "response_id": "r", "response_model": "llama",
        "time_to_first_chunk_ms": 3e20, "output": _output,
    }),
    ("ExecutionSucceeded", builders.execution_succeeded, {
        "model": "groq/llama", "provider": "groq", "attempts": 2, "fallback_used": True, "latency_ms": 200.0,
        "usage": _usage, "finish_reason": "stop", "output": _output,
    }),
    ("ExecutionFailed", builders.execution_failed, {
        "error_type": "timeout", "message": "x" * 5000, "attempts": 3, "latency_ms": 5.0, "last_model": None,
        "chunks_delivered": 2,
    }),
]  # fmt: skip

_HASHES = [
    "1ab4c409078a1ed5e759db4d71ab79e6144ab06ed371f3c2ddc4d9686b6e320c",
    "b8d583547bdacaf641ea2bb5b5948da9677b469b7eeb33ac2de5e2e343bfcecd",
    "9361d33c41aa73d75b823d91b3a238aefbdd8e8b62ebf4bb1be4a3dd1ecf5258",
    "3e6759fb6163a09ea1b6b9b595c7ab0cb3a089caefe4b720f4d9fcd3cfdbe52b",
    "cf3c45a036f639860e551f3f8dc28278a038d21a57fba3097bee1c6812355239",
    "44817b4c8d3517e8614778c46911874666bb89a14b737ec46dd09081f6ec31d6",
]
_FAILED_HASH = "dab02e1b26a699dff02af97869561ff500c11f3ae2b91fbeb17fa76b2ad6647f"

_HEADER = StreamHeader(
    stream_id=UUID("01890a5d-ac96-774b-bcce-b302099a8057"),
    tenant_id="t1",
    agent_id="a",
    session_id=None,
    turn_id="u",
    step="p",
)
_T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _as_model(event_type: str, build: Any, arguments: dict[str, Any]) -> Any:
    values: JsonDict = build(**arguments)
    return PAYLOAD_TYPES[event_type].model_validate(values)


@pytest.mark.parametrize("route", ["builders", "models"])
def test_a_fixed_stream_hashes_as_it_always_has(route: str) -> None:
    successful, failed = StreamSealer(_HEADER), StreamSealer(_HEADER)
    hashes = []
    for index, (event_type, build, arguments) in enumerate(_STREAM):
        payload = JsonPayload(build, **arguments) if route == "builders" else _as_model(event_type, build, arguments)
        sealer = failed if event_type == "ExecutionFailed" else successful
        event = sealer.draft(
            event_type,
            payload,
            occurred_at=_T0 + timedelta(milliseconds=index) if sealer is successful else _T0,
            event_id=UUID(int=index + 1) if sealer is successful else UUID(int=99),
            trace_id=None if sealer is failed else "0" * 31 + "1",
        ).event
        assert compute_hash(event.to_record()) == event.hash
        hashes.append(event.hash)
    assert hashes[:-1] == _HASHES
    assert hashes[-1] == _FAILED_HASH
