"""``AuditedModel`` under real Agno Agents and Workflows, on ``mock/`` models: every round trip is one
execution with every attempt, every tool the Agent runs is a tool execution linked to the call that
asked for it, in async, streamed and sync runs.

The helpers at the top are shared with test_context.py and test_refusals.py."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from agno.agent import Agent
from agno.run.agent import RunCompletedEvent, RunContentEvent, RunOutput
from agno.run.base import RunStatus
from agno.workflow import Step, Workflow

from llm_ledger.agno import AuditedModel
from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink, MockBehaviour, ProviderSettings, RetryPolicy, register_mock
from tests.fakes.providers import FakeProviderServer, Reply, ToolCalls
from tests.revealed import made_here, revealed_event

PRIMARY = "mock/agno-throttled?p50_ms=0&rate_limit=1.0"
"""Answers 429 to every attempt: its retries are spent, then the chain falls back."""
TOOLS_MODEL = "agno-tools"
"""Asks for both tools (``get_weather`` and ``get_time``) until it is sent their results, then answers."""

register_mock(
    TOOLS_MODEL,
    MockBehaviour(
        p50_ms=0,
        reply="Sunny, and it is noon.",
        tool_calls=(("get_weather", {"city": "Paris"}), ("get_time", {"zone": "UTC"})),
    ),
)

NO_WAIT = RetryPolicy(base_delay=0, jitter=0)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def get_time(zone: str) -> str:
    """The time in a time zone."""
    return f"12:00 {zone}"


def audited(
    chain: Sequence[str] = (PRIMARY, f"mock/{TOOLS_MODEL}"),
    *,
    sink: InMemorySink,
    step_name: str | None = "generation",
    **options: Any,
) -> AuditedModel:
    return AuditedModel(
        list(chain), step_name=step_name, max_retries=1, retry_policy=NO_WAIT, sink=sink, capture="full", **options
    )


def streams(sink: InMemorySink) -> dict[UUID, list[Event]]:
    return {stream_id: sink.stream(stream_id) for stream_id in sink.stream_ids()}


def executions(sink: InMemorySink) -> list[list[Event]]:
    """The execution streams, in the order they started."""
    return [events for events in streams(sink).values() if events[0].event_type == "ExecutionStarted"]


def tool_executions(sink: InMemorySink) -> list[list[Event]]:
    return [events for events in streams(sink).values() if events[0].event_type == "ToolCallStarted"]


def types(events: list[Event]) -> list[str]:
    return [event.event_type for event in events]


def requested_calls(execution: list[Event]) -> dict[str, str]:
    """Tool call id -> tool name, of the calls the execution's answer asked for."""
    succeeded = [event for event in execution if event.event_type == "AttemptSucceeded"]
    assert len(succeeded) == 1
    return {call.id: call.name for call in getattr(succeeded[0].payload, "tool_calls", ())}


def payload(event: Event, name: str) -> Any:
    """A payload field, its captured texts decrypted (this process made the keys)."""
    return getattr(revealed_event(event, made_here).payload, name)


def assert_two_round_trips_with_two_tools(sink: InMemorySink, *, operation: str = "generate") -> None:
    """The ledger of one run: two executions, each with the primary's two throttled attempts and the
    fallback's answer; two tool executions, linked to the first answer's call ids."""
    first, second = executions(sink)
    for execution in (first, second):
        assert payload(execution[0], "operation") == operation
        assert types(execution) == [
            "ExecutionStarted",
            "AttemptStarted",
            "AttemptFailed",
            "AttemptStarted",
            "AttemptFailed",
            "FallbackTriggered",
            "AttemptStarted",
            "AttemptSucceeded",
            "ExecutionSucceeded",
        ]
        failures = [event for event in execution if event.event_type == "AttemptFailed"]
        assert [payload(event, "error_type") for event in failures] == ["rate_limit", "rate_limit"]
        assert [tool.name for tool in payload(execution[0], "tools")] == ["get_time", "get_weather"]
    asked = requested_calls(first)
    assert sorted(asked.values()) == ["get_time", "get_weather"]
    assert requested_calls(second) == {}, "the second round trip answers with text"

    tools = tool_executions(sink)
    assert len(tools) == 2
    by_call = {payload(events[0], "tool_call_id"): events for events in tools}
    assert set(by_call) == set(asked)
    for call_id, events in by_call.items():
        assert types(events) == ["ToolCallStarted", "ToolCallSucceeded"]
        assert payload(events[0], "tool_name") == asked[call_id]
        assert payload(events[0], "execution_id") == first[0].stream_id
    results = {payload(events[0], "tool_name"): payload(events[1], "result").text for events in tools}
    assert results == {"get_weather": "sunny in Paris", "get_time": "12:00 UTC"}


def assert_completed(output: RunOutput | Any) -> None:
    assert isinstance(output, RunOutput)
    assert output.status == RunStatus.completed, output.content
    assert output.content == "Sunny, and it is noon."


TENANT = {"tenant_id": "acme", "agent_id": "planner", "turn_id": "turn-1"}


async def test_an_agent_with_two_tools_records_every_attempt_and_every_tool() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    output = await agent.arun("What is the weather?", session_state=dict(TENANT), session_id="s-1")

    assert_completed(output)
    assert_two_round_trips_with_two_tools(sink)
    # Agno saw the tools run once each, and the tool loop sent both results back.
    assert sorted(str(tool.tool_name) for tool in output.tools or []) == ["get_time", "get_weather"]
    # The run's metrics add up the answers' usage, attributed to the model that answered.
    answered = [
        payload(event, "usage")
        for execution in executions(sink)
        for event in execution
        if event.event_type == "AttemptSucceeded"
    ]
    assert output.metrics is not None
    assert output.metrics.input_tokens == sum(usage.prompt_tokens for usage in answered)
    assert output.metrics.output_tokens == sum(usage.completion_tokens for usage in answered)
    (entry,) = (output.metrics.details or {})["model"]
    assert entry.provider_metrics == {"model": f"mock/{TOOLS_MODEL}"}


async def test_a_tool_that_raises_is_recorded_as_failed_and_agno_still_answers() -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise RuntimeError(f"no weather station in {city}")

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    output = await agent.arun("What is the weather?", session_state=dict(TENANT))

    assert_completed(output)
    by_tool = {payload(events[0], "tool_name"): events for events in tool_executions(sink)}
    failed = by_tool["get_weather"]
    assert types(failed) == ["ToolCallStarted", "ToolCallFailed"]
    assert payload(failed[1], "error_type") == "tool_error"
    assert payload(failed[1], "error_class") == "RuntimeError"
    assert payload(failed[1], "message") == "the tool raised RuntimeError (its text is kept in error_text, encrypted)"
    assert "no weather station in Paris" in payload(failed[1], "error_text").text, "decrypted: made here"
    assert types(by_tool["get_time"]) == ["ToolCallStarted", "ToolCallSucceeded"]
    # Agno's own handling is unchanged: the error went back to the model as the tool's result.
    (weather,) = [tool for tool in output.tools or [] if tool.tool_name == "get_weather"]
    assert weather.tool_call_error
    assert "no weather station in Paris" in str(weather.result)


async def test_an_async_tool_is_recorded_around_its_await() -> None:
    async def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    assert_completed(await agent.arun("What is the weather?", session_state=dict(TENANT)))
    assert_two_round_trips_with_two_tools(sink)


async def test_the_users_tool_hooks_still_run_inside_the_recording() -> None:
    seen: list[str] = []

    def shout(function_name: str, function_call: Any, arguments: dict[str, Any]) -> Any:
        seen.append(function_name)
        return str(function_call(**arguments)).upper()

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time], tool_hooks=[shout])

    await agent.arun("What is the weather?", session_state=dict(TENANT))

    assert sorted(seen) == ["get_time", "get_weather"]
    results = {payload(events[0], "tool_name"): payload(events[1], "result").text for events in tool_executions(sink)}
    assert results == {"get_weather": "SUNNY IN PARIS", "get_time": "12:00 UTC"}, "what the model is sent"


async def test_a_streamed_run() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    chunks: list[str] = []
    completed: list[RunCompletedEvent] = []
    async for event in agent.arun("What is the weather?", session_state=dict(TENANT), stream=True, stream_events=True):
        if isinstance(event, RunContentEvent) and isinstance(event.content, str):
            chunks.append(event.content)
        elif isinstance(event, RunCompletedEvent):
            completed.append(event)

    assert "".join(chunks) == "Sunny, and it is noon."
    assert_two_round_trips_with_two_tools(sink, operation="generate_stream")
    (done,) = completed
    answered = [
        payload(event, "usage").total_tokens
        for execution in executions(sink)
        for event in execution
        if event.event_type == "AttemptSucceeded"
    ]
    assert done.metrics is not None and done.metrics.total_tokens == sum(answered)


def test_a_sync_run() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    output = agent.run("What is the weather?", session_state=dict(TENANT))

    assert_completed(output)
    assert_two_round_trips_with_two_tools(sink)


def test_a_sync_streamed_run() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    chunks = [
        event.content
        for event in agent.run("What is the weather?", session_state=dict(TENANT), stream=True)
        if isinstance(event, RunContentEvent) and isinstance(event.content, str)
    ]

    assert "".join(chunks) == "Sunny, and it is noon."
    assert_two_round_trips_with_two_tools(sink, operation="generate_stream")


async def test_a_sync_run_inside_a_running_event_loop() -> None:
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    assert_completed(agent.run("What is the weather?", session_state=dict(TENANT)))
    assert len(executions(sink)) == 2


def test_copies_share_the_executor_and_keep_their_own_agno_state() -> None:
    model = audited(sink=InMemorySink())
    copied = copy.deepcopy(model)
    assert copied is not model
    assert copied.executor is model.executor
    assert copied._bridge is model._bridge
    copied.instructions = ["only in the copy"]
    assert model.instructions is None
    agent = Agent(name="planner", model=model, tools=[get_weather])
    assert isinstance(agent.deep_copy().model, AuditedModel)
    assert agent.deep_copy().model.executor is model.executor  # type: ignore[union-attr]
    assert model.id == PRIMARY and model.provider == "llm-ledger"


async def test_a_workflow_of_two_agent_steps() -> None:
    sink = InMemorySink()
    register_mock("agno-writer", MockBehaviour(p50_ms=0, reply="A short summary."))
    researcher = Agent(name="researcher", model=audited(sink=sink, step_name="research"), tools=[get_weather, get_time])
    writer = Agent(name="writer", model=audited(["mock/agno-writer"], sink=sink, step_name="write"))
    workflow = Workflow(
        name="turn",
        steps=[Step(name="research", agent=researcher), Step(name="write", agent=writer)],
    )

    output = await workflow.arun("What is the weather?", session_state={"tenant_id": "acme"})

    assert output.content == "A short summary."
    # Each step's agent has its own model and step name; its id is Agno's (from its name).
    steps = [(execution[0].step, execution[0].agent_id) for execution in executions(sink)]
    assert steps == [("research", "researcher"), ("research", "researcher"), ("write", "writer")]
    assert {execution[0].tenant_id for execution in executions(sink)} == {"acme"}
    assert len(tool_executions(sink)) == 2
    assert {events[0].step for events in tool_executions(sink)} == {"research"}


async def test_an_output_schema_goes_through_agnos_json_prompt() -> None:
    from pydantic import BaseModel

    class Forecast(BaseModel):
        city: str

    register_mock("agno-json", MockBehaviour(p50_ms=0, reply='{"city": "Paris"}'))
    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(["mock/agno-json"], sink=sink), output_schema=Forecast)

    output = await agent.arun("Which city?", session_state=dict(TENANT))

    assert output.content == Forecast(city="Paris")
    (execution,) = executions(sink)
    assert payload(execution[0], "operation") == "generate"


def test_one_model_serves_sync_and_async_runs_on_real_sdk_clients(providers: dict[str, ProviderSettings]) -> None:
    """An async SDK client belongs to the event loop that first used it: the sync forms, on the model's
    private loop, have clients of their own, so arun, run and arun again all answer at the first
    attempt (one model, real openai SDK, the fake server)."""
    import asyncio

    sink = InMemorySink()
    model = AuditedModel("openai/gpt-4o-mini", providers=providers, sink=sink, max_retries=0)
    agent = Agent(name="planner", model=model)

    async def arun() -> None:
        assert (await agent.arun("hi", session_state=dict(TENANT))).status == RunStatus.completed

    async def both() -> None:
        await arun()
        assert agent.run("hi", session_state=dict(TENANT)).status == RunStatus.completed
        await arun()

    asyncio.run(both())
    assert agent.run("hi", session_state=dict(TENANT)).status == RunStatus.completed

    assert [types(execution) for execution in executions(sink)] == [
        ["ExecutionStarted", "AttemptStarted", "AttemptSucceeded", "ExecutionSucceeded"]
    ] * 4


def test_sync_runs_use_the_models_own_executor_and_configuration(tmp_path: Any) -> None:
    """The sync forms run on the model's own executor (its clients keep one SDK client per event loop):
    a configuration file is read once, when the model is built, and a setting changed on the executor
    holds for sync runs too."""
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[pipeline.generation]\nmodel = "{PRIMARY}"\nfallback_models = ["mock/{TOOLS_MODEL}"]\n')
    sink = InMemorySink()
    model = AuditedModel.from_config(config, step_name="generation", sink=sink, retry_policy=NO_WAIT)
    model.executor.max_retries = 0
    config.unlink()  # read when built: nothing reads it again
    agent = Agent(name="planner", model=model, tools=[get_weather, get_time])

    assert_completed(agent.run("What is the weather?", session_state=dict(TENANT)))

    for execution in executions(sink):
        assert types(execution)[:4] == ["ExecutionStarted", "AttemptStarted", "AttemptFailed", "FallbackTriggered"]


async def test_a_tool_run_after_a_confirmation_pause_is_recorded() -> None:
    """Human in the loop: the run pauses before a tool that needs confirmation; the tool runs in
    ``acontinue_run``, outside the model loop that asked for it, and is recorded all the same."""
    from agno.tools import tool

    ran: list[str] = []

    @tool(requires_confirmation=True)
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"sunny in {city}"

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])

    paused = await agent.arun("What is the weather?", session_state=dict(TENANT), session_id="s-1")
    assert paused.is_paused and ran == []
    for requirement in paused.active_requirements:
        requirement.confirm()  # type: ignore[no-untyped-call]
    output = await agent.acontinue_run(run_response=paused, requirements=paused.requirements)

    assert_completed(output)
    assert ran == ["Paris"]
    by_tool = {payload(events[0], "tool_name"): events for events in tool_executions(sink)}
    assert sorted(by_tool) == ["get_time", "get_weather"]
    weather = by_tool["get_weather"]
    assert types(weather) == ["ToolCallStarted", "ToolCallSucceeded"]
    assert payload(weather[1], "result").text == "sunny in Paris"
    assert (weather[0].tenant_id, weather[0].step) == ("acme", "generation")
    assert payload(weather[0], "tool_call_id") in requested_calls(executions(sink)[0])
    assert payload(weather[0], "execution_id") == executions(sink)[0][0].stream_id, "linked to the asking execution"


def test_a_tool_run_after_a_confirmation_pause_is_recorded_in_a_sync_run() -> None:
    from agno.tools import tool

    @tool(requires_confirmation=True)
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    sink = InMemorySink()
    agent = Agent(name="planner", model=audited(sink=sink), tools=[get_weather, get_time])
    paused = agent.run("What is the weather?", session_state=dict(TENANT), session_id="s-1")
    for requirement in paused.active_requirements:
        requirement.confirm()  # type: ignore[no-untyped-call]
    assert_completed(agent.continue_run(run_response=paused, requirements=paused.requirements))

    by_tool = {payload(events[0], "tool_name"): events for events in tool_executions(sink)}
    assert types(by_tool["get_weather"]) == ["ToolCallStarted", "ToolCallSucceeded"]
    assert by_tool["get_weather"][0].tenant_id == "acme"


async def test_a_round_trip_without_usable_usage_adds_nothing_to_the_runs_metrics(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    """Agno adds each round trip's usage to the run's metrics, but keeps the previous round trip's when
    an answer carries none: an answer whose usage the ledger cannot hold (10**30 tokens) must add zero,
    not count the round trip before it twice (real openai SDK, the fake server)."""
    sink = InMemorySink()
    model = AuditedModel("openai/m-usage", providers=providers, sink=sink, max_retries=0)
    server.script(
        "m-usage",
        ToolCalls([("get_weather", {"city": "Paris"})], input_tokens=10, output_tokens=5),
        Reply(text="Sunny.", input_tokens=10**30, output_tokens=10**30),
    )
    agent = Agent(name="planner", model=model, tools=[get_weather])

    output = await agent.arun("What is the weather?", session_state=dict(TENANT))

    assert output.status == RunStatus.completed, output.content
    assert output.metrics is not None
    assert (output.metrics.input_tokens, output.metrics.output_tokens) == (10, 5)
