"""Tool executions and agent runs as OTLP traces (GenAI semantic conventions), through the tracer seam
itself (``start``/``tool``/``agent_run`` and ``tracing.current_run``), in both tracers, received by real
OTLP receivers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import orjson
import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes

from llm_ledger.executor import ExecutionContext
from llm_ledger.executor.client import CallParams, Completion
from llm_ledger.executor.mock import MockModelClient
from llm_ledger.executor.routing import parse_model_string
from llm_ledger.executor.tools import RequestedToolCall, ToolSpec
from llm_ledger.executor.tracing import (
    ExecutionTrace,
    ExecutionTracer,
    NoTracer,
    RunTrace,
    SpanRef,
    current_run,
    span_ref,
)
from tests.telemetry.receivers import ReceivedSpan, neutralise_otel_environment
from tests.telemetry.traced import TRACERS, DropsSpansNamed, Traced, traced_to

CONTEXT = ExecutionContext("acme", agent_id="support", session_id="s-1", turn_id="t-1", step="generation")
TOOLS = (
    ToolSpec(name="lookup_order", description="Find an order", parameters={"type": "object", "properties": {}}),
    ToolSpec(name="refund", description="Refund an order", parameters={"type": "object", "properties": {}}),
)
EXECUTE_TOOL = gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
INVOKE_AGENT = gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value


@contextmanager
def running(run: RunTrace) -> Iterator[None]:
    """What ``llm_ledger.agno`` does around an Agent's model loop: the run is current, then not."""
    token = current_run.set(span_ref(run))
    try:
        yield
    finally:
        current_run.reset(token)


def execution(
    tracer: ExecutionTracer, *, tools: Sequence[ToolSpec] = (), finish_reason: str = "stop", calls: int = 0
) -> ExecutionTrace:
    """One execution with one attempt on a mock model, ended; ``calls`` tool calls in its answer."""
    trace = tracer.start(uuid4(), "generate", CONTEXT, ("mock/m",))
    client = MockModelClient.for_route(parse_model_string("mock/m"))
    attempt = trace.attempt(1, client, 0, 0, CallParams(timeout=30.0, tools=tuple(tools)), False)
    requested = [RequestedToolCall(id=f"call_{i}", name=TOOLS[i].name, arguments="{}") for i in range(calls)]
    attempt.succeeded(Completion(text="", finish_reason=finish_reason, tool_calls=requested), None)
    trace.succeeded()
    return trace


def ids_of(trace: ExecutionTrace | RunTrace) -> tuple[str, str]:
    assert trace.trace_id is not None and trace.span_id is not None
    return trace.trace_id, trace.span_id


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = named(spans, name)
    return span


def test_a_tool_span_is_under_the_execution_that_asked_for_it(traced: Traced) -> None:
    asking = execution(traced.tracer, tools=TOOLS, finish_reason="tool_calls", calls=1)
    tool = traced.tracer.tool("lookup_order", "call_0", CONTEXT, span_ref(asking))
    tool.succeeded()

    traced.flush()
    spans = traced.receiver.wait_for_spans(3)
    span = only(spans, "execute_tool lookup_order")
    trace_id, execution_span_id = ids_of(asking)
    assert (span.trace_id, span.parent_span_id) == (trace_id, execution_span_id)
    assert (span.trace_id, span.span_id) == (tool.trace_id, tool.span_id), "the ids its events carry"
    assert span.kind == "INTERNAL" and span.status_code == "UNSET"
    assert span.attributes == {
        gen_ai.GEN_AI_OPERATION_NAME: EXECUTE_TOOL,
        gen_ai.GEN_AI_TOOL_NAME: "lookup_order",
        gen_ai.GEN_AI_TOOL_CALL_ID: "call_0",
        gen_ai.GEN_AI_TOOL_TYPE: "function",
        gen_ai.GEN_AI_CONVERSATION_ID: "s-1",
        "llm_ledger.tenant_id": "acme",
        "llm_ledger.agent_id": "support",
        "llm_ledger.session_id": "s-1",
        "llm_ledger.turn_id": "t-1",
        "llm_ledger.step": "generation",
    }
    # The chat span of the attempt that asked: the offered tools by name only, the provider's own word.
    chat = only(spans, "chat m")
    assert orjson.loads(str(chat.attributes[gen_ai.GEN_AI_TOOL_DEFINITIONS])) == [
        {"type": "function", "name": "lookup_order"},
        {"type": "function", "name": "refund"},
    ]
    assert chat.attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ["tool_calls"]


def test_a_chat_span_without_tools_names_none(traced: Traced) -> None:
    execution(traced.tracer)
    traced.flush()
    chat = only(traced.receiver.wait_for_spans(2), "chat m")
    assert gen_ai.GEN_AI_TOOL_DEFINITIONS not in chat.attributes


def test_a_tool_is_under_the_current_run_before_the_execution_that_asked(traced: Traced) -> None:
    outside = execution(traced.tracer)  # an execution of before the run, given as the asking one
    run = traced.tracer.agent_run("support-agent", "agent-7", CONTEXT)
    with running(run):
        traced.tracer.tool("refund", "call_9", CONTEXT, span_ref(outside)).succeeded()
    run.succeeded()

    traced.flush()
    spans = traced.receiver.wait_for_spans(4)
    tool, run_span = only(spans, "execute_tool refund"), only(spans, "invoke_agent support-agent")
    assert (tool.trace_id, tool.parent_span_id) == ids_of(run)
    assert (run_span.trace_id, run_span.span_id) == ids_of(run)
    assert run_span.parent_span_id is None and run_span.kind == "INTERNAL"
    assert run_span.attributes[gen_ai.GEN_AI_OPERATION_NAME] == INVOKE_AGENT
    assert run_span.attributes[gen_ai.GEN_AI_AGENT_NAME] == "support-agent"
    assert run_span.attributes[gen_ai.GEN_AI_AGENT_ID] == "agent-7"
    assert run_span.attributes["llm_ledger.tenant_id"] == "acme"
    assert run_span.attributes["llm_ledger.step"] == "generation"


def test_an_agent_run_with_two_executions_and_two_tools_is_one_trace(traced: Traced) -> None:
    run = traced.tracer.agent_run("support-agent", None, CONTEXT)
    with running(run):
        first = execution(traced.tracer, tools=TOOLS, finish_reason="tool_use", calls=2)
        for i, spec in enumerate(TOOLS):
            traced.tracer.tool(spec.name, f"call_{i}", CONTEXT, span_ref(first)).succeeded()
        second = execution(traced.tracer, tools=TOOLS, finish_reason="end_turn")
    run.succeeded()

    traced.flush()
    spans = traced.receiver.wait_for_spans(7)
    assert len(spans) == 7 and {s.trace_id for s in spans} == {ids_of(run)[0]}, "one trace"
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
    run_span = only(spans, "invoke_agent support-agent")
    assert gen_ai.GEN_AI_AGENT_ID not in run_span.attributes
    finish = {by_id[s.parent_span_id].span_id: s.attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS]
              for s in named(spans, "chat m") if s.parent_span_id}  # fmt: skip
    assert finish == {ids_of(first)[1]: ["tool_use"], ids_of(second)[1]: ["end_turn"]}


def test_a_failed_tool_span_says_why(traced: Traced) -> None:
    asking = execution(traced.tracer, tools=TOOLS, finish_reason="tool_calls", calls=1)
    tool = traced.tracer.tool("lookup_order", None, CONTEXT, span_ref(asking))
    tool.failed("tool_error", "order service said no (key [REDACTED])")
    tool.succeeded()  # a second end changes nothing

    traced.flush()
    span = only(traced.receiver.wait_for_spans(3), "execute_tool lookup_order")
    assert span.status_code == "ERROR"
    assert span.status_message == "order service said no (key [REDACTED])"
    assert span.attributes[error_attributes.ERROR_TYPE] == "tool_error"
    assert gen_ai.GEN_AI_TOOL_CALL_ID not in span.attributes, "no call id was given"


def test_without_run_or_asking_execution_a_tool_is_under_the_current_span_else_a_root(traced: Traced) -> None:
    caller = traced.tracer_provider.get_tracer("focal")
    with caller.start_as_current_span("focal tool executor") as current:
        under_current = traced.tracer.tool("lookup_order", "call_1", CONTEXT, None)
        under_current.succeeded()
        asking = execution(traced.tracer)
        under_asking = traced.tracer.tool("refund", "call_2", CONTEXT, span_ref(asking))
        under_asking.succeeded()
    root = traced.tracer.tool("lookup_order", "call_3", CONTEXT, None)
    root.succeeded()

    traced.flush()
    spans = traced.receiver.wait_for_spans(6)
    by_call = {s.attributes.get(gen_ai.GEN_AI_TOOL_CALL_ID): s for s in spans if s.name.startswith(EXECUTE_TOOL)}
    assert by_call["call_1"].parent_span_id == format(current.get_span_context().span_id, "016x")
    assert by_call["call_2"].parent_span_id == ids_of(asking)[1], "the asking execution before the current span"
    assert by_call["call_3"].parent_span_id is None
    assert by_call["call_3"].trace_id not in {by_call["call_1"].trace_id}


def test_a_run_inside_a_run_is_its_child(traced: Traced) -> None:
    outer = traced.tracer.agent_run("team", None, CONTEXT)
    with running(outer):
        inner = traced.tracer.agent_run("member", None, CONTEXT)
        inner.succeeded()
    outer.succeeded()
    traced.flush()
    spans = traced.receiver.wait_for_spans(2)
    assert only(spans, "invoke_agent member").parent_span_id == ids_of(outer)[1]
    assert only(spans, "invoke_agent team").parent_span_id is None


@pytest.mark.parametrize("param", TRACERS)
def test_the_executions_and_tools_of_a_sampled_out_run_are_sampled_out(
    param: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    neutralise_otel_environment(monkeypatch)
    with traced_to(param, sampler=DropsSpansNamed(INVOKE_AGENT)) as traced:
        run = traced.tracer.agent_run("support-agent", None, CONTEXT)
        assert run.trace_id and run.span_id, "a run's ids parent its children even when it is sampled out"
        with running(run):
            inside = execution(traced.tracer, tools=TOOLS, finish_reason="tool_calls", calls=1)
            tool = traced.tracer.tool("lookup_order", "call_0", CONTEXT, span_ref(inside))
            tool.succeeded()
            nested = traced.tracer.agent_run("member", None, CONTEXT)
            with running(nested):
                deep = traced.tracer.tool("refund", "call_1", CONTEXT, None)
                deep.succeeded()
            nested.succeeded()
        run.succeeded()
        # What the events of the run's children carry: no ids of spans that do not exist.
        assert (inside.trace_id, inside.span_id, tool.trace_id, tool.span_id) == (None, None, None, None)
        assert deep.trace_id is None
        # An asking execution that was sampled out makes its tool sampled out too, even outside a run.
        lone = traced.tracer.tool("refund", "call_2", CONTEXT, span_ref(inside))
        lone.succeeded()
        assert lone.trace_id is None
        sampled = execution(traced.tracer)  # outside the run: the sampler keeps it

        traced.flush()
        spans = traced.receiver.wait_for_spans(2)
        assert sorted(s.name for s in spans) == ["chat m", "generate generation"]
        assert {s.trace_id for s in spans} == {ids_of(sampled)[0]}
        tracer: Any = traced.tracer
        assert len(tracer.sampled_out) == 0, "ended runs are forgotten"


def test_a_sampled_run_given_by_its_ids_alone_parents_as_sampled(traced: Traced) -> None:
    """What ``llm_ledger.agno`` builds from a run's ``trace_id``/``span_id`` is enough."""
    run = traced.tracer.agent_run("support-agent", None, CONTEXT)
    token = current_run.set(SpanRef(*ids_of(run)))
    try:
        asking = execution(traced.tracer)
    finally:
        current_run.reset(token)
    run.succeeded()
    traced.flush()
    spans = traced.receiver.wait_for_spans(3)
    assert only(spans, "generate generation").parent_span_id == ids_of(run)[1]
    assert asking.trace_id == ids_of(run)[0]


def test_the_no_tracer_gives_no_ids() -> None:
    tracer = NoTracer()
    run = tracer.agent_run("a", None, CONTEXT)
    tool = tracer.tool("t", "c", CONTEXT, None)
    assert (run.trace_id, run.span_id, tool.trace_id, tool.span_id) == (None, None, None, None)
    assert span_ref(run) is None and span_ref(tracer.start(uuid4(), "generate", CONTEXT, ())) is None
    run.succeeded()
    tool.failed("tool_error", "no")


@pytest.mark.parametrize(
    ("trace_id", "span_id", "field"),
    [
        ("0" * 32, "1" * 16, "trace_id"),
        ("A" * 32, "1" * 16, "trace_id"),
        ("1" * 31, "1" * 16, "trace_id"),
        ("1" * 32, "0" * 16, "span_id"),
        ("1" * 32, "xyz", "span_id"),
    ],
)
def test_a_span_ref_with_bad_ids_is_refused_by_name(trace_id: str, span_id: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"SpanRef.{field} must be"):
        SpanRef(trace_id, span_id)
