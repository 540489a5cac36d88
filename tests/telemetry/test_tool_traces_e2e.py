"""An agent's tool loop through the executor itself (mock models that call tools, ``record_tool_call``),
traced by both tracers to real OTLP receivers: the spans' tree, and the ids the events carry."""

from __future__ import annotations

import pytest

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, ToolSpec, execution_context, record_tool_call
from llm_ledger.events.model import ToolCallStartedPayload
from llm_ledger.executor import ExecutionContext
from llm_ledger.executor.tracing import current_run, span_ref
from tests.telemetry.receivers import neutralise_otel_environment
from tests.telemetry.traced import TRACERS, DropsSpansNamed, Traced, traced_to

ORDER = {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}
TOOLS = [ToolSpec(name="lookup_order", parameters=ORDER), ToolSpec(name="refund", parameters={"type": "object"})]
QUESTION = [LLMMessage(role="user", content="Where is order 7?")]
RUN_CONTEXT = ExecutionContext("acme", agent_id="support", session_id="s-1")


class ToolBroke(Exception):
    pass


async def test_an_agent_run_through_the_executor_is_one_trace_with_the_ids_of_its_events(
    traced: Traced, sink: InMemorySink
) -> None:
    executor = LLMExecutor("mock/m?p50_ms=0&tool_use=1", step_name="generation", sink=sink, tracer=traced.tracer)
    with execution_context(tenant_id="acme", agent_id="support", session_id="s-1"):
        run = traced.tracer.agent_run("support-agent", "agent-7", RUN_CONTEXT)
        token = current_run.set(span_ref(run))
        try:
            asked = await executor.generate(QUESTION, tools=TOOLS)
            assert [c.name for c in asked.tool_calls] == ["lookup_order", "refund"]
            results = []
            for call in asked.tool_calls:
                try:
                    async with record_tool_call(call, sink=sink, tracer=traced.tracer) as tool:
                        if call.name == "refund":
                            raise ToolBroke("refunds are closed")
                        tool.result = {"status": "shipped"}
                    results.append(LLMMessage(role="tool", content="shipped", tool_call_id=call.id, name=call.name))
                except ToolBroke:
                    results.append(LLMMessage(role="tool", content="failed", tool_call_id=call.id, name=call.name))
            conversation = [*QUESTION, LLMMessage(role="assistant", tool_calls=asked.tool_calls), *results]
            answered = await executor.generate(conversation, tools=TOOLS)
        finally:
            current_run.reset(token)
        run.succeeded()
    assert answered.tool_calls == () and answered.finish_reason != "tool_calls"

    traced.flush()
    spans = traced.receiver.wait_for_spans(7)
    assert len(spans) == 7 and len({s.trace_id for s in spans}) == 1, "one trace"
    by_id = {s.span_id: s for s in spans}
    tree = sorted((s.name, by_id[s.parent_span_id].name if s.parent_span_id else None) for s in spans)
    assert tree == [
        ("chat m", "generate generation"),
        ("chat m", "generate generation"),
        ("execute_tool lookup_order", "invoke_agent support-agent"),
        ("execute_tool refund", "invoke_agent support-agent"),
        ("generate generation", "invoke_agent support-agent"),
        ("generate generation", "invoke_agent support-agent"),
        ("invoke_agent support-agent", None),
    ]
    refund = next(s for s in spans if s.name == "execute_tool refund")
    assert refund.status_code == "ERROR" and refund.attributes["error.type"] == "tool_error"
    assert refund.attributes["gen_ai.tool.call.id"] == asked.tool_calls[1].id
    assert refund.attributes["llm_ledger.session_id"] == "s-1"

    # Each tool's events carry its span's ids; each execution's its own.
    tool_streams = [sink.stream(i) for i in sink.stream_ids() if sink.stream(i)[0].event_type == "ToolCallStarted"]
    assert len(tool_streams) == 2
    span_of_tool = {s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name.startswith("execute_tool")}
    for stream in tool_streams:
        started = stream[0].payload
        assert isinstance(started, ToolCallStartedPayload) and started.tool_call_id is not None
        span = span_of_tool[started.tool_call_id]
        assert {(e.trace_id, e.span_id) for e in stream} == {(span.trace_id, span.span_id)}
    chat_of = {by_id[s.parent_span_id].span_id: s for s in spans if s.name == "chat m" and s.parent_span_id}
    asking_started = sink.stream(asked.execution_id)[0]  # ExecutionStarted: the execution span's ids
    assert asking_started.span_id is not None
    assert chat_of[asking_started.span_id].attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]


@pytest.mark.parametrize("param", TRACERS)
async def test_the_tools_of_a_sampled_out_execution_are_sampled_out(
    param: str, monkeypatch: pytest.MonkeyPatch, sink: InMemorySink
) -> None:
    neutralise_otel_environment(monkeypatch)
    with traced_to(param, sampler=DropsSpansNamed("generate")) as traced:
        executor = LLMExecutor("mock/m?p50_ms=0&tool_use=1", step_name="generation", sink=sink, tracer=traced.tracer)
        with execution_context(tenant_id="acme"):
            asked = await executor.generate(QUESTION, tools=TOOLS)
            call = asked.tool_calls[0]
            async with record_tool_call(call, sink=sink, tracer=traced.tracer) as tool:
                tool.result = "shipped"
            assert (tool.trace_id, tool.span_id) == (None, None), "its events carry no ids of a dropped span"
            async with record_tool_call("refund", {}, sink=sink, tracer=traced.tracer) as unasked:
                unasked.result = "done"  # asked by no execution: a root, which the sampler keeps
        traced.flush()
        spans = traced.receiver.wait_for_spans(1)
        assert [(s.name, s.trace_id) for s in spans] == [("execute_tool refund", unasked.trace_id)]
