"""Events folded into read-model deltas, in memory: no IO here.

The projector reads a batch of events, folds it into one ``Delta`` (every figure of the batch summed per
row key, at every grain), and the database adds the delta to the stored rows in one statement per table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, not_, or_

from llm_ledger.projections import histogram
from llm_ledger.projections.costs import Pricing
from llm_ledger.projections.grains import GRAINS, MINUTE, floor


@dataclass(frozen=True, slots=True)
class EventRecord:
    """The part of a stored event the projections read (payloads of started events are not fetched)."""

    event_id: str
    event_type: str
    tenant_id: str
    stream_id: str
    occurred_at: datetime
    agent_id: str | None
    session_id: str | None
    step: str | None
    trace_id: str | None
    payload: Mapping[str, Any] | None


@dataclass(slots=True)
class StepFigures:
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    fallback_executions: int = 0
    attempts: int = 0
    attempt_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    execution_latency_ms_sum: float = 0.0
    execution_latency: histogram.Counts = field(default_factory=dict)
    attempt_latency_ms_sum: float = 0.0
    attempt_latency: histogram.Counts = field(default_factory=dict)
    first_chunk_ms_sum: float = 0.0
    first_chunk_latency: histogram.Counts = field(default_factory=dict)


@dataclass(slots=True)
class SessionFigures:
    agent_id: str
    first_seen: datetime
    last_seen: datetime
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    fallback_executions: int = 0
    attempts: int = 0
    attempt_failures: int = 0


@dataclass(slots=True)
class ToolFigures:
    """Tools' executions that ended, of one tool and outcome (never counted among the executions)."""

    calls: int = 0
    latency_ms_sum: float = 0.0
    latency: histogram.Counts = field(default_factory=dict)


@dataclass(slots=True)
class FallbackFigures:
    fallbacks: int = 0
    succeeded_after: int = 0


StepKey = tuple[str, int, datetime, str, str, str, str]
"""tenant, grain, bucket start, agent, step, model, provider"""
ErrorKey = tuple[str, int, datetime, str, str, str, str, str, str]
"""... model, provider, scope, error type"""
FallbackKey = tuple[str, int, datetime, str, str, str, str, str]
"""tenant, grain, bucket start, agent, step, from model, to model, reason"""
ToolKey = tuple[str, int, datetime, str, str, str, str]
"""tenant, grain, bucket start, agent, step, tool name, outcome (``succeeded`` or ``failed``)"""
EdgeOrigin = tuple[str, datetime, str, str, str, str, str]
"""Where a fallback edge was counted: tenant, when, agent, step, from, to, reason."""


@dataclass(slots=True)
class Delta:
    """What one batch adds to the read models."""

    steps: dict[StepKey, StepFigures] = field(default_factory=dict)
    errors: dict[ErrorKey, int] = field(default_factory=dict)
    fallbacks: dict[FallbackKey, FallbackFigures] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionFigures] = field(default_factory=dict)
    tools: dict[ToolKey, ToolFigures] = field(default_factory=dict)
    failed_attempts: list[dict[str, Any]] = field(default_factory=list)
    fallback_rows: list[tuple[Any, ...]] = field(default_factory=list)
    """``llm_ledger_fallbacks`` rows (the fallbacks of a session), in its column order."""
    events: int = 0


_BUCKET_CACHE = 100_000
"""Minutes whose bucket starts a folder remembers (about 70 days of minutes)."""


MOCKED_PROVIDERS = frozenset({"anthropic", "groq", "openai", "openrouter"})
"""The providers a ``mock/`` model stands for when its name starts with one and a dash: the executor's
providers but ``mock`` (tests keep the two equal; the projections import no executor)."""


def provider_of(model: str | None) -> str:
    """The routing prefix of a model string (``openrouter/anthropic/x`` -> ``openrouter``), or the
    provider a mock is named after (``mock/openai-gpt-4.1`` -> ``openai``): a mock standing in for a
    provider is counted under it, so that splits by provider mean something; its model string, which
    the figures keep too, still says ``mock/``."""
    if not model:
        return ""
    prefix, _, name = model.partition("/")
    if prefix == "mock":
        mocked = name.partition("-")[0]
        if mocked in MOCKED_PROVIDERS:
            return mocked
    return prefix


def provider_is_one_of(model: ColumnElement[str], providers: Iterable[str]) -> ColumnElement[bool]:
    """The SQL condition that ``provider_of(model)`` is one of ``providers``, on a column holding model
    strings (the fallback edges keep models only): ``provider_of`` written as comparisons of prefixes, with
    ``substr`` rather than ``LIKE``, which SQLite compares without case."""

    def starts(prefix: str) -> ColumnElement[bool]:
        return func.substr(model, 1, len(prefix)) == prefix

    def names_mock_of(provider: str) -> ColumnElement[bool]:
        # provider_of takes the name after "mock/" up to its first dash, or whole when it has none.
        return or_(model == f"mock/{provider}", starts(f"mock/{provider}-"))

    def prefixed(provider: str) -> ColumnElement[bool]:
        exact = or_(model == provider, starts(f"{provider}/"), *([model.is_(None)] if provider == "" else []))
        if provider == "mock":
            return and_(exact, not_(or_(*(names_mock_of(mocked) for mocked in sorted(MOCKED_PROVIDERS)))))
        return exact

    conditions = [
        or_(prefixed(provider), names_mock_of(provider)) if provider in MOCKED_PROVIDERS else prefixed(provider)
        for provider in dict.fromkeys(providers)
    ]
    return or_(*conditions) if conditions else false()


def edge_origin(
    tenant_id: str, occurred_at: datetime, agent_id: str | None, step: str | None, payload: Mapping[str, Any]
) -> EdgeOrigin:
    """Where a ``FallbackTriggered`` event's edge is counted."""
    return (
        tenant_id,
        occurred_at,
        agent_id or "",
        step or "",
        str(payload["from_model"]),
        str(payload["to_model"]),
        str(payload["reason"]),
    )


class Folder:
    """Folds events into a ``Delta``.

    Whether an execution fell back, and which edges then succeeded, is only known at its terminal event,
    which can arrive in a later batch than its fallbacks. ``edges_of`` (the database) answers for
    executions whose fallbacks this folder did not see itself; ``remember`` keeps what it saw for the
    executions still open.
    """

    def __init__(self, pricing: Pricing, edges_of: Callable[[str, str], list[EdgeOrigin]]) -> None:
        self._pricing = pricing
        self._edges_of = edges_of
        self._open_edges: dict[str, list[EdgeOrigin]] = {}
        self._open_streams: set[str] = set()
        self._buckets: dict[int, tuple[tuple[int, datetime], ...]] = {}

    def forget(self) -> None:
        """Drop what was remembered of open executions (another projector may have moved on since)."""
        self._open_edges.clear()
        self._open_streams.clear()

    def fold(self, records: Iterable[EventRecord]) -> Delta:
        delta = Delta()
        for record in records:
            delta.events += 1
            handler = _HANDLERS.get(record.event_type)
            if handler is not None:
                handler(self, delta, record)
        return delta

    # --- one method per event type ------------------------------------------------------------------

    def _execution_started(self, delta: Delta, record: EventRecord) -> None:
        self._open_streams.add(record.stream_id)
        self._touch_session(delta, record)

    def _attempt_succeeded(self, delta: Delta, record: EventRecord) -> None:
        payload = _payload(record)
        model = str(payload["model"])
        latency = float(payload["latency_ms"])
        usage = payload.get("usage") or {}
        input_tokens, output_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        cost = self._pricing.cost(model, usage, _requested_at(record.occurred_at, latency))
        rows = self._attempt_rows(delta, record, model, latency)
        for figures in rows:
            figures.input_tokens += input_tokens
            figures.output_tokens += output_tokens
            if cost is not None:
                figures.cost_usd = (figures.cost_usd or 0.0) + cost
        first_chunk = payload.get("time_to_first_chunk_ms")
        if first_chunk is not None:  # a streamed attempt's: the others have none
            _count_first_chunk(rows, float(first_chunk))
        self._touch_session(delta, record).attempts += 1

    def _attempt_failed(self, delta: Delta, record: EventRecord) -> None:
        payload = _payload(record)
        model = str(payload["model"])
        latency = float(payload["latency_ms"])
        error_type = str(payload["error_type"])
        for figures in self._attempt_rows(delta, record, model, latency):
            figures.attempt_failures += 1
        self._count_error(delta, record, model, "attempt", error_type)
        session = self._touch_session(delta, record)
        session.attempts += 1
        session.attempt_failures += 1
        delta.failed_attempts.append(
            {
                "tenant_id": record.tenant_id,
                "event_id": record.event_id,
                "occurred_at": record.occurred_at,
                "stream_id": record.stream_id,
                "session_id": record.session_id,
                "agent_id": record.agent_id or "",
                "step": record.step or "",
                "model": model,
                "provider": provider_of(model),
                "attempt": int(payload["attempt"]),
                "error_type": error_type,
                "status_code": payload.get("status_code"),
                "message": str(payload["message"]),
                "next_action": str(payload["next_action"]),
                "trace_id": record.trace_id,
            }
        )

    def _fallback_triggered(self, delta: Delta, record: EventRecord) -> None:
        origin = edge_origin(record.tenant_id, record.occurred_at, record.agent_id, record.step, _payload(record))
        for key in self._edge_keys(origin):
            delta.fallbacks.setdefault(key, FallbackFigures()).fallbacks += 1
        self._open_edges.setdefault(record.stream_id, []).append(origin)
        if record.session_id is None:
            return
        _, occurred_at, agent_id, step, from_model, to_model, reason = origin
        delta.fallback_rows.append(
            (
                record.tenant_id,
                record.stream_id,
                record.event_id,
                occurred_at,
                record.session_id,
                agent_id,
                step,
                from_model,
                to_model,
                reason,
            )
        )

    def _execution_succeeded(self, delta: Delta, record: EventRecord) -> None:
        payload = _payload(record)
        fell_back = bool(payload["fallback_used"])
        for figures in self._execution_rows(delta, record, str(payload["model"]), float(payload["latency_ms"])):
            figures.succeeded += 1
            figures.fallback_executions += fell_back
        session = self._end_session_execution(delta, record, fell_back)
        session.succeeded += 1
        if fell_back:
            for origin in self._edges_of_stream(record):
                for key in self._edge_keys(origin):
                    delta.fallbacks.setdefault(key, FallbackFigures()).succeeded_after += 1
        self._close(record.stream_id)

    def _execution_failed(self, delta: Delta, record: EventRecord) -> None:
        payload = _payload(record)
        model = payload.get("last_model") or ""
        # A failed execution carries no fallback flag: with more than one attempt, its stream says.
        fell_back = int(payload["attempts"]) > 1 and bool(self._edges_of_stream(record))
        for figures in self._execution_rows(delta, record, model, float(payload["latency_ms"])):
            figures.failed += 1
            figures.fallback_executions += fell_back
        self._count_error(delta, record, model, "execution", str(payload["error_type"]))
        self._end_session_execution(delta, record, fell_back).failed += 1
        self._close(record.stream_id)

    def _tool_call_started(self, delta: Delta, record: EventRecord) -> None:
        # A tool's execution is a stream of its own, not an execution: it counts nowhere but in the
        # session's span of activity (its figures come with its terminal event).
        self._touch_session(delta, record)

    def _tool_call_succeeded(self, delta: Delta, record: EventRecord) -> None:
        payload = _payload(record)
        self._count_tool_call(delta, record, str(payload["tool_name"]), float(payload["latency_ms"]), "succeeded")

    def _tool_call_failed(self, delta: Delta, record: EventRecord) -> None:
        payload = _payload(record)
        self._count_tool_call(delta, record, str(payload["tool_name"]), float(payload["latency_ms"]), "failed")

    # --- helpers --------------------------------------------------------------------------------------

    def _bucket_starts(self, moment: datetime) -> tuple[tuple[int, datetime], ...]:
        """``(grain, bucket start)`` of ``moment`` at every grain; remembered per minute (every grain is a
        whole number of minutes), since a batch holds many events of each minute."""
        minute = int(moment.timestamp()) // MINUTE
        starts = self._buckets.get(minute)
        if starts is None:
            if len(self._buckets) >= _BUCKET_CACHE:
                self._buckets.clear()
            starts = self._buckets[minute] = tuple((grain, floor(moment, grain)) for grain in GRAINS)
        return starts

    def _step_rows(self, delta: Delta, record: EventRecord, model: str) -> list[StepFigures]:
        provider = provider_of(model)
        tenant, agent, step = record.tenant_id, record.agent_id or "", record.step or ""
        steps = delta.steps
        rows = []
        for grain, start in self._bucket_starts(record.occurred_at):
            key = (tenant, grain, start, agent, step, model, provider)
            figures = steps.get(key)
            if figures is None:
                figures = steps[key] = StepFigures()
            rows.append(figures)
        return rows

    def _execution_rows(self, delta: Delta, record: EventRecord, model: str, latency: float) -> list[StepFigures]:
        rows = self._step_rows(delta, record, model)
        bucket = histogram.bucket_of(latency)
        for figures in rows:
            figures.executions += 1
            figures.execution_latency_ms_sum += latency
            counts = figures.execution_latency
            counts[bucket] = counts.get(bucket, 0) + 1
        return rows

    def _attempt_rows(self, delta: Delta, record: EventRecord, model: str, latency: float) -> list[StepFigures]:
        rows = self._step_rows(delta, record, model)
        bucket = histogram.bucket_of(latency)
        for figures in rows:
            figures.attempts += 1
            figures.attempt_latency_ms_sum += latency
            counts = figures.attempt_latency
            counts[bucket] = counts.get(bucket, 0) + 1
        return rows

    def _count_tool_call(self, delta: Delta, record: EventRecord, tool: str, latency: float, outcome: str) -> None:
        bucket = histogram.bucket_of(latency)
        tenant, agent, step = record.tenant_id, record.agent_id or "", record.step or ""
        tools = delta.tools
        for grain, start in self._bucket_starts(record.occurred_at):
            key = (tenant, grain, start, agent, step, tool, outcome)
            figures = tools.get(key)
            if figures is None:
                figures = tools[key] = ToolFigures()
            figures.calls += 1
            figures.latency_ms_sum += latency
            figures.latency[bucket] = figures.latency.get(bucket, 0) + 1
        self._touch_session(delta, record)

    def _count_error(self, delta: Delta, record: EventRecord, model: str, scope: str, error_type: str) -> None:
        provider = provider_of(model)
        tenant, agent, step = record.tenant_id, record.agent_id or "", record.step or ""
        for grain, start in self._bucket_starts(record.occurred_at):
            key = (tenant, grain, start, agent, step, model, provider, scope, error_type)
            delta.errors[key] = delta.errors.get(key, 0) + 1

    def _edge_keys(self, origin: EdgeOrigin) -> list[FallbackKey]:
        tenant, when, agent, step, from_model, to_model, reason = origin
        return [
            (tenant, grain, start, agent, step, from_model, to_model, reason)
            for grain, start in self._bucket_starts(when)
        ]

    def _touch_session(self, delta: Delta, record: EventRecord) -> SessionFigures:
        if record.session_id is None:
            # Counted nowhere: the session index only lists executions that ran in a session.
            return SessionFigures("", record.occurred_at, record.occurred_at)
        key = (record.tenant_id, record.session_id)
        session = delta.sessions.get(key)
        if session is None:
            session = delta.sessions[key] = SessionFigures(
                record.agent_id or "", record.occurred_at, record.occurred_at
            )
        else:
            session.first_seen = min(session.first_seen, record.occurred_at)
            session.last_seen = max(session.last_seen, record.occurred_at)
        return session

    def _end_session_execution(self, delta: Delta, record: EventRecord, fell_back: bool) -> SessionFigures:
        session = self._touch_session(delta, record)
        session.executions += 1
        session.fallback_executions += fell_back
        return session

    def _edges_of_stream(self, record: EventRecord) -> list[EdgeOrigin]:
        if record.stream_id in self._open_streams:
            return self._open_edges.get(record.stream_id, [])
        return self._edges_of(record.tenant_id, record.stream_id)

    def _close(self, stream_id: str) -> None:
        self._open_streams.discard(stream_id)
        self._open_edges.pop(stream_id, None)


def _requested_at(answered_at: datetime, latency_ms: float) -> datetime:
    """When an attempt's request was sent: its answer less its latency (the AttemptStarted's moment, which
    the fold does not keep). The answer's moment when the latency cannot be taken from it."""
    try:
        return answered_at - timedelta(milliseconds=latency_ms)
    except (OverflowError, ValueError):
        return answered_at


def _count_first_chunk(rows: list[StepFigures], first_chunk_ms: float) -> None:
    bucket = histogram.bucket_of(first_chunk_ms)
    for figures in rows:
        figures.first_chunk_ms_sum += first_chunk_ms
        counts = figures.first_chunk_latency
        counts[bucket] = counts.get(bucket, 0) + 1


def _payload(record: EventRecord) -> Mapping[str, Any]:
    if record.payload is None:
        raise ValueError(f"event {record.event_id} ({record.event_type}) was read without its payload")
    return record.payload


_HANDLERS: dict[str, Callable[[Folder, Delta, EventRecord], None]] = {
    "ExecutionStarted": Folder._execution_started,
    "AttemptSucceeded": Folder._attempt_succeeded,
    "AttemptFailed": Folder._attempt_failed,
    "FallbackTriggered": Folder._fallback_triggered,
    "ExecutionSucceeded": Folder._execution_succeeded,
    "ExecutionFailed": Folder._execution_failed,
    "ToolCallStarted": Folder._tool_call_started,
    "ToolCallSucceeded": Folder._tool_call_succeeded,
    "ToolCallFailed": Folder._tool_call_failed,
}

UNFOLDED_EVENT_TYPES = frozenset({"AttemptStarted"})
"""Event types the read models count nothing of (every other one has its fold in ``_HANDLERS``;
tests/projections/test_payload_reads.py holds the two to ``events.EVENT_TYPES``)."""

PAYLOAD_TYPES = frozenset(_HANDLERS) - {"ExecutionStarted", "ToolCallStarted"}
"""Event types whose payload the projections read (not the started events': they carry the captured input
or arguments, which can be large and which no read model needs)."""
