"""The sessions the dashboard's links drill down to, on both dialects, held to the raw events of a
workload: the sessions with failed executions, and for each fallback edge the latest session that took it
(from that model to that model, for that reason)."""

from __future__ import annotations

from datetime import UTC, datetime

from llm_ledger.dashboard.view import DashboardView
from llm_ledger.events import Event, ExecutionFailed, FallbackTriggered
from llm_ledger.projections.queries import Window
from tests.projections.projecting import project_url

_EVERYTHING = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _tenant(events: list[Event]) -> str:
    return next(e.tenant_id for e in events if isinstance(e, FallbackTriggered))


def test_the_failed_sessions_are_those_with_a_failed_execution(workload_url: str, recorded_events: list[Event]) -> None:
    project_url(workload_url)
    tenant = _tenant(recorded_events)
    failed = {e.session_id for e in recorded_events if e.tenant_id == tenant and isinstance(e, ExecutionFailed)}
    view = DashboardView(workload_url)

    listed = view.failed_sessions(tenant, window=_EVERYTHING, limit=10_000)

    view.close()
    assert failed, "the workload has failed executions"
    assert {summary.session_id for summary in listed} == failed
    assert all(summary.failed for summary in listed)
    assert [summary.last_seen for summary in listed] == sorted((s.last_seen for s in listed), reverse=True)


def test_each_fallback_edge_names_the_latest_session_that_took_it(
    workload_url: str, recorded_events: list[Event]
) -> None:
    project_url(workload_url)
    tenant = _tenant(recorded_events)
    latest: dict[tuple[str, str, str], tuple[datetime, str | None]] = {}
    for e in recorded_events:
        if isinstance(e, FallbackTriggered) and e.tenant_id == tenant:
            edge = (e.payload.from_model, e.payload.to_model, e.payload.reason)
            latest[edge] = max(latest.get(edge, (e.occurred_at, e.session_id)), (e.occurred_at, e.session_id))
    view = DashboardView(workload_url)
    edges = view.fallback_edges(tenant, _EVERYTHING)

    examples = view.fallback_sessions(tenant, _EVERYTHING, edges)

    view.close()
    assert len(edges) > 1
    assert {(edge.from_model, edge.to_model, edge.reason): session for edge, session in examples.items()} == {
        edge: session for edge, (_, session) in latest.items()
    }
