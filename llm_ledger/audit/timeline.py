"""One session as recorded: its executions and their attempts, read from the raw events as stored (not
from the read models), each with what the check of its stream found (``integrity.check_streams``). The
caller hands over the connection, scoped to the tenant (the dashboard's view reads through its
tenant-bound store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from llm_ledger.audit.integrity import StreamCheck, check_streams
from llm_ledger.store import as_utc
from llm_ledger.store.schema import READ_COLUMNS
from llm_ledger.store.schema import events as events_table


@dataclass(frozen=True, slots=True)
class AttemptView:
    attempt: int
    model: str
    provider: str
    started_at: datetime
    outcome: str
    """``succeeded``, ``failed`` or ``in flight``."""
    latency_ms: float | None
    error_type: str | None
    message: str | None
    span_id: str | None


@dataclass(frozen=True, slots=True)
class ExecutionView:
    execution_id: str
    step: str | None
    agent_id: str | None
    turn_id: str | None
    started_at: datetime
    outcome: str
    """``succeeded``, ``failed`` or ``incomplete`` (no terminal event yet)."""
    model: str | None
    latency_ms: float | None
    fallback_used: bool
    trace_id: str | None
    attempts: list[AttemptView]
    integrity: StreamCheck = field(default_factory=StreamCheck)
    """What checking its stream found: ``broken`` when an event was changed, removed or cut short since
    it was recorded (the figures above are then not what happened), ``incomplete`` without an outcome."""


def session_timeline(connection: Connection, tenant_id: str, session_id: str) -> list[ExecutionView]:
    """The executions of one session and their attempts, from the raw events as stored, in time order;
    each with what the check of its stream found (``ExecutionView.integrity``): an execution whose
    events were changed, removed or cut short is shown as such, never as valid."""
    query = (
        select(*READ_COLUMNS)
        .where(events_table.c.tenant_id == tenant_id, events_table.c.session_id == session_id)
        .order_by(events_table.c.stream_id, events_table.c.stream_position, events_table.c.global_position)
    )
    streams: dict[str, list[Any]] = {}
    for row in connection.execute(query):
        streams.setdefault(str(row.stream_id), []).append(row)
    checks = check_streams(connection, tenant_id, streams)
    views = [_execution_view(rows, checks[stream_id]) for stream_id, rows in streams.items()]
    return sorted(views, key=lambda view: (view.started_at, view.execution_id))


def _execution_view(rows: Sequence[Any], check: StreamCheck) -> ExecutionView:
    """One stream's rows (in stream order) as an execution. Read as stored, not validated into events: a
    tampered event is shown with its stream flagged rather than failing the page, so each value is taken
    only when it has the type the executor records."""
    first = rows[0]
    attempts: dict[int, dict[str, Any]] = {}
    outcome, model, latency, fell_back = "incomplete", None, None, False
    for row in rows:
        payload: dict[str, Any] = row.payload if isinstance(row.payload, dict) else {}
        number = payload.get("attempt")
        if row.event_type == "AttemptStarted" and isinstance(number, int):
            attempts[number] = {
                "attempt": number,
                "model": str(payload.get("model")),
                "provider": str(payload.get("provider")),
                "started_at": as_utc(row.occurred_at),
                "outcome": "in flight",
                "latency_ms": None,
                "error_type": None,
                "message": None,
                "span_id": row.span_id,
            }
        elif row.event_type in ("AttemptSucceeded", "AttemptFailed") and number in attempts:
            attempts[number].update(
                outcome="succeeded" if row.event_type == "AttemptSucceeded" else "failed",
                latency_ms=_number(payload.get("latency_ms")),
                error_type=_text(payload.get("error_type")),
                message=_text(payload.get("message")),
            )
        elif row.event_type == "ExecutionSucceeded":
            outcome, model, latency = "succeeded", _text(payload.get("model")), _number(payload.get("latency_ms"))
            fell_back = bool(payload.get("fallback_used"))
        elif row.event_type == "ExecutionFailed":
            outcome, model, latency = "failed", _text(payload.get("last_model")), _number(payload.get("latency_ms"))
        elif row.event_type == "FallbackTriggered":
            fell_back = True
    return ExecutionView(
        execution_id=str(first.stream_id),
        step=first.step,
        agent_id=first.agent_id,
        turn_id=first.turn_id,
        started_at=as_utc(first.occurred_at),
        outcome=outcome,
        model=model,
        latency_ms=latency,
        fallback_used=fell_back,
        trace_id=first.trace_id,
        attempts=[AttemptView(**attempt) for _, attempt in sorted(attempts.items())],
        integrity=check,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
