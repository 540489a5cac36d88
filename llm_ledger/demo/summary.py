"""What a demo run left in the ledger, read back from the store: counts and latency by step and tenant,
and the tool executions by tool. Executions and tool executions are streams of two kinds
(``events.STREAM_KINDS``): each is counted as what it is."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from llm_ledger.demo.plan import STEPS, WorkloadPlan
from llm_ledger.demo.timeline import Incident, Timeline
from llm_ledger.events import STREAM_KIND_OF_START, STREAM_KINDS, Event
from llm_ledger.projections import provider_of
from llm_ledger.store import EventStore, shown_url


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts and execution latencies of a group of executions (a step, a tenant, or all of them)."""

    executions: int = 0
    failed: int = 0
    fell_back: int = 0
    """Executions that switched model at least once."""
    fallbacks: int = 0
    retries: int = 0
    latencies_ms: tuple[float, ...] = ()

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile (``q`` in 0..100) of the executions' latency; None without executions."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def p50_ms(self) -> float | None:
        return self.percentile_ms(50)

    @property
    def p95_ms(self) -> float | None:
        return self.percentile_ms(95)


@dataclass(frozen=True, slots=True)
class ToolFigures:
    """The executions of one tool: how many, how many failed, and how long they took."""

    calls: int = 0
    failed: int = 0
    latencies_ms: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentFigures:
    """The fallbacks away from the incident's provider: in its hour, and in the busiest other hour."""

    incident: Incident
    fallbacks: int
    busiest_other_hour: int


@dataclass(frozen=True, slots=True)
class WorkloadSummary:
    """The run's figures, from the events the ledger holds for its sessions."""

    database: str
    """The ledger's URL, password hidden."""
    seed: int
    sessions: int
    turns: int
    tenants: tuple[str, ...]
    agents: tuple[tuple[str, str], ...]
    """(tenant, agent) pairs that had sessions."""
    session_ids: tuple[str, ...]
    duration_seconds: float
    events: int
    by_step: Mapping[str, Figures]
    by_tenant: Mapping[str, Figures]
    total: Figures
    fallback_reasons: Mapping[str, int] = field(default_factory=dict)
    failure_types: Mapping[str, int] = field(default_factory=dict)
    incomplete: int = 0
    """Executions and tool executions with no terminal event in the store (none, unless the writer could
    not deliver)."""
    tools: Mapping[str, ToolFigures] = field(default_factory=dict)
    """The tool executions, by tool."""
    agent_turns: int = 0
    """Turns answered by the Agno Agent on ``AuditedModel``."""
    example: tuple[Event, ...] = ()
    """The events of an execution that retried and fell back before it succeeded, to show."""
    timeline: Timeline | None = None
    """Where the sessions were laid out in the past (None: they ran now)."""
    first_at: datetime | None = None
    last_at: datetime | None = None
    """The ``occurred_at`` of the first and the last event."""
    incident: IncidentFigures | None = None

    @property
    def executions(self) -> int:
        return self.total.executions

    @property
    def tool_calls(self) -> int:
        return sum(figures.calls for figures in self.tools.values())

    @property
    def example_execution(self) -> UUID | None:
        return self.example[0].stream_id if self.example else None


def summarize(url: str, plan: WorkloadPlan, duration_seconds: float) -> WorkloadSummary:
    """Read the plan's sessions back from the ledger at ``url`` and total them up."""
    store = EventStore(url)
    try:
        events = [
            event
            for session in plan.sessions
            for event in store.scoped(tenant_id=session.tenant_id).read_session(
                session.session_id, tenant_id=session.tenant_id
            )
        ]
    finally:
        store.close()
    return summarize_events(
        events,
        database=shown_url(url),
        plan=plan,
        duration_seconds=duration_seconds,
    )


def summarize_events(
    events: Iterable[Event], *, database: str, plan: WorkloadPlan, duration_seconds: float
) -> WorkloadSummary:
    streams: dict[UUID, list[Event]] = {}
    count = 0
    for event in events:
        streams.setdefault(event.stream_id, []).append(event)
        count += 1
    by_step: dict[str, list[Sequence[Event]]] = {step: [] for step in STEPS}
    by_tenant: dict[str, list[Sequence[Event]]] = {}
    reasons: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    example: tuple[Event, ...] = ()
    incomplete = 0
    tools: dict[str, list[Sequence[Event]]] = {}
    moments = [event.occurred_at for stream in streams.values() for event in stream]
    for stream in streams.values():
        stream.sort(key=lambda event: event.stream_position)
        kind = STREAM_KIND_OF_START.get(stream[0].event_type)
        if kind is None or stream[-1].event_type not in kind.terminals:
            incomplete += 1
            continue
        if kind is not STREAM_KINDS["execution"]:
            tools.setdefault(str(getattr(stream[0].payload, "tool_name", "")), []).append(stream)
            continue
        by_step.setdefault(stream[0].step or "", []).append(stream)
        by_tenant.setdefault(stream[0].tenant_id, []).append(stream)
        types = [event.event_type for event in stream]
        reasons.update(getattr(e.payload, "reason", "") for e in stream if e.event_type == "FallbackTriggered")
        if types[-1] == "ExecutionFailed":
            failures[str(getattr(stream[-1].payload, "error_type", ""))] += 1
        elif not example and "FallbackTriggered" in types and _retries(stream):
            example = tuple(stream)
    tenants = tuple(dict.fromkeys(session.tenant_id for session in plan.sessions))
    return WorkloadSummary(
        database=database,
        seed=plan.seed,
        sessions=len(plan.sessions),
        turns=plan.turns,
        tenants=tenants,
        agents=tuple(dict.fromkeys((session.tenant_id, session.agent_id) for session in plan.sessions)),
        session_ids=tuple(session.session_id for session in plan.sessions),
        duration_seconds=duration_seconds,
        events=count,
        by_step={step: _figures(group) for step, group in by_step.items()},
        by_tenant={tenant: _figures(by_tenant.get(tenant, [])) for tenant in tenants},
        total=_figures([stream for group in by_step.values() for stream in group]),
        fallback_reasons=dict(reasons.most_common()),
        failure_types=dict(failures.most_common()),
        incomplete=incomplete,
        example=example,
        tools={name: _tool_figures(tools[name]) for name in sorted(tools)},
        agent_turns=plan.agent_turns,
        timeline=plan.timeline,
        first_at=min(moments, default=None),
        last_at=max(moments, default=None),
        incident=_incident_figures(plan.incident, streams.values()),
    )


def _incident_figures(incident: Incident | None, streams: Iterable[Sequence[Event]]) -> IncidentFigures | None:
    if incident is None:
        return None
    by_hour: Counter[datetime] = Counter(
        event.occurred_at.replace(minute=0, second=0, microsecond=0)
        for stream in streams
        for event in stream
        if event.event_type == "FallbackTriggered"
        and provider_of(str(getattr(event.payload, "from_model", ""))) == incident.provider
    )
    during = by_hour.pop(incident.starts_at, 0)
    return IncidentFigures(incident, during, max(by_hour.values(), default=0))


def _retries(stream: Sequence[Event]) -> int:
    return sum(1 for e in stream if e.event_type == "AttemptStarted" and getattr(e.payload, "retry", 0) > 0)


def _figures(streams: Sequence[Sequence[Event]]) -> Figures:
    return Figures(
        executions=len(streams),
        failed=sum(1 for s in streams if s[-1].event_type == "ExecutionFailed"),
        fell_back=sum(1 for s in streams if any(e.event_type == "FallbackTriggered" for e in s)),
        fallbacks=sum(1 for s in streams for e in s if e.event_type == "FallbackTriggered"),
        retries=sum(_retries(s) for s in streams),
        latencies_ms=tuple(float(getattr(s[-1].payload, "latency_ms", 0.0)) for s in streams),
    )


def _tool_figures(streams: Sequence[Sequence[Event]]) -> ToolFigures:
    return ToolFigures(
        calls=len(streams),
        failed=sum(1 for s in streams if s[-1].event_type == "ToolCallFailed"),
        latencies_ms=tuple(float(getattr(s[-1].payload, "latency_ms", 0.0)) for s in streams),
    )
