"""Tool executions as the executor records them: one stream each (``ToolCallStarted``, then a terminal
``ToolCallSucceeded`` or ``ToolCallFailed``), sealed by the real ``StreamSealer`` from the real payload
builders of ``values.py``, with the context of the execution that asked (what ``record_tool_call`` does,
written here so that the ledger's tests do not depend on the executor's recording)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import orjson

from llm_ledger.events import (
    CapturePolicy,
    DigestKey,
    Event,
    Scrubber,
    StreamHeader,
    StreamSealer,
    ToolCallStartedPayload,
    parse_event,
    uuid7,
)
from llm_ledger.events import values as builders
from llm_ledger.events.values import JsonPayload

Outcome = Literal["succeeded", "failed", "incomplete"]
TOOLS = ("lookup_order", "refund_policy", "weather")
_scrubber = Scrubber([])


@dataclass(frozen=True, slots=True)
class Context:
    tenant_id: str
    agent_id: str | None = None
    session_id: str | None = None
    turn_id: str | None = None
    step: str | None = None


def tool_stream(
    context: Context,
    *,
    tool_name: str,
    started_at: datetime,
    outcome: Outcome = "succeeded",
    latency_ms: float = 12.5,
    execution_id: UUID | None = None,
    tool_call_id: str | None = None,
    arguments: str = '{"order": 42}',
    result: str = "shipped",
    error_type: str = "tool_error",
    message: str = "order service unavailable",
    capture: CapturePolicy = "hash",
    trace_id: str | None = None,
    digest_key: DigestKey | None = None,
) -> list[Event]:
    """One tool execution's events, sealed: its terminal event ``latency_ms`` after its start (none for
    ``incomplete``); digests keyed under ``digest_key`` as the executor keys them, else plain SHA-256 as
    events before keyed digests hold them."""
    header = StreamHeader(
        stream_id=uuid7(),
        tenant_id=context.tenant_id,
        agent_id=context.agent_id,
        session_id=context.session_id,
        turn_id=context.turn_id,
        step=context.step,
    )
    sealer = StreamSealer(header)
    started = JsonPayload(
        builders.tool_call_started,
        tool_name=tool_name,
        tool_call_id=tool_call_id,
        execution_id=execution_id,
        arguments=builders.output_values(arguments, capture, _scrubber, digest_key),
        capture=capture,
    )
    drafts = [sealer.draft("ToolCallStarted", started, occurred_at=started_at, trace_id=trace_id)]
    ended_at = started_at + timedelta(milliseconds=latency_ms)
    if outcome == "succeeded":
        succeeded = JsonPayload(
            builders.tool_call_succeeded,
            tool_name=tool_name,
            latency_ms=latency_ms,
            result=builders.output_values(result, capture, _scrubber, digest_key),
        )
        drafts.append(sealer.draft("ToolCallSucceeded", succeeded, occurred_at=ended_at, trace_id=trace_id))
    elif outcome == "failed":
        failed = JsonPayload(
            builders.tool_call_failed,
            tool_name=tool_name,
            latency_ms=latency_ms,
            error_type=error_type,
            error_class="ConnectionError",
            message=message,
        )
        drafts.append(sealer.draft("ToolCallFailed", failed, occurred_at=ended_at, trace_id=trace_id))
    # Through the stored form, as a reader gets them back (and the way the store takes them).
    return [parse_event(orjson.dumps(draft.event.to_record())) for draft in drafts]


def asked_by(execution: Sequence[Event]) -> Context:
    """The context of an execution's stream (its first event's), which its tool executions carry."""
    first = execution[0]
    return Context(first.tenant_id, first.agent_id, first.session_id, first.turn_id, first.step)


def with_tool_streams(events: Sequence[Event], *, every: int = 3, seed: int = 5) -> list[Event]:
    """``events`` with the tool executions of ``tool_streams_for`` each placed right after the terminal
    event of the execution that asked, as a process records them."""
    asked: dict[UUID, list[Event]] = {}
    for event in tool_streams_for(events, every=every, seed=seed):
        if isinstance(event.payload, ToolCallStartedPayload) and event.payload.execution_id is not None:
            execution = event.payload.execution_id
        asked.setdefault(execution, []).append(event)
    placed: list[Event] = []
    for event in events:
        placed.append(event)
        if event.event_type == "ExecutionSucceeded":
            placed += asked.get(event.stream_id, [])
    return placed


def tool_streams_for(events: Sequence[Event], *, every: int = 3, seed: int = 5) -> list[Event]:
    """Tool executions for every ``every``-th succeeded execution among ``events``: one or two tools each,
    started just after the execution's end, in its context, naming it and a tool call id; about one in
    four fails. None is left incomplete (a workload that verifies clean)."""
    rng = random.Random(seed)
    streams: dict[UUID, list[Event]] = {}
    for event in events:
        streams.setdefault(event.stream_id, []).append(event)
    succeeded = [
        s
        for s in streams.values()
        if s[0].event_type == "ExecutionStarted" and s[-1].event_type == "ExecutionSucceeded"
    ]
    made: list[Event] = []
    for index, execution in enumerate(succeeded):
        if index % every:
            continue
        for n, tool in enumerate(rng.sample(TOOLS, rng.choice((1, 2)))):
            made += tool_stream(
                asked_by(execution),
                tool_name=tool,
                started_at=execution[-1].occurred_at + timedelta(milliseconds=1 + n),
                outcome="failed" if rng.random() < 0.25 else "succeeded",
                latency_ms=round(rng.uniform(0.5, 80.0), 3),
                execution_id=execution[0].stream_id,
                tool_call_id=f"call_{execution[0].stream_id.hex[:8]}_{n}",
                trace_id=execution[0].trace_id,
            )
    return made
