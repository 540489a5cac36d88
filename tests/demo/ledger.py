"""What the tests check in a ledger the demo filled."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from llm_ledger.demo import TENANT_AGENTS
from llm_ledger.events import STREAM_KIND_OF_START, Event
from llm_ledger.store import EventStore


def latest_anchor_at(hour: int) -> datetime:
    """The latest start of ``hour`` (UTC) not after now: the history ends within the day before now, so
    that the dashboard's windows, which end now, hold it."""
    now = datetime.now(UTC)
    anchor = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return anchor if anchor <= now else anchor - timedelta(days=1)


def read_streams(url: str) -> dict[UUID, list[Event]]:
    """Every stream of the demo's tenants, in position order."""
    store = EventStore(url)
    try:
        streams: dict[UUID, list[Event]] = {}
        for tenant in TENANT_AGENTS:
            for event in store.scoped(tenant_id=tenant).read_tenant(tenant):
                streams.setdefault(event.stream_id, []).append(event)
        for stream in streams.values():
            stream.sort(key=lambda event: event.stream_position)
        return streams
    finally:
        store.close()


@dataclass(frozen=True)
class LedgerShape:
    executions: int
    tool_calls: Counter[tuple[str, str]]
    """Tool executions by (tool, terminal event type)."""
    executions_by_tenant: Counter[str]
    events: int
    tenants: frozenset[str]
    agents: frozenset[tuple[str, str]]
    sessions: int
    turns: int
    steps: Counter[str]
    retries: int
    fallback_reasons: Counter[str]
    failed: int
    operations: Counter[str]


def check_streams(url: str) -> LedgerShape:
    """Assert that every stream verifies and is whole, an execution or a tool execution; return what the
    ledger holds (``executions`` and the figures by stream count executions only)."""
    store = EventStore(url)
    try:
        every = read_streams(url)
        for stream_id, stream in every.items():
            report = store.scoped(tenant_id=stream[0].tenant_id).verify(stream_id)
            assert report.ok, report
            assert [e.stream_position for e in stream] == list(range(len(stream))), stream_id
            kind = STREAM_KIND_OF_START[stream[0].event_type]
            assert stream[-1].event_type in kind.terminals, stream_id
            assert sum(e.event_type in kind.terminals for e in stream) == 1, stream_id
            assert {e.event_type for e in stream} <= kind.event_types, stream_id
    finally:
        store.close()
    streams = {sid: stream for sid, stream in every.items() if stream[0].event_type == "ExecutionStarted"}
    tools = [stream for stream in every.values() if stream[0].event_type == "ToolCallStarted"]
    events = [event for stream in every.values() for event in stream]
    return LedgerShape(
        executions=len(streams),
        tool_calls=Counter((str(getattr(s[0].payload, "tool_name", "")), s[-1].event_type) for s in tools),
        executions_by_tenant=Counter(stream[0].tenant_id for stream in streams.values()),
        events=len(events),
        tenants=frozenset(e.tenant_id for e in events),
        agents=frozenset((e.tenant_id, e.agent_id or "") for e in events),
        sessions=len({e.session_id for e in events}),
        turns=len({(e.session_id, e.turn_id) for e in events}),
        steps=Counter(stream[0].step or "" for stream in streams.values()),
        retries=sum(1 for e in events if e.event_type == "AttemptStarted" and getattr(e.payload, "retry", 0) > 0),
        fallback_reasons=Counter(
            str(getattr(e.payload, "reason", "")) for e in events if e.event_type == "FallbackTriggered"
        ),
        failed=sum(1 for stream in streams.values() if stream[-1].event_type == "ExecutionFailed"),
        operations=Counter(str(getattr(stream[0].payload, "operation", "")) for stream in streams.values()),
    )
