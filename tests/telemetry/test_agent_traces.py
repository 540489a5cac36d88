"""An Agno Agent on ``AuditedModel``, traced by both tracers to real OTLP receivers: in each of Agno's four
ways in (``arun``, ``arun(stream=True)``, ``run``, ``run(stream=True)``) the run is one ``invoke_agent``
trace whose executions and tool executions hang under it, and no tool argument, result or error text,
nor prompt or answer text, reaches any span."""

from __future__ import annotations

from typing import Any

import pytest
from agno.agent import Agent

from llm_ledger.agno import AuditedModel
from llm_ledger.events.model import ToolCallStartedPayload
from llm_ledger.executor import ExecutionContext, InMemorySink, MockBehaviour, RetryPolicy, register_mock
from tests.telemetry.receivers import ReceivedSpan, neutralise_otel_environment
from tests.telemetry.traced import TRACERS, DropsSpansNamed, Traced, traced_to

SECRET_CITY = "Zanzibar-4711"
SECRET_ZONE = "Zone-0815"
SECRET_RESULT = "sunshine-result-9931"
SECRET_ERROR = "time service down for"
SECRET_PROMPT = "prompt-text-5521"
SECRET_REPLY = "answer-text-3344"
SECRETS = (SECRET_CITY, SECRET_ZONE, SECRET_RESULT, SECRET_ERROR, SECRET_PROMPT, SECRET_REPLY)

register_mock(
    "agno-traced-tools",
    MockBehaviour(
        p50_ms=0,
        reply=SECRET_REPLY,
        tool_calls=(("get_weather", {"city": SECRET_CITY}), ("get_time", {"zone": SECRET_ZONE})),
    ),
)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"{SECRET_RESULT} in {city}"


def get_time(zone: str) -> str:
    """The time in a time zone."""
    raise RuntimeError(f"{SECRET_ERROR} {zone}")


def _texts(span: ReceivedSpan) -> list[str]:
    """Every text a span carries: its name, attribute values, status message and events."""
    texts = [span.name, span.status_message, *(str(value) for value in span.attributes.values())]
    for event in span.events:
        texts.append(str(event))
    return texts


@pytest.mark.parametrize("capture", ["none", "hash", "full"])
@pytest.mark.parametrize("how", ["arun", "arun-stream", "run", "run-stream"])
async def test_an_agent_run_is_one_trace_under_its_invoke_agent_span_and_carries_no_content(
    traced: Traced, how: str, capture: str
) -> None:
    sink = InMemorySink()
    model = AuditedModel(
        "mock/agno-traced-tools",
        step_name="generation",
        retry_policy=RetryPolicy(base_delay=0, jitter=0),
        sink=sink,
        capture=capture,
        tracer=traced.tracer,
    )
    agent = Agent(name="support-agent", model=model, tools=[get_weather, get_time])
    state = {"tenant_id": "acme", "session_id": "s-1"}
    prompt = f"What is the weather? {SECRET_PROMPT}"
    output: Any
    if how == "arun":
        output = await agent.arun(prompt, session_state=state)
    elif how == "arun-stream":
        async for _ in agent.arun(prompt, session_state=state, stream=True):
            pass
    elif how == "run":
        output = agent.run(prompt, session_state=state)
    else:
        for _ in agent.run(prompt, session_state=state, stream=True):
            pass
    if how in ("arun", "run"):
        assert SECRET_REPLY in str(output.content), "the agent ran to its answer"

    traced.flush()
    spans = traced.receiver.wait_for_spans(7)
    assert len(spans) == 7, sorted(s.name for s in spans)
    assert len({s.trace_id for s in spans}) == 1, "one trace"
    by_id = {s.span_id: s for s in spans}
    tree = sorted((s.name, by_id[s.parent_span_id].name if s.parent_span_id else None) for s in spans)
    execution = "generate_stream generation" if how.endswith("stream") else "generate generation"
    assert tree == [
        ("chat agno-traced-tools", execution),
        ("chat agno-traced-tools", execution),
        ("execute_tool get_time", "invoke_agent support-agent"),
        ("execute_tool get_weather", "invoke_agent support-agent"),
        (execution, "invoke_agent support-agent"),
        (execution, "invoke_agent support-agent"),
        ("invoke_agent support-agent", None),
    ]
    failed = next(s for s in spans if s.name == "execute_tool get_time")
    assert failed.status_code == "ERROR" and failed.attributes["error.type"] == "tool_error"
    for span in spans:
        assert span.attributes["llm_ledger.tenant_id"] == "acme"
        # Whatever the capture policy keeps in the ledger: a span goes to a collector the ledger's policy
        # does not govern, and a tool's exception text quotes its arguments.
        leaked = [(text, secret) for text in _texts(span) for secret in SECRETS if secret in text]
        assert leaked == [], f"{span.name} carries content"

    # The events of each tool execution carry the ids of its span.
    tool_spans = {s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name.startswith("execute_tool")}
    tool_streams = [sink.stream(i) for i in sink.stream_ids() if sink.stream(i)[0].event_type == "ToolCallStarted"]
    assert len(tool_streams) == 2
    for stream in tool_streams:
        started = stream[0].payload
        assert isinstance(started, ToolCallStartedPayload) and started.tool_call_id is not None
        span = tool_spans[started.tool_call_id]
        assert {(e.trace_id, e.span_id) for e in stream} == {(span.trace_id, span.span_id)}


@pytest.mark.parametrize("param", TRACERS)
@pytest.mark.parametrize("how", ["arun", "run-stream"])
async def test_a_sampled_out_agent_run_takes_its_executions_and_tools_with_it(
    param: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Agno layer hands its executions and tools the run's ids alone (``RunScope.span``), which say
    nothing of sampling: the tracer's memory of the runs it sampled out is what keeps the trace whole."""
    neutralise_otel_environment(monkeypatch)
    sink = InMemorySink()
    with traced_to(param, sampler=DropsSpansNamed("invoke_agent")) as traced:
        model = AuditedModel(
            "mock/agno-traced-tools",
            step_name="generation",
            retry_policy=RetryPolicy(base_delay=0, jitter=0),
            sink=sink,
            tracer=traced.tracer,
        )
        agent = Agent(name="support-agent", model=model, tools=[get_weather, get_time])
        if how == "arun":
            await agent.arun("What is the weather?", session_state={"tenant_id": "acme"})
        else:
            for _ in agent.run("What is the weather?", session_state={"tenant_id": "acme"}, stream=True):
                pass
        tracer: Any = traced.tracer
        assert len(tracer.sampled_out) == 0, "an ended run is forgotten"
        # A span the sampler keeps, after the run, so that the export is known to have happened.
        marker = traced.tracer.tool("after_the_run", None, ExecutionContext("acme"), None)
        marker.succeeded()
        traced.flush()
        spans = traced.receiver.wait_for_spans(1)
    assert [s.name for s in spans] == ["execute_tool after_the_run"]
    events = [event for stream_id in sink.stream_ids() for event in sink.stream(stream_id)]
    assert len(events) > 10 and {(e.trace_id, e.span_id) for e in events} == {(None, None)}
