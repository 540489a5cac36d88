"""Agno Agents on ``AuditedModel`` against the real provider classes and SDKs, answered by the fake
OpenAI-compatible and Anthropic servers on 127.0.0.1: every round trip is one execution with every
attempt, every tool the Agent runs is one tool execution linked to the call that asked for it, in a real
store that ``audit verify`` finds clean, and the servers saw exactly the requests the events say."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from agno.agent import Agent
from agno.run.agent import RunContentEvent, RunOutput
from agno.run.base import RunStatus

from llm_ledger.agno import AuditedModel
from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink, ProviderSettings, RetryPolicy
from tests.agno.test_audited_model import executions, payload, tool_executions, types
from tests.executor.ledger import Ledger
from tests.fakes import FakeProviderServer, RateLimited, Reply, ToolCalls
from tests.fakes import ServerError as ServerFails

NO_WAIT = RetryPolicy(base_delay=0, jitter=0)
THROTTLED_THEN_FALLBACK = [
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


class Tools:
    """The Agent's two tools, counting their runs (each must run exactly once per call)."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    def get_weather(self, city: str) -> str:
        """The weather in a city."""
        self.runs["get_weather"] += 1
        return f"sunny in {city}"

    def get_time(self, zone: str) -> str:
        """The time in a time zone."""
        self.runs["get_time"] += 1
        return f"12:00 {zone}"


def _run_state(tenant: str) -> dict[str, Any]:
    return {"tenant_id": tenant, "agent_id": "planner", "turn_id": "turn-1"}


def _tenant_streams(ledger: Ledger, tenant: str) -> dict[uuid.UUID, list[Event]]:
    streams: dict[uuid.UUID, list[Event]] = {}
    for event in ledger.store.scoped(tenant_id=tenant).read_tenant(tenant):
        streams.setdefault(event.stream_id, []).append(event)
    return {stream_id: sorted(stream, key=lambda e: e.stream_position) for stream_id, stream in streams.items()}


def _assert_requests_are_the_attempts(server: FakeProviderServer, attempts: list[str]) -> None:
    """One request per recorded attempt, in order, to the attempt's model, each one the provider accepts:
    no hidden retry, no request the ledger does not hold."""
    requests = server.requests
    assert [f"{r.provider}/{r.model}" for r in requests] == attempts
    assert all(r.rejected is None for r in requests), [r.rejected for r in requests]


async def test_an_agent_on_two_providers_records_every_attempt_and_every_tool_in_the_store(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    server.default("a", RateLimited(retry_after=0))  # the primary is throttled until its retries are spent
    server.script("b", ToolCalls([("get_weather", {"city": "Paris"}), ("get_time", {"zone": "UTC"})]))
    server.script("b", Reply(text="Sunny, and it is noon."))
    tools = Tools()
    model = AuditedModel(
        ["openai/a", "anthropic/b"],
        step_name="generation",
        max_retries=1,
        retry_policy=NO_WAIT,
        providers=providers,
        sink=ledger.writer,
        capture="full",
    )
    agent = Agent(name="planner", model=model, tools=[tools.get_weather, tools.get_time], telemetry=False)

    output = await agent.arun("What is the weather?", session_state=_run_state(tenant), session_id="s-1")

    assert isinstance(output, RunOutput) and output.status == RunStatus.completed, output.content
    assert output.content == "Sunny, and it is noon."
    stats = ledger.settle()
    assert stats.rejected == 0 and ledger.rejected() == ""
    streams = list(_tenant_streams(ledger, tenant).values())
    runs = sorted((s for s in streams if s[0].event_type == "ExecutionStarted"), key=lambda s: s[0].occurred_at)
    tool_runs = [s for s in streams if s[0].event_type == "ToolCallStarted"]
    assert len(runs) == 2 and len(tool_runs) == 2, "one execution per round trip, one per tool run"
    first, second = runs
    assert types(first) == types(second) == THROTTLED_THEN_FALLBACK
    asked = next(e for e in first if e.event_type == "AttemptSucceeded")
    calls = {call.id: call.name for call in getattr(asked.payload, "tool_calls", ())}
    assert sorted(calls.values()) == ["get_time", "get_weather"]
    for run in tool_runs:
        started, ended = run
        assert ended.event_type == "ToolCallSucceeded"
        assert payload(started, "execution_id") == first[0].stream_id
        assert calls[payload(started, "tool_call_id")] == payload(started, "tool_name")
        assert (started.tenant_id, started.agent_id, started.session_id) == (tenant, "planner", "s-1")
    assert tools.runs == {"get_weather": 1, "get_time": 1}
    assert {e.tenant_id for stream in streams for e in stream} == {tenant}
    report = ledger.verify(tenant)
    assert report.ok, [str(f) for f in report.findings]
    _assert_requests_are_the_attempts(
        server, ["openai/a", "openai/a", "anthropic/b", "openai/a", "openai/a", "anthropic/b"]
    )
    results = server.requests[-1].tool_results
    assert sorted(result.tool_call_id for result in results) == sorted(calls)


async def test_a_streamed_agent_run_calls_its_tools_and_streams_the_answer(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    sink = InMemorySink()
    server.script("s", ToolCalls([("get_weather", {"city": "Oslo"})], argument_chunks=4))
    server.script("s", Reply(text="It is sunny in Oslo today."))
    tools = Tools()
    model = AuditedModel("openai/s", step_name="generation", providers=providers, sink=sink)
    agent = Agent(name="planner", model=model, tools=[tools.get_weather], telemetry=False)

    chunks = [
        event.content
        async for event in agent.arun("Weather in Oslo?", session_state=_run_state("acme"), stream=True)
        if isinstance(event, RunContentEvent) and isinstance(event.content, str)
    ]

    assert "".join(chunks) == "It is sunny in Oslo today."
    first, second = executions(sink)
    assert payload(first[0], "operation") == payload(second[0], "operation") == "generate_stream"
    (tool_run,) = tool_executions(sink)
    assert types(tool_run) == ["ToolCallStarted", "ToolCallSucceeded"]
    assert payload(tool_run[0], "execution_id") == first[0].stream_id
    assert tools.runs == {"get_weather": 1}
    _assert_requests_are_the_attempts(server, ["openai/s", "openai/s"])


async def test_a_tool_that_raises_is_recorded_as_failed_and_the_agent_answers_after_it(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    sink = InMemorySink()

    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise ConnectionError(f"the weather service is down for {city}")

    server.script("w", ToolCalls([("get_weather", {"city": "Paris"})]), Reply(text="I could not check."))
    model = AuditedModel("anthropic/w", step_name="generation", providers=providers, sink=sink)
    agent = Agent(name="planner", model=model, tools=[get_weather], telemetry=False)

    output = await agent.arun("Weather?", session_state=_run_state("acme"))

    assert output.status == RunStatus.completed and output.content == "I could not check."
    (tool_run,) = tool_executions(sink)
    assert types(tool_run) == ["ToolCallStarted", "ToolCallFailed"]
    failed = tool_run[1]
    assert (payload(failed, "error_type"), payload(failed, "error_class")) == ("tool_error", "ConnectionError")
    # Under the default capture the tool's text, which quotes its argument, is not kept: its class is.
    assert "Paris" not in payload(failed, "message") and "ConnectionError" in payload(failed, "message")
    # The model was told of the failure in the tool result Agno sent back.
    (result,) = server.requests[-1].tool_results
    assert result.tool_call_id == payload(tool_run[0], "tool_call_id")


async def test_a_fallback_across_the_formats_in_the_middle_of_a_tool_conversation(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    """The first round trip is answered by the OpenAI-style provider, whose calls carry its ids; the
    second falls back to Anthropic, which must receive the same conversation as tool_use/tool_result
    blocks (the fake refuses, as the API does, a result without its call)."""
    sink = InMemorySink()
    server.script("o", ToolCalls([("get_weather", {"city": "Rome"}), ("get_time", {"zone": "CET"})]))
    server.script("o", ServerFails(status=500))
    server.script("c", Reply(text="Sunny in Rome, 13:00."))
    tools = Tools()
    model = AuditedModel(
        ["openai/o", "anthropic/c"], step_name="generation", max_retries=0, providers=providers, sink=sink
    )
    agent = Agent(name="planner", model=model, tools=[tools.get_weather, tools.get_time], telemetry=False)

    output = await agent.arun("Weather and time in Rome?", session_state=_run_state("acme"))

    assert output.status == RunStatus.completed and output.content == "Sunny in Rome, 13:00."
    first, second = executions(sink)
    assert types(first) == ["ExecutionStarted", "AttemptStarted", "AttemptSucceeded", "ExecutionSucceeded"]
    assert types(second)[-3:] == ["AttemptStarted", "AttemptSucceeded", "ExecutionSucceeded"]
    assert "FallbackTriggered" in types(second)
    _assert_requests_are_the_attempts(server, ["openai/o", "openai/o", "anthropic/c"])
    asked = {payload(run[0], "tool_call_id") for run in tool_executions(sink)}
    assert {result.tool_call_id for result in server.requests[-1].tool_results} == asked
    assert {result.tool_call_id for result in server.requests[1].tool_results} == asked
    assert tools.runs == {"get_weather": 1, "get_time": 1}


async def test_a_call_id_the_provider_uses_again_in_a_later_round_trip_keeps_each_call_as_it_was(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    """Some OpenAI-compatible servers number their calls per answer (``call_1`` in every round trip): the
    conversation sent back must still say what each round trip asked for, not the last call of that id."""
    sink = InMemorySink()
    server.script("x", ToolCalls([("get_weather", {"city": "Rome"})], ids=["call_1"]))
    server.script("x", ToolCalls([("get_time", {"zone": "CET"})], ids=["call_1"]))
    server.script("x", Reply(text="Sunny, 13:00."))
    tools = Tools()
    model = AuditedModel("openai/x", step_name="generation", providers=providers, sink=sink)
    agent = Agent(name="planner", model=model, tools=[tools.get_weather, tools.get_time], telemetry=False)

    output = await agent.arun("Weather and time?", session_state=_run_state("acme"))

    assert output.status == RunStatus.completed and output.content == "Sunny, 13:00."
    sent = [(call.name, call.arguments) for call in server.requests[-1].tool_calls_sent]
    assert sent == [("get_weather", {"city": "Rome"}), ("get_time", {"zone": "CET"})]
    first, second, _ = executions(sink)
    runs = {payload(run[0], "tool_name"): payload(run[0], "execution_id") for run in tool_executions(sink)}
    assert runs == {"get_weather": first[0].stream_id, "get_time": second[0].stream_id}
