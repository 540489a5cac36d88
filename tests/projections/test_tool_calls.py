"""Tools' executions in the read models: counted per tool, outcome and step (with their latency), once
each however the projector's batches fall, and never counted as executions."""

from __future__ import annotations

import collections
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from llm_ledger.events import STREAM_KINDS, Event, ToolCallFailed, ToolCallSucceeded
from llm_ledger.projections import Projector
from llm_ledger.projections.queries import LedgerView, Window
from tests.projections.conftest import store_events
from tests.projections.ground_truth import assert_read_models_equal_truth, nearest_rank
from tests.projections.projecting import project_all, project_in_batches, project_url

_EXECUTION_ENDS = STREAM_KINDS["execution"].terminals
_EVERYTHING = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


Ended = ToolCallSucceeded | ToolCallFailed


def _ended_tool_calls(events: list[Event], tenant: str) -> list[Ended]:
    return [e for e in events if e.tenant_id == tenant and isinstance(e, ToolCallSucceeded | ToolCallFailed)]


def _outcome(event: Ended) -> str:
    return "succeeded" if isinstance(event, ToolCallSucceeded) else "failed"


def test_the_workload_has_tool_executions_of_both_outcomes(recorded_events: list[Event]) -> None:
    ended = collections.Counter(e.event_type for e in recorded_events if e.event_type.startswith("ToolCall"))
    assert ended["ToolCallSucceeded"] > 20 and ended["ToolCallFailed"] > 5
    assert ended["ToolCallStarted"] == ended["ToolCallSucceeded"] + ended["ToolCallFailed"]


def test_tool_calls_per_tool_outcome_and_step_are_the_recorded_ones(
    workload_url: str, recorded_events: list[Event], tenants: tuple[str, ...]
) -> None:
    project_url(workload_url)
    view = LedgerView(workload_url)
    try:
        for tenant in tenants:
            ended = _ended_tool_calls(recorded_events, tenant)
            expected: dict[tuple[str, ...], list[float]] = collections.defaultdict(list)
            for event in ended:
                expected[(event.payload.tool_name, _outcome(event), event.step or "")].append(event.payload.latency_ms)
            groups = view.tool_calls(tenant, _EVERYTHING)
            assert {g.key: g.calls for g in groups} == {key: len(values) for key, values in expected.items()}
            assert [g.calls for g in groups] == sorted((g.calls for g in groups), reverse=True)
            for group in groups:
                values = expected[group.key]
                assert group.failed == (group.calls if group.key[1] == "failed" else 0)
                assert group.mean_latency_ms == pytest.approx(sum(values) / len(values))
                p50, _, p99 = group.latency_percentiles()
                assert p50 == pytest.approx(nearest_rank(values, 0.5), rel=0.015)
                assert p99 == pytest.approx(nearest_rank(values, 0.99), rel=0.015)
            by_tool = {g.key: (g.calls, g.failed) for g in view.tool_calls(tenant, _EVERYTHING, by=("tool_name",))}
            counted = collections.Counter(e.payload.tool_name for e in ended)
            failed = collections.Counter(e.payload.tool_name for e in ended if _outcome(e) == "failed")
            assert by_tool == {(tool,): (n, failed[tool]) for tool, n in counted.items()}
            series = view.tool_call_series(tenant, _last_days(ended), by="outcome")
            assert sum(p.calls for p in series) == len(ended)
            assert sum(p.failed for p in series) == sum(1 for e in ended if _outcome(e) == "failed")
    finally:
        view.close()


def _last_days(ended: list[Ended]) -> Window:
    """A window holding every event given (a time series draws a readable number of buckets of it)."""
    first = min(e.occurred_at for e in ended)
    return Window(first - timedelta(minutes=1), max(e.occurred_at for e in ended) + timedelta(minutes=1))


def test_tool_executions_are_not_counted_as_executions(
    workload_url: str, recorded_events: list[Event], tenants: tuple[str, ...]
) -> None:
    project_url(workload_url)
    view = LedgerView(workload_url)
    try:
        for tenant in tenants:
            mine = [e for e in recorded_events if e.tenant_id == tenant]
            totals = view.totals(tenant, _EVERYTHING)
            assert totals.executions == sum(1 for e in mine if e.event_type in _EXECUTION_ENDS)
            assert totals.failed == sum(1 for e in mine if e.event_type == "ExecutionFailed")
            assert sum(totals.execution_latency.values()) == totals.executions
            for summary in view.sessions(tenant, limit=10_000):
                ended = [e for e in mine if e.session_id == summary.session_id and e.event_type in _EXECUTION_ENDS]
                assert summary.executions == len(ended)
    finally:
        view.close()


def test_each_tool_execution_is_counted_once_however_the_batches_fall(
    ledger_url: str, recorded_events: list[Event], tenants: tuple[str, ...], engine_of: Callable[[str], Engine]
) -> None:
    """Batches that cut tool streams in two, each applied by a new projector, then a catch-up with nothing
    new and a rebuild: the read models stay the ground truth."""
    store_events(ledger_url, recorded_events)
    assert project_in_batches(ledger_url, 37, fresh_projector_per_batch=True) > 10
    engine = engine_of(ledger_url)
    assert_read_models_equal_truth(engine, tenants)
    projector = Projector(engine)
    try:
        assert projector.catch_up().events == 0
        assert_read_models_equal_truth(engine, tenants)
        projector.rebuild()
        project_all(projector)
        assert_read_models_equal_truth(engine, tenants)
    finally:
        projector.close()
