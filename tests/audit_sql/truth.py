"""What each audit view must hold, computed in Python from the events read through ``EventStore``,
independently of the views' SQL. Rows are dicts keyed by the views' column names."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from llm_ledger.events import STREAM_KIND_OF_START, STREAM_KINDS, Event
from llm_ledger.events.model import TERMINAL_EVENT_TYPES

Row = dict[str, Any]


def streams(events: Iterable[Event], kind: str | None = "execution") -> dict[str, list[Event]]:
    """Each stream's events in stream order, by stream id: the executions' (``kind``), the tools'
    executions' (``tool_call``), or every stream (None)."""
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[str(event.stream_id)].append(event)
    ordered = {stream: sorted(found, key=lambda e: e.stream_position) for stream, found in grouped.items()}
    return {stream: found for stream, found in ordered.items() if kind is None or kind_of(found) == kind}


def kind_of(stream: list[Event]) -> str:
    return STREAM_KIND_OF_START[stream[0].event_type].name


def _context(event: Event) -> Row:
    return {
        "execution_id": str(event.stream_id),
        "tenant_id": event.tenant_id,
        "agent_id": event.agent_id,
        "session_id": event.session_id,
        "turn_id": event.turn_id,
        "step": event.step,
    }


def _first(stream: list[Event], *types: str) -> Event | None:
    return next((event for event in stream if event.event_type in types), None)


def _payload(event: Event | None) -> dict[str, Any]:
    return {} if event is None else event.payload.model_dump(mode="json")


def _digest(record: dict[str, Any] | None, name: str) -> Row:
    """The three digest columns of a capture record (migration 0012): the keyed digest, labelled by its
    algorithm and key, else an older event's plain SHA-256, labelled ``sha256``."""
    record = record or {}
    keyed, plain = record.get("digest"), record.get("sha256")
    return {
        f"{name}_digest": keyed or plain,
        f"{name}_digest_alg": record.get("digest_alg") if keyed else "sha256" if plain else None,
        f"{name}_key_id": record.get("key_id"),
    }


def _outcome(terminal: Event | None) -> str:
    if terminal is None:
        return "incomplete"
    return "succeeded" if terminal.event_type == "ExecutionSucceeded" else "failed"


def executions(events: Iterable[Event]) -> dict[str, Row]:
    rows = {}
    for stream_id, stream in streams(events).items():
        started = _first(stream, "ExecutionStarted")
        assert started is not None, f"stream {stream_id} has no ExecutionStarted"
        terminal = _first(stream, *TERMINAL_EVENT_TYPES)
        start, end = _payload(started), _payload(terminal)
        outcome = _outcome(terminal)
        failures = [e for e in stream if e.event_type == "AttemptFailed"]
        attempts = [e for e in stream if e.event_type == "AttemptStarted"]
        usage = end.get("usage") or {}
        rows[stream_id] = {
            **_context(started),
            "operation": start["operation"],
            "started_at": started.occurred_at,
            "ended_at": terminal.occurred_at if terminal else None,
            "chain": start["chain"],
            "final_model": end.get("model") if outcome == "succeeded" else end.get("last_model"),
            "final_provider": {
                "succeeded": end.get("provider"),
                "failed": _payload(attempts[-1]).get("provider") if attempts else None,
            }.get(outcome),
            "outcome": outcome,
            "error_type": end.get("error_type") if outcome == "failed" else None,
            "last_attempt_error_type": _payload(failures[-1])["error_type"] if failures else None,
            "attempts": len(attempts),
            "fallbacks": sum(e.event_type == "FallbackTriggered" for e in stream),
            "latency_ms": end.get("latency_ms"),
            "total_tokens": usage.get("total_tokens"),
            "input_sha256": start["input"]["sha256"],
            "output_sha256": (end.get("output") or {}).get("sha256"),
            **_digest(start["input"], "input"),
            **_digest(end.get("output"), "output"),
            "trace_id": started.trace_id,
            "events": len(stream),
            "head_hash": stream[-1].hash,
        }
    return rows


def attempts(events: Iterable[Event]) -> dict[tuple[str, int], Row]:
    rows = {}
    for stream_id, stream in streams(events).items():
        outcomes = {_payload(e)["attempt"]: e for e in stream if e.event_type in ("AttemptSucceeded", "AttemptFailed")}
        for started in (e for e in stream if e.event_type == "AttemptStarted"):
            begin = _payload(started)
            result = outcomes.get(begin["attempt"])
            end = _payload(result)
            rows[(stream_id, begin["attempt"])] = {
                **_context(started),
                "attempt": begin["attempt"],
                "model": begin["model"],
                "provider": begin["provider"],
                "retry": begin["retry"],
                "fallback_index": begin["fallback_index"],
                "started_at": started.occurred_at,
                "ended_at": result.occurred_at if result else None,
                "outcome": {None: "incomplete", "AttemptSucceeded": "succeeded", "AttemptFailed": "failed"}[
                    result.event_type if result else None
                ],
                "error_type": end.get("error_type"),
                "status_code": end.get("status_code"),
                "next_action": end.get("next_action"),
                "latency_ms": end.get("latency_ms"),
                "total_tokens": (end.get("usage") or {}).get("total_tokens"),
                "time_to_first_chunk_ms": end.get("time_to_first_chunk_ms"),
                "cached_tokens": (end.get("usage") or {}).get("cached_tokens"),
                "reasoning_tokens": (end.get("usage") or {}).get("reasoning_tokens"),
                "reported_cost_usd": (end.get("usage") or {}).get("cost_usd"),
            }
    return rows


def fallbacks(events: Iterable[Event]) -> list[Row]:
    rows = []
    for stream in streams(events).values():
        outcome = _outcome(_first(stream, *TERMINAL_EVENT_TYPES))
        for fallback in (e for e in stream if e.event_type == "FallbackTriggered"):
            moved = _payload(fallback)
            rows.append(
                {
                    **_context(fallback),
                    "occurred_at": fallback.occurred_at,
                    "from_model": moved["from_model"],
                    "to_model": moved["to_model"],
                    "reason": moved["reason"],
                    "execution_outcome": outcome,
                    "succeeded_after": outcome == "succeeded",
                }
            )
    return rows


def incomplete(events: Iterable[Event]) -> dict[str, Row]:
    """Executions and tools' executions without a terminal event (``execution_id`` the stream's id)."""
    rows = {}
    for stream_id, stream in streams(events, kind=None).items():
        if _first(stream, *TERMINAL_EVENT_TYPES) is not None:
            continue
        rows[stream_id] = {
            **_context(stream[0]),
            "started_at": stream[0].occurred_at,
            "last_event_at": stream[-1].occurred_at,
            "last_event_type": stream[-1].event_type,
            "events": len(stream),
            "attempts": sum(e.event_type == "AttemptStarted" for e in stream),
            "kind": kind_of(stream),
        }
    return rows


def tool_calls(events: Iterable[Event]) -> dict[str, Row]:
    """``audit_tool_calls``: one row per tool execution, by its stream id."""
    rows = {}
    for stream_id, stream in streams(events, kind="tool_call").items():
        started = stream[0]
        terminal = _first(stream, *STREAM_KINDS["tool_call"].terminals)
        start, end = _payload(started), _payload(terminal)
        outcome = {None: "incomplete", "ToolCallSucceeded": "succeeded", "ToolCallFailed": "failed"}[
            terminal.event_type if terminal else None
        ]
        rows[stream_id] = {
            **{key: value for key, value in _context(started).items() if key != "execution_id"},
            "execution_id": start["execution_id"],
            "tool_call_id": start["tool_call_id"],
            "tool_name": start["tool_name"],
            "outcome": outcome,
            "latency_ms": end.get("latency_ms"),
            "error_type": end.get("error_type"),
            "started_at": started.occurred_at,
            "tool_execution_id": stream_id,
            "ended_at": terminal.occurred_at if terminal else None,
            "error_class": end.get("error_class"),
            "error_message": end.get("message"),
            "capture": start["capture"],
            "trace_id": started.trace_id,
            "span_id": started.span_id,
            **_digest(start["arguments"], "arguments"),
            **_digest(end.get("result"), "result"),
            **_digest(end.get("error_text"), "error_text"),
        }
    return rows
