"""``llm_ledger.demo.run_workload``, the library function behind the demo (and other tests' datasets)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llm_ledger.demo import STEPS, TENANT_AGENTS, WorkloadSummary, plan_workload, run_workload
from tests.demo.ledger import check_streams

EVERY_FALLBACK_REASON = {
    "rate_limit",
    "server_error",
    "timeout",
    "connection",
    "context_length",
    "authentication",
    "content_filter",
    "invalid_output",
}


def _figures(summary: WorkloadSummary) -> tuple[object, ...]:
    """Everything but the latencies, the session ids and the database."""

    def counts(figures: object) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(figures).items() if k != "latencies_ms"}  # type: ignore[call-overload]

    return (
        summary.sessions,
        summary.turns,
        summary.events,
        {step: counts(f) for step, f in summary.by_step.items()},
        {tenant: counts(f) for tenant, f in summary.by_tenant.items()},
        summary.fallback_reasons,
        summary.failure_types,
    )


def test_the_same_seed_gives_the_same_ledger_and_every_path_occurs(tmp_path: Path) -> None:
    # Each session draws from mock models of its own, however the concurrent sessions interleave: the
    # run is reproducible, so a seed whose 30 sessions meet every failure keeps meeting them.
    summaries = [
        run_workload(f"sqlite:///{tmp_path / f'{run}.db'}", sessions=30, seed=2, latency_scale=0)
        for run in ("first", "second")
    ]
    assert _figures(summaries[0]) == _figures(summaries[1])
    summary = summaries[0]
    assert set(summary.fallback_reasons) == EVERY_FALLBACK_REASON
    assert set(summary.failure_types) == {"all_models_failed", "stream_interrupted"}
    assert summary.total.retries > 0
    assert summary.incomplete == 0
    assert summary.example is not None and summary.example_execution is not None


def test_the_summary_is_what_the_ledger_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    advanced: list[int] = []
    summary = run_workload(url, sessions=9, seed=5, latency_scale=0, progress=advanced.append)
    shape = check_streams(url)
    assert sum(advanced) == plan_workload(9, 5).step_calls
    assert summary.executions == shape.executions >= plan_workload(9, 5).step_calls
    assert {name: (f.calls, f.failed) for name, f in summary.tools.items()} == {
        name: (shape.tool_calls[(name, "ToolCallSucceeded")] + shape.tool_calls[(name, "ToolCallFailed")],
               shape.tool_calls[(name, "ToolCallFailed")])
        for name in {tool for tool, _ in shape.tool_calls}
    }  # fmt: skip
    assert summary.agent_turns == plan_workload(9, 5).agent_turns
    assert summary.events == shape.events
    assert summary.turns == shape.turns and summary.sessions == shape.sessions == 9
    assert {step: f.executions for step, f in summary.by_step.items()} == dict(shape.steps)
    assert summary.total.failed == shape.failed
    assert summary.total.retries == shape.retries
    assert summary.fallback_reasons == dict(shape.fallback_reasons)
    assert set(summary.tenants) == shape.tenants == set(TENANT_AGENTS)
    assert all(len(f.latencies_ms) == f.executions for f in summary.by_step.values())
    assert list(summary.by_step) == list(STEPS)


def test_runs_on_the_same_ledger_add_sessions_of_their_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = run_workload(url, sessions=2, latency_scale=0)
    second = run_workload(url, sessions=2, latency_scale=0)
    assert not set(first.session_ids) & set(second.session_ids)
    assert check_streams(url).executions == first.executions + second.executions


def test_the_plan_is_drawn_from_the_seed() -> None:
    plan = plan_workload(12, seed=1)
    again = plan_workload(12, seed=1)
    assert [(s.tenant_id, s.agent_id, s.turns) for s in plan.sessions] == [
        (s.tenant_id, s.agent_id, s.turns) for s in again.sessions
    ]
    assert [s.turns for s in plan.sessions] != [s.turns for s in plan_workload(12, seed=2).sessions]
    # Every tenant and agent has a session as soon as there are enough sessions for them all.
    pairs = {(tenant, agent) for tenant, agents in TENANT_AGENTS.items() for agent in agents}
    assert {(s.tenant_id, s.agent_id) for s in plan_workload(len(pairs)).sessions} == pairs


@pytest.mark.parametrize("sessions", [0, -3])
def test_a_workload_needs_a_session(sessions: int) -> None:
    with pytest.raises(ValueError, match=f"at least one session, got {sessions}"):
        plan_workload(sessions)
