"""Traces an SRE can search, received by real OTLP receivers from both tracers (live and deferred): a turn
(``turn_span``) is one trace under its ``invoke_workflow`` span, every span of a session carries
``gen_ai.conversation.id``, and an execution's span names the provider and models that answered it."""

from __future__ import annotations

import pytest
from agno.agent import Agent
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes

from llm_ledger import (
    AllModelsFailedError,
    ExecutionContext,
    InMemorySink,
    LLMExecutor,
    execution_context,
    get_execution_context,
    record_tool_call,
    turn_span,
)
from llm_ledger.agno import AuditedModel
from llm_ledger.executor import ProviderSettings
from llm_ledger.executor.tracing import NoTracer
from tests.fakes import FakeProviderServer, RateLimited, Reply, ServerError
from tests.telemetry.receivers import ReceivedSpan, neutralise_otel_environment
from tests.telemetry.traced import MESSAGES, NO_WAIT, TRACERS, DropsSpansNamed, Traced, traced_executor, traced_to

INVOKE_WORKFLOW = gen_ai.GenAiOperationNameValues.INVOKE_WORKFLOW.value
OPENAI = gen_ai.GenAiProviderNameValues.OPENAI.value
ANTHROPIC = gen_ai.GenAiProviderNameValues.ANTHROPIC.value


def _only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def _weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_a_turn_is_one_trace_whose_steps_hang_under_its_span(traced: Traced, sink: InMemorySink) -> None:
    filtering = traced_executor(traced, sink, "mock/primary?p50_ms=0&rate_limit=1", "mock/backup?p50_ms=0",
                          step="rule_filtering")  # fmt: skip
    generation = traced_executor(traced, sink, "mock/writer?p50_ms=0", step="generation")
    with (
        execution_context(tenant_id="acme", agent_id="support", session_id="s-1"),
        turn_span("t-7", tracer=traced.tracer) as turn,
    ):
        fell_back = await filtering.generate(MESSAGES)
        answered = await generation.generate(MESSAGES)

    traced.flush()
    spans = traced.receiver.wait_for_spans(6)  # the turn, two executions, three attempts
    root = _only(spans, f"{INVOKE_WORKFLOW} turn")
    assert fell_back.fallback_used and turn.turn_id == "t-7"
    assert {s.trace_id for s in spans} == {root.trace_id}, "one trace"
    assert root.parent_span_id is None
    executions = [_only(spans, "generate rule_filtering"), _only(spans, "generate generation")]
    assert all(e.parent_span_id == root.span_id for e in executions)
    assert root.attributes[gen_ai.GEN_AI_OPERATION_NAME] == INVOKE_WORKFLOW
    assert root.attributes[gen_ai.GEN_AI_WORKFLOW_NAME] == "turn"
    assert root.attributes["llm_ledger.turn_id"] == "t-7"
    events = sink.stream(fell_back.execution_id) + sink.stream(answered.execution_id)
    assert {e.trace_id for e in events} == {root.trace_id}
    assert {e.turn_id for e in events} == {"t-7"}, "the turn id is the context's in the block"
    assert get_execution_context() is None


async def test_every_span_of_a_session_carries_its_conversation_id(traced: Traced, sink: InMemorySink) -> None:
    executor = traced_executor(traced, sink, "mock/primary?p50_ms=0&rate_limit=1", "mock/backup?p50_ms=0",
                         step="rule_filtering")  # fmt: skip
    model = AuditedModel("mock/writer?p50_ms=0", step_name="generation", retry_policy=NO_WAIT, sink=sink,
                         tracer=traced.tracer)  # fmt: skip
    agent = Agent(name="support-agent", model=model, tools=[_weather])
    with execution_context(tenant_id="acme", session_id="s-42", turn_id="t-1"), turn_span(tracer=traced.tracer):
        await executor.generate(MESSAGES)
        with record_tool_call("lookup_order", {"order": 7}, sink=sink, tracer=traced.tracer) as run:
            run.result = "shipped"
        await agent.arun("Weather in Oslo?", session_state={"tenant_id": "acme", "session_id": "s-42"})

    traced.flush()
    # The turn; an execution and its two attempts; a tool execution; the agent run, its execution and attempt.
    spans = traced.receiver.wait_for_spans(8)
    kinds = {s.attributes[gen_ai.GEN_AI_OPERATION_NAME] for s in spans}
    assert kinds == {INVOKE_WORKFLOW, "chat", "execute_tool", "invoke_agent"}
    assert [s.name for s in spans if s.attributes.get(gen_ai.GEN_AI_CONVERSATION_ID) != "s-42"] == []
    assert len({s.trace_id for s in spans}) == 1
    turn = _only(spans, f"{INVOKE_WORKFLOW} turn")
    under_turn = {s.name for s in spans if s.parent_span_id == turn.span_id}
    assert under_turn == {"generate rule_filtering", "execute_tool lookup_order", "invoke_agent support-agent"}


async def test_a_span_without_a_session_carries_no_conversation_id(traced: Traced, sink: InMemorySink) -> None:
    executor = traced_executor(traced, sink, "mock/m?p50_ms=0", step="generation")
    with execution_context(tenant_id="acme"), turn_span("t-1", tracer=traced.tracer):
        await executor.generate(MESSAGES)
    traced.flush()
    spans = traced.receiver.wait_for_spans(3)
    assert [s.name for s in spans if gen_ai.GEN_AI_CONVERSATION_ID in s.attributes] == []


async def test_the_execution_span_names_the_provider_and_models_that_answered_it(
    traced: Traced, server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("gpt-a", RateLimited(retry_after=0))
    server.script("claude-b", Reply(text="rule 7", response_model="claude-b-20250219"))
    executor = LLMExecutor("openai/gpt-a", fallback_models=["anthropic/claude-b"], step_name="rule_filtering",
                           max_retries=0, sink=sink, providers=providers, retry_policy=NO_WAIT,
                           tracer=traced.tracer)  # fmt: skip
    with execution_context(tenant_id="acme", session_id="s-1"):
        await executor.generate(MESSAGES)

    traced.flush()
    execution = _only(traced.receiver.wait_for_spans(3), "generate rule_filtering")
    assert execution.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == ANTHROPIC
    assert execution.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "claude-b"
    assert execution.attributes[gen_ai.GEN_AI_RESPONSE_MODEL] == "claude-b-20250219", "as the provider said"


async def test_a_failed_execution_span_names_the_last_model_asked_and_no_answer(
    traced: Traced, server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("gpt-a", RateLimited(retry_after=0))
    server.script("claude-b", ServerError(status=503))
    executor = LLMExecutor("openai/gpt-a", fallback_models=["anthropic/claude-b"], step_name="rule_filtering",
                           max_retries=0, sink=sink, providers=providers, retry_policy=NO_WAIT,
                           tracer=traced.tracer)  # fmt: skip
    with pytest.raises(AllModelsFailedError), execution_context(tenant_id="acme"):
        await executor.generate(MESSAGES)

    traced.flush()
    execution = _only(traced.receiver.wait_for_spans(3), "generate rule_filtering")
    assert execution.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == ANTHROPIC
    assert execution.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "claude-b"
    assert gen_ai.GEN_AI_RESPONSE_MODEL not in execution.attributes


async def test_a_turn_that_raises_is_a_failed_span_and_the_error_goes_on(traced: Traced, sink: InMemorySink) -> None:
    executor = traced_executor(traced, sink, "mock/down?p50_ms=0&server_error=1", step="generation")
    with (
        pytest.raises(AllModelsFailedError),
        execution_context(tenant_id="acme"),
        turn_span("t-1", name="focal", tracer=traced.tracer),
    ):
        await executor.generate(MESSAGES)
    with (
        pytest.raises(LookupError),
        execution_context(tenant_id="acme"),
        turn_span("t-2", name="focal", tracer=traced.tracer),
    ):
        raise LookupError("customer 4711 not found")

    traced.flush()
    turns = [s for s in traced.receiver.wait_for_spans(4) if s.name == f"{INVOKE_WORKFLOW} focal"]
    by_turn = {s.attributes["llm_ledger.turn_id"]: s for s in turns}
    assert by_turn["t-1"].status_code == by_turn["t-2"].status_code == "ERROR"
    assert by_turn["t-1"].attributes[error_attributes.ERROR_TYPE] == AllModelsFailedError.error_type
    assert by_turn["t-2"].attributes[error_attributes.ERROR_TYPE] == "LookupError"
    assert "4711" not in by_turn["t-2"].status_message, "an application's error text stays off the span"


@pytest.mark.parametrize("param", TRACERS)
async def test_a_sampled_out_turn_drops_its_executions_with_it(
    param: str, monkeypatch: pytest.MonkeyPatch, sink: InMemorySink
) -> None:
    neutralise_otel_environment(monkeypatch)
    with traced_to(param, sampler=DropsSpansNamed(INVOKE_WORKFLOW)) as traced:
        executor = traced_executor(traced, sink, "mock/primary?p50_ms=0&rate_limit=1", "mock/backup?p50_ms=0",
                             step="rule_filtering")  # fmt: skip
        with execution_context(tenant_id="acme", session_id="s-1"), turn_span("t-1", tracer=traced.tracer):
            dropped = await executor.generate(MESSAGES)
        with execution_context(tenant_id="acme", session_id="s-1"):
            kept = await executor.generate(MESSAGES)  # no turn: sampled, and exported after the turn would be

        traced.flush()
        spans = traced.receiver.wait_for_spans(3)
    assert {s.attributes["llm_ledger.execution_id"] for s in spans} == {str(kept.execution_id)}
    assert {(e.trace_id, e.span_id) for e in sink.stream(dropped.execution_id)} == {(None, None)}


@pytest.mark.parametrize(("arguments", "named"), [({"turn_id": ""}, "turn_id"), ({"name": ""}, "name")])
def test_a_turn_without_an_id_or_a_name_is_refused_naming_it(arguments: dict[str, str], named: str) -> None:
    refused = pytest.raises(ValueError, match=f"^turn_span's {named} must be a non-empty string, not ''$")
    with refused, turn_span(**arguments, tracer=NoTracer()):
        pass


async def test_without_tracing_a_turn_still_sets_its_turn_id(sink: InMemorySink) -> None:
    executor = LLMExecutor("mock/m?p50_ms=0", step_name="generation", sink=sink, tracer=NoTracer())
    with execution_context(tenant_id="acme", turn_id="t-1"), turn_span("t-2", tracer=NoTracer()):
        response = await executor.generate(MESSAGES)
        assert get_execution_context() == ExecutionContext("acme", turn_id="t-2")
    assert get_execution_context() is None
    assert {(e.turn_id, e.trace_id) for e in sink.stream(response.execution_id)} == {("t-2", None)}
