"""Who an Agent's executions and tool executions are recorded for: the current ``execution_context``,
else the run's ``session_state``/``metadata`` keys, else Agno's own ``user_id``/``session_id``/agent id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agno.agent import Agent
from agno.run.base import RunContext, RunStatus

from llm_ledger.agno import AuditedModel
from llm_ledger.executor import InMemorySink, MockBehaviour, execution_context, register_mock
from tests.agno.test_audited_model import (
    NO_WAIT,
    PRIMARY,
    assert_completed,
    audited,
    executions,
    get_time,
    payload,
    streams,
    tool_executions,
)


def get_weather(city: str, run_context: RunContext) -> str:
    """The weather in a city, as seen by the tenant of the run."""
    state = run_context.session_state or {}
    return f"{state.get('tenant_id')} asks about {city}"


def _contexts(sink: InMemorySink) -> set[tuple[str, str | None, str | None, str | None, str | None]]:
    return {
        (event.tenant_id, event.agent_id, event.session_id, event.turn_id, event.step)
        for events in streams(sink).values()
        for event in events
    }


async def test_the_session_state_keys_make_the_context_of_every_event() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])
    state = {"tenant_id": "acme", "agent_id": "planner-7", "session_id": "conv-9", "turn_id": "turn-3"}

    output = await agent.arun("What is the weather?", session_state=state, session_id="agno-session")

    assert output.status == RunStatus.completed
    assert _contexts(sink) == {("acme", "planner-7", "conv-9", "turn-3", "generation")}
    assert len(executions(sink)) == 2 and len(tool_executions(sink)) == 2


async def test_agnos_own_ids_fill_what_the_session_state_leaves_out() -> None:
    sink = InMemorySink()
    agent = Agent(name="Trip Planner", model=audited(sink=sink), tools=[get_weather, get_time])

    await agent.arun("What is the weather?", user_id="tenant-from-user", session_id="agno-session")

    # Agno's user_id is the tenant, its session id the session, its agent id (from the name) the agent.
    assert _contexts(sink) == {("tenant-from-user", "trip-planner", "agno-session", None, "generation")}


async def test_the_metadata_is_read_when_the_session_state_has_no_key() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    await agent.arun("What is the weather?", metadata={"tenant_id": "from-metadata"}, session_id="s")

    assert {context[0] for context in _contexts(sink)} == {"from-metadata"}


async def test_the_current_execution_context_wins() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    with execution_context(tenant_id="explicit", agent_id="a", session_id="s", turn_id="t"):
        await agent.arun("What is the weather?", session_state={"tenant_id": "ignored"})

    assert _contexts(sink) == {("explicit", "a", "s", "t", "generation")}


async def test_a_tenant_that_is_not_a_string_is_refused() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    output = await agent.arun("What is the weather?", session_state={"tenant_id": 42})

    assert output.status == RunStatus.error
    assert "'tenant_id' must be a non-empty string" in str(output.content)
    assert len(sink) == 0, "refused before any event"


async def test_fifty_concurrent_runs_under_different_tenants_mix_nothing() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    async def run(index: int) -> None:
        state = {"tenant_id": f"tenant-{index}", "session_id": f"session-{index}"}
        assert_completed(await agent.arun("What is the weather?", session_state=state))

    await asyncio.gather(*(run(index) for index in range(50)))

    assert len(executions(sink)) == 100 and len(tool_executions(sink)) == 100
    for events in streams(sink).values():
        tenants = {event.tenant_id for event in events}
        assert len(tenants) == 1
        (tenant,) = tenants
        assert {event.session_id for event in events} == {tenant.replace("tenant", "session")}
    by_execution = {execution[0].stream_id: execution[0].tenant_id for execution in executions(sink)}
    for events in tool_executions(sink):
        tenant = events[0].tenant_id
        assert by_execution[payload(events[0], "execution_id")] == tenant, "linked to its own run's execution"
        if payload(events[0], "tool_name") == "get_weather":
            assert payload(events[1], "result").text == f"{tenant} asks about Paris"


async def test_a_configured_model_resolves_its_chain_per_tenant_and_agent(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f'[pipeline.generation]\nmodel = "{PRIMARY}"\nfallback_models = ["mock/agno-tools"]\n'
        '[tenants.acme.agents.planner.pipeline.generation]\nmodel = "mock/agno-tools"\nfallback_models = []\n'
    )
    sink = InMemorySink()
    model = AuditedModel.from_config(config, step_name="generation", sink=sink, retry_policy=NO_WAIT)
    agent = Agent(name="planner", model=model, tools=[get_weather, get_time])

    await agent.arun("What is the weather?", session_state={"tenant_id": "acme"})
    await agent.arun("What is the weather?", session_state={"tenant_id": "globex"})

    chains = [(execution[0].tenant_id, payload(execution[0], "chain")) for execution in executions(sink)]
    assert chains == [
        ("acme", ("mock/agno-tools",)),
        ("acme", ("mock/agno-tools",)),
        ("globex", (PRIMARY, "mock/agno-tools")),
        ("globex", (PRIMARY, "mock/agno-tools")),
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_run_span_is_current_for_its_executions_and_tools(stream: bool) -> None:
    from llm_ledger.executor.tracing import SpanRef, current_run

    seen: list[SpanRef | None] = []

    register_mock("agno-probe", MockBehaviour(p50_ms=0, tool_calls=(("probe", {"city": "Paris"}),)))

    def probe(city: str) -> str:
        """Notes the current agent run."""
        seen.append(current_run.get())
        return city

    outcomes: list[str] = []
    runs: list[tuple[str | None, str | None, str]] = []

    class Trace:
        trace_id, span_id = "1" * 32, "2" * 16

        def succeeded(self) -> None:
            outcomes.append("succeeded")

        def failed(self, error_type: str, message: str) -> None:
            outcomes.append(error_type)

    class Tracer:
        def start(self, *args: object) -> object:
            from llm_ledger.executor.tracing import NoTracer

            return NoTracer().start()

        def tool(self, *args: object) -> object:
            from llm_ledger.executor.tracing import NoTracer

            return NoTracer().tool()

        def agent_run(self, agent_name: str | None, agent_id: str | None, context: object) -> Trace:
            runs.append((agent_name, agent_id, getattr(context, "tenant_id", "")))
            return Trace()

    tracer = Tracer()
    sink = InMemorySink()
    model = audited([PRIMARY, "mock/agno-probe"], sink=sink, tracer=tracer)
    agent = Agent(name="planner", model=model, tools=[probe])
    if stream:
        async for _ in agent.arun("hi", session_state={"tenant_id": "acme"}, stream=True):
            pass
    else:
        await agent.arun("hi", session_state={"tenant_id": "acme"})

    assert runs == [("planner", "planner", "acme")]
    assert outcomes == ["succeeded"]
    assert [(ref.trace_id, ref.span_id) for ref in seen if ref is not None] == [("1" * 32, "2" * 16)]
    assert current_run.get() is None, "reset after the run"


def test_concurrent_sync_runs_in_threads_mix_nothing() -> None:
    """``Agent.run`` from many threads: one private loop runs every round trip, each in its caller's
    context."""
    from concurrent.futures import ThreadPoolExecutor

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    def run(index: int) -> None:
        assert_completed(agent.run("What is the weather?", session_state={"tenant_id": f"tenant-{index}"}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(run, range(16)))

    assert len(executions(sink)) == 32 and len(tool_executions(sink)) == 32
    for events in tool_executions(sink):
        if payload(events[0], "tool_name") == "get_weather":
            assert payload(events[1], "result").text == f"{events[0].tenant_id} asks about Paris"
    for events in streams(sink).values():
        assert len({event.tenant_id for event in events}) == 1


async def test_two_streamed_runs_interleaved_in_one_task_mix_nothing() -> None:
    """A run's scope is not left in its consumer's context between two events: two streamed runs read
    turn by turn in one task (a hand-made merge) each keep their own tenant, tools included."""
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])
    runs = [
        agent.arun("What is the weather?", session_state={"tenant_id": tenant}, stream=True)
        for tenant in ("tenant-a", "tenant-b")
    ]
    ended = [False, False]
    while not all(ended):
        for index, run in enumerate(runs):
            if not ended[index]:
                try:
                    await run.__anext__()
                except StopAsyncIteration:
                    ended[index] = True

    assert len(executions(sink)) == 4 and len(tool_executions(sink)) == 4
    by_execution = {execution[0].stream_id: execution[0].tenant_id for execution in executions(sink)}
    assert sorted(by_execution.values()) == ["tenant-a", "tenant-a", "tenant-b", "tenant-b"]
    for events in tool_executions(sink):
        assert by_execution[payload(events[0], "execution_id")] == events[0].tenant_id
        if payload(events[0], "tool_name") == "get_weather":
            assert payload(events[1], "result").text == f"{events[0].tenant_id} asks about Paris"


async def test_a_teams_own_round_trips_are_recorded_under_the_teams_id() -> None:
    """A Team's leader is the agent of its own round trips: with no agent_id in the session state,
    they take the Team's id, as an Agent's take the Agent's (the README's "the Agent's id as the agent"),
    and a configuration's per-agent chain can be chosen for it."""
    from agno.team import Team

    sink = InMemorySink()
    register_mock("agno-team-leader", MockBehaviour(p50_ms=0, reply="Done."))
    member = Agent(name="weather", model=audited(sink=sink), tools=[get_weather], role="weather")
    team = Team(name="Crew", id="crew-7", members=[member], model=audited(["mock/agno-team-leader"], sink=sink))

    output = await team.arun("What is the weather?", session_state={"tenant_id": "acme"}, session_id="s-1")

    assert output.content == "Done."
    (leader,) = executions(sink)
    assert (leader[0].tenant_id, leader[0].agent_id, leader[0].session_id) == ("acme", "crew-7", "s-1")
