"""One session as recorded: its executions and their attempts, and the tools' executions between them, read
from the raw events as stored (not from the read models), each with what the check of its stream found
(``integrity.check_streams``); and one execution as recorded, every event of its stream with the tools'
executions it asked for (``execution_record``). The caller hands over the connection, scoped to the tenant
(the dashboard's view reads through its tenant-bound store).

A stream's kind is told by its first event (``events.STREAM_KIND_OF_START``): ``ExecutionStarted`` begins a
round trip to a model, ``ToolCallStarted`` a tool's execution, which names the execution whose answer asked
for it and the provider's tool call id. A stream whose first event is neither (a tampered or cut one) is
shown as an execution, flagged by its check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, select

from llm_ledger.audit.integrity import StreamCheck, check_streams
from llm_ledger.events import STREAM_KINDS
from llm_ledger.events.encryption import error_text_of, tool_error_in_plain
from llm_ledger.store import as_utc
from llm_ledger.store.schema import READ_COLUMNS
from llm_ledger.store.schema import events as events_table

TOOL_RUN_HORIZON = timedelta(hours=1)
"""How long after the answer that asked for them its tools' executions are looked for: an agent runs the
tools an answer asks for at once, and the search reads the tenant's events of that span at most."""
TOOL_EXECUTIONS_SHOWN = 200
"""The tools' executions of one execution shown, the first ones (an answer asks for a few)."""


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
    retry: int | None = None
    """0 for the first call to its model, 1 for its first retry, ..."""
    next_action: str | None = None
    """What followed a failure: ``retry``, ``fall_back`` or ``fail``."""


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call an execution's answer asked for (``AttemptSucceeded.tool_calls``)."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ExecutionView:
    kind: ClassVar[str] = "execution"

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
    tool_calls: tuple[ToolCallRequest, ...] = ()
    """The tool calls its answer asked for (those of its last successful attempt)."""
    error_type: str | None = None
    """Why the execution failed, from its ``ExecutionFailed`` (e.g. ``all_models_failed``)."""
    message: str | None = None
    """The failure's message as recorded (scrubbed), naming what each model answered."""


@dataclass(frozen=True, slots=True)
class ToolCallView:
    """A tool's execution: its own stream, linked to the execution that asked (``execution_id``) and the
    provider's call id (``tool_call_id``)."""

    kind: ClassVar[str] = "tool_call"

    tool_execution_id: str
    tool_name: str | None
    tool_call_id: str | None
    execution_id: str | None
    step: str | None
    agent_id: str | None
    turn_id: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    """``succeeded``, ``failed`` or ``incomplete`` (no terminal event yet)."""
    latency_ms: float | None
    error_type: str | None
    error_class: str | None
    message: str | None
    """The tool's error as recorded: a sentence naming its class; in a tool execution recorded in full before
    ``error_text`` existed, its text (scrubbed, not encrypted: ``error_in_plain``)."""
    trace_id: str | None
    span_id: str | None
    integrity: StreamCheck = field(default_factory=StreamCheck)
    error_text: dict[str, Any] | None = None
    """The exception's text as stored (``ToolCallFailed.error_text``: sizes, digest, under capture ``full``
    its ciphertext), to be opened with the keys of a reader who may (``failed_event_id`` names its event)."""
    failed_event_id: str | None = None
    error_in_plain: bool = False
    """Whether ``message`` is the exception's text, recorded in full before it was encrypted
    (``events.encryption.tool_error_in_plain``): no erasure covers it."""


TimelineItem = ExecutionView | ToolCallView


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One event of a stream as stored: its place and the values a reader scans for, and its payload whole."""

    position: int
    event_type: str
    occurred_at: datetime
    attempt: int | None
    model: str | None
    outcome: str | None
    """``succeeded`` or ``failed`` for an attempt's or the execution's end, ``fell back`` for a fallback."""
    payload: dict[str, Any]
    event_id: str
    span_id: str | None


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One execution as recorded: every event of its stream in order, the tools' executions it asked for,
    and (``execution.integrity``) what the check of its stream found."""

    execution: ExecutionView
    session_id: str | None
    events: list[RecordedEvent]
    tool_calls: list[ToolCallView]
    tool_calls_cut: bool = False
    """Whether more tool executions name it than the ``TOOL_EXECUTIONS_SHOWN`` first, which alone are in
    ``tool_calls``."""


def session_timeline(connection: Connection, tenant_id: str, session_id: str) -> list[ExecutionView]:
    """The executions of one session and their attempts, from the raw events as stored, in time order;
    each with what the check of its stream found (``ExecutionView.integrity``): an execution whose
    events were changed, removed or cut short is shown as such, never as valid. Tools' executions are
    left out (``session_activity`` has them)."""
    return [item for item in session_activity(connection, tenant_id, session_id) if isinstance(item, ExecutionView)]


def session_activity(connection: Connection, tenant_id: str, session_id: str) -> list[TimelineItem]:
    """The executions of one session and the tools' executions, in time order (so that each tool run
    stands between the round trip that asked for it and the next), each with its stream's check."""
    query = (
        select(*READ_COLUMNS)
        .where(events_table.c.tenant_id == tenant_id, events_table.c.session_id == session_id)
        .order_by(events_table.c.stream_id, events_table.c.stream_position, events_table.c.global_position)
    )
    streams: dict[str, list[Any]] = {}
    for row in connection.execute(query):
        streams.setdefault(str(row.stream_id), []).append(row)
    checks = check_streams(connection, tenant_id, streams)
    views = [
        _tool_call_view(rows, checks[stream_id])
        if rows[0].event_type == _TOOL_START
        else _execution_view(rows, checks[stream_id])
        for stream_id, rows in streams.items()
    ]
    return sorted(views, key=_in_time)


_TOOL_START = STREAM_KINDS["tool_call"].start


@dataclass(frozen=True, slots=True)
class FirstExecution:
    """The execution a session is opened at: its first to fail, else its first."""

    execution_id: str
    failed: bool


def first_execution(connection: Connection, tenant_id: str, session_id: str) -> FirstExecution | None:
    """The session's first execution to fail (its first ``ExecutionFailed``), else its first to start;
    ``None`` for a session without executions. Each a row of the session index, read in time order."""
    for event_type in ("ExecutionFailed", "ExecutionStarted"):
        query = (
            select(events_table.c.stream_id)
            .where(
                events_table.c.tenant_id == tenant_id,
                events_table.c.session_id == session_id,
                events_table.c.event_type == event_type,
            )
            .order_by(events_table.c.occurred_at, events_table.c.stream_id)
            .limit(1)
        )
        found = connection.execute(query).scalar()
        if found is not None:
            return FirstExecution(str(found), failed=event_type == "ExecutionFailed")
    return None


def execution_record(connection: Connection, tenant_id: str, execution_id: str) -> ExecutionRecord | None:
    """One execution of the tenant and the tools' executions it asked for, from the raw events as stored,
    each stream checked; ``None`` when the tenant has no execution of that id (a tool execution's id is
    not an execution's)."""
    rows = list(connection.execute(_streams_query(tenant_id, [execution_id])))
    if not rows or rows[0].event_type == _TOOL_START:
        return None
    asked = _asking_answer(rows)
    tools, is_cut = _tool_streams(connection, tenant_id, asked, execution_id) if asked is not None else ({}, False)
    checks = check_streams(connection, tenant_id, {execution_id: rows, **tools})
    return ExecutionRecord(
        execution=_execution_view(rows, checks[execution_id]),
        session_id=rows[0].session_id,
        events=[_recorded_event(row) for row in rows],
        tool_calls=sorted((_tool_call_view(tool, checks[tool_id]) for tool_id, tool in tools.items()), key=_in_time),
        tool_calls_cut=is_cut,
    )


def _streams_query(tenant_id: str, stream_ids: Sequence[str]) -> Any:
    return (
        select(*READ_COLUMNS)
        .where(events_table.c.tenant_id == tenant_id, events_table.c.stream_id.in_(stream_ids))
        .order_by(events_table.c.stream_id, events_table.c.stream_position, events_table.c.global_position)
    )


def _asking_answer(rows: Sequence[Any]) -> Any | None:
    """The row of the answer whose tool calls the execution shows (its last ``AttemptSucceeded``, as
    ``_execution_view`` reads it), when it asked for any."""
    answers = [row for row in rows if row.event_type == "AttemptSucceeded"]
    if not answers or not _requested(_payload(answers[-1]).get("tool_calls")):
        return None
    return answers[-1]


def _tool_streams(
    connection: Connection, tenant_id: str, asked: Any, execution_id: str
) -> tuple[dict[str, list[Any]], bool]:
    """The streams of the tools' executions that name ``execution_id`` as the one that asked, whatever
    session or turn they were recorded under (a tool run may be given a context of its own), and whether
    there were more than ``TOOL_EXECUTIONS_SHOWN``. They start after the answer that asked and, a tool
    being run for the answer at once, within ``TOOL_RUN_HORIZON`` of it: the tenant and time index bounds
    the scan there."""
    named = events_table.c.payload["execution_id"].as_string()
    starts = (
        select(events_table.c.stream_id)
        .where(
            events_table.c.tenant_id == tenant_id,
            events_table.c.occurred_at >= asked.occurred_at,
            events_table.c.occurred_at < asked.occurred_at + TOOL_RUN_HORIZON,
            events_table.c.event_type == _TOOL_START,
            named == execution_id,
        )
        .order_by(events_table.c.occurred_at)
        .limit(TOOL_EXECUTIONS_SHOWN + 1)
    )
    found = [str(stream_id) for stream_id in connection.execute(starts).scalars()]
    shown = found[:TOOL_EXECUTIONS_SHOWN]
    streams: dict[str, list[Any]] = {}
    if shown:
        for row in connection.execute(_streams_query(tenant_id, shown)):
            streams.setdefault(str(row.stream_id), []).append(row)
    return streams, len(found) > len(shown)


def _payload(row: Any) -> dict[str, Any]:
    return row.payload if isinstance(row.payload, dict) else {}


_OUTCOMES = {
    "AttemptSucceeded": "succeeded",
    "AttemptFailed": "failed",
    "ExecutionSucceeded": "succeeded",
    "ExecutionFailed": "failed",
    "FallbackTriggered": "fell back",
}


def _recorded_event(row: Any) -> RecordedEvent:
    payload = _payload(row)
    attempt = payload.get("attempt")
    model = payload.get("model", payload.get("last_model", payload.get("to_model")))
    return RecordedEvent(
        position=row.stream_position,
        event_type=row.event_type,
        occurred_at=as_utc(row.occurred_at),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        model=_text(model),
        outcome=_OUTCOMES.get(row.event_type),
        payload=payload,
        event_id=str(row.event_id),
        span_id=row.span_id,
    )


def _in_time(item: TimelineItem) -> tuple[datetime, str]:
    return item.started_at, item.execution_id if isinstance(item, ExecutionView) else item.tool_execution_id


def _execution_view(rows: Sequence[Any], check: StreamCheck) -> ExecutionView:
    """One stream's rows (in stream order) as an execution. Read as stored, not validated into events: a
    tampered event is shown with its stream flagged rather than failing the page, so each value is taken
    only when it has the type the executor records."""
    first = rows[0]
    attempts: dict[int, dict[str, Any]] = {}
    outcome, model, latency, fell_back = "incomplete", None, None, False
    error_type = message = None
    requested: tuple[ToolCallRequest, ...] = ()
    for row in rows:
        payload = _payload(row)
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
                "retry": retry if isinstance(retry := payload.get("retry"), int) else None,
                "next_action": None,
            }
        elif row.event_type in ("AttemptSucceeded", "AttemptFailed") and number in attempts:
            attempts[number].update(
                outcome="succeeded" if row.event_type == "AttemptSucceeded" else "failed",
                latency_ms=_number(payload.get("latency_ms")),
                error_type=_text(payload.get("error_type")),
                message=_text(payload.get("message")),
                next_action=_text(payload.get("next_action")),
            )
            if row.event_type == "AttemptSucceeded":
                requested = _requested(payload.get("tool_calls"))
        elif row.event_type == "ExecutionSucceeded":
            outcome, model, latency = "succeeded", _text(payload.get("model")), _number(payload.get("latency_ms"))
            fell_back = bool(payload.get("fallback_used"))
        elif row.event_type == "ExecutionFailed":
            outcome, model, latency = "failed", _text(payload.get("last_model")), _number(payload.get("latency_ms"))
            error_type, message = _text(payload.get("error_type")), _text(payload.get("message"))
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
        tool_calls=requested,
        error_type=error_type,
        message=message,
    )


def _requested(calls: Any) -> tuple[ToolCallRequest, ...]:
    if not isinstance(calls, list):
        return ()
    return tuple(
        ToolCallRequest(call["id"], call["name"])
        for call in calls
        if isinstance(call, dict) and isinstance(call.get("id"), str) and isinstance(call.get("name"), str)
    )


def _tool_call_view(rows: Sequence[Any], check: StreamCheck) -> ToolCallView:
    """One tool execution's rows (in stream order), read as stored like an execution's."""
    first = rows[0]
    started: dict[str, Any] = first.payload if isinstance(first.payload, dict) else {}
    outcome, ended_at, latency = "incomplete", None, None
    error_type = error_class = message = failed_event_id = None
    error_text: dict[str, Any] | None = None
    in_plain = False
    for row in rows[1:]:
        payload = _payload(row)
        if row.event_type in ("ToolCallSucceeded", "ToolCallFailed") and outcome == "incomplete":
            outcome = "succeeded" if row.event_type == "ToolCallSucceeded" else "failed"
            ended_at, latency = as_utc(row.occurred_at), _number(payload.get("latency_ms"))
            if row.event_type == "ToolCallFailed":
                error_type, error_class = _text(payload.get("error_type")), _text(payload.get("error_class"))
                message, failed_event_id = _text(payload.get("message")), str(row.event_id)
                error_text = error_text_of(payload)
                in_plain = tool_error_in_plain(row.event_type, payload, _text(started.get("capture")))
    return ToolCallView(
        tool_execution_id=str(first.stream_id),
        tool_name=_text(started.get("tool_name")),
        tool_call_id=_text(started.get("tool_call_id")),
        execution_id=_text(started.get("execution_id")),
        step=first.step,
        agent_id=first.agent_id,
        turn_id=first.turn_id,
        started_at=as_utc(first.occurred_at),
        ended_at=ended_at,
        outcome=outcome,
        latency_ms=latency,
        error_type=error_type,
        error_class=error_class,
        message=message,
        trace_id=first.trace_id,
        span_id=first.span_id,
        integrity=check,
        error_text=error_text,
        failed_event_id=failed_event_id,
        error_in_plain=in_plain,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
