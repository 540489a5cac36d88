"""How ``turn_span`` behaves at its edges, with both tracers and real OTLP receivers: under an agent run or
a span of the caller's, in concurrent tasks, in a generator closed early or a task cancelled, under a
sampled-out parent that is not llm-ledger's, with a tracer that has no ``turn``, and without a context."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import nullcontext

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from llm_ledger import (
    ExecutionContext,
    InMemorySink,
    LLMExecutor,
    execution_context,
    get_execution_context,
    turn_span,
)
from llm_ledger.executor import tracing
from llm_ledger.executor.tracing import ExecutionTracer, NoTracer, current_run, span_ref
from tests.telemetry.receivers import ReceivedSpan, neutralise_otel_environment
from tests.telemetry.traced import MESSAGES, TRACERS, Traced, traced_executor, traced_to

TURN = f"{gen_ai.GenAiOperationNameValues.INVOKE_WORKFLOW.value} turn"
REMOTE_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
REMOTE_SPAN_ID = 0x00F067AA0BA902B7


def _executor(traced: Traced, sink: InMemorySink, step: str = "generation") -> LLMExecutor:
    return traced_executor(traced, sink, "mock/m?p50_ms=0", step=step)


def _only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


async def test_a_turn_in_an_agent_run_hangs_under_it_and_parents_its_own_executions(
    traced: Traced, sink: InMemorySink
) -> None:
    executor = _executor(traced, sink)
    with execution_context(tenant_id="acme"):
        run = traced.tracer.agent_run("support-agent", None, ExecutionContext("acme"))
        ref = span_ref(run)
        token = current_run.set(ref)
        with turn_span("t-1", tracer=traced.tracer):
            await executor.generate(MESSAGES)
        assert current_run.get() == ref, "the run is current again once the turn ends"
        current_run.reset(token)
        run.succeeded()

    traced.flush()
    spans = traced.receiver.wait_for_spans(4)  # the run, the turn, the execution and its attempt
    turn = _only(spans, TURN)
    assert turn.parent_span_id == _only(spans, "invoke_agent support-agent").span_id
    assert _only(spans, "generate generation").parent_span_id == turn.span_id


async def test_a_span_of_the_callers_own_sits_between_the_turn_and_an_execution(
    traced: Traced, sink: InMemorySink
) -> None:
    executor = _executor(traced, sink)
    application = traced.tracer_provider.get_tracer("focal")
    with (
        execution_context(tenant_id="acme"),
        turn_span("t-1", tracer=traced.tracer),
        application.start_as_current_span("rule filtering step"),
    ):
        await executor.generate(MESSAGES)

    traced.flush()
    spans = traced.receiver.wait_for_spans(4)
    step = _only(spans, "rule filtering step")
    assert step.parent_span_id == _only(spans, TURN).span_id
    assert _only(spans, "generate generation").parent_span_id == step.span_id


async def test_concurrent_turns_are_each_a_trace_of_their_own(traced: Traced, sink: InMemorySink) -> None:
    executor = _executor(traced, sink)

    async def turn(turn_id: str) -> None:
        with execution_context(tenant_id="acme"), turn_span(turn_id, tracer=traced.tracer):
            await executor.generate(MESSAGES)
            await asyncio.sleep(0)  # let the other turn run while this one is open
            await executor.generate(MESSAGES)

    await asyncio.gather(turn("t-1"), turn("t-2"))

    traced.flush()
    spans = traced.receiver.wait_for_spans(10)  # per turn: its span, two executions, two attempts
    turns = {s.attributes["llm_ledger.turn_id"]: s for s in spans if s.name == TURN}
    assert turns.keys() == {"t-1", "t-2"}
    for turn_id, root in turns.items():
        in_trace = [s for s in spans if s.trace_id == root.trace_id]
        assert len(in_trace) == 5
        assert {s.attributes["llm_ledger.turn_id"] for s in in_trace} == {turn_id}
    assert turns["t-1"].trace_id != turns["t-2"].trace_id


@pytest.mark.parametrize("raises", [False, True], ids=["normal", "raising"])
def test_the_callers_span_and_run_are_restored_after_a_turn(traced: Traced, raises: bool) -> None:
    with (
        execution_context(tenant_id="acme"),
        pytest.raises(LookupError) if raises else nullcontext(),
        turn_span("t-1", tracer=traced.tracer),
    ):
        assert trace.get_current_span().get_span_context().is_valid
        if raises:
            raise LookupError("customer 4711 not found")

    assert not trace.get_current_span().get_span_context().is_valid
    assert current_run.get() is None
    assert get_execution_context() is None


async def test_a_generator_closed_early_from_another_task_ends_its_turn_as_a_success(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    async def answer() -> AsyncGenerator[str, None]:
        with turn_span("t-1", tracer=traced.tracer):
            yield "rule 7"
            yield "rule 9"

    async def consumer() -> AsyncGenerator[str, None]:
        chunks = answer()
        assert await anext(chunks) == "rule 7"
        return chunks  # the consumer stops here, as one that breaks out of async for

    with execution_context(tenant_id="acme"):
        chunks = await asyncio.create_task(consumer())
    with caplog.at_level(logging.ERROR):
        await asyncio.create_task(chunks.aclose())  # as asyncio's finalizer closes it: in a task of its own

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    traced.flush()
    turn = _only(traced.receiver.wait_for_spans(1), TURN)
    assert turn.status_code == "UNSET"
    assert error_attributes.ERROR_TYPE not in turn.attributes


async def test_a_cancelled_turn_is_recorded_as_cancelled(traced: Traced) -> None:
    entered, never = asyncio.Event(), asyncio.Event()

    async def turn() -> None:
        with execution_context(tenant_id="acme"), turn_span("t-1", tracer=traced.tracer):
            entered.set()
            await never.wait()

    task = asyncio.create_task(turn())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    traced.flush()
    cancelled = _only(traced.receiver.wait_for_spans(1), TURN)
    assert cancelled.attributes[error_attributes.ERROR_TYPE] == "cancelled"
    assert cancelled.status_message == "cancelled by the caller"


@pytest.mark.parametrize("param", TRACERS)
async def test_under_a_remote_sampled_out_parent_the_applications_sampler_decides(
    param: str, monkeypatch: pytest.MonkeyPatch, sink: InMemorySink
) -> None:
    neutralise_otel_environment(monkeypatch)
    remote = SpanContext(REMOTE_TRACE_ID, REMOTE_SPAN_ID, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with traced_to(param, sampler=ALWAYS_ON) as traced:
        executor = _executor(traced, sink, step="gen")
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))  # traceparent ...-00
        try:
            with execution_context(tenant_id="acme"):
                await executor.generate(MESSAGES)
                with turn_span("t-1", tracer=traced.tracer):
                    await executor.generate(MESSAGES)
        finally:
            otel_context.detach(token)

        traced.flush()
        spans = traced.receiver.wait_for_spans(5)  # two executions and their attempts, and the turn
    assert sorted(s.name for s in spans) == sorted(["chat m", "chat m", "generate gen", "generate gen", TURN])
    assert {s.trace_id for s in spans} == {format(REMOTE_TRACE_ID, "032x")}
    under_remote = {s.name for s in spans if s.parent_span_id == _hex(REMOTE_SPAN_ID)}
    assert under_remote == {"generate gen", TURN}


def test_a_turn_id_without_an_execution_context_is_refused_naming_the_problem() -> None:
    refused = pytest.raises(ValueError, match=r"^turn_span\('t-7'\) needs an execution context to set its turn id in")
    with refused, turn_span("t-7", tracer=NoTracer()):
        pass
    assert get_execution_context() is None


class _TracerWithoutTurns:
    """A tracer of an application's, written before turns had spans: no ``turn``."""

    def __init__(self) -> None:
        self._none = NoTracer()
        self.start, self.tool, self.agent_run = self._none.start, self._none.tool, self._none.agent_run


@pytest.mark.parametrize("how", ["given", "default"])
def test_a_tracer_without_turns_still_runs_the_turn_without_its_span(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy: ExecutionTracer = _TracerWithoutTurns()
    if how == "default":  # as an application installs its own; the package's default is back after the test
        monkeypatch.setattr(tracing, "_default_factory", tracing._default_factory)
        monkeypatch.setattr(tracing, "_default_tracer", tracing._default_tracer)
        tracing.set_default_tracer_factory(lambda: legacy)
    with execution_context(tenant_id="acme"), turn_span("t-2", tracer=legacy if how == "given" else None) as context:
        assert context == get_execution_context() == ExecutionContext("acme", turn_id="t-2")
    assert get_execution_context() is None
