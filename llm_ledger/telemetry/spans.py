"""GenAI spans for executions, attempts, tool executions and agent runs (OpenTelemetry semantic
conventions for generative AI).

One INTERNAL span per execution, child of the current agent run (``tracing.current_run``) or else of the
caller's current span, and one CLIENT span per attempt named ``{gen_ai.operation.name}
{gen_ai.request.model}``. A tool execution is an INTERNAL ``execute_tool {gen_ai.tool.name}`` span under
the current run, else under the execution that asked for it; an agent run an INTERNAL ``invoke_agent
{gen_ai.agent.name}`` span; a Focal turn (``turns.turn_span``) an INTERNAL ``invoke_workflow {name}`` span,
the current span while it runs, so that a turn is one trace. Every span of a session carries
``gen_ai.conversation.id`` (the session id), by which trace UIs group a session; an execution's span
names the provider and models of the attempt that answered it. Attribute names come from the
``opentelemetry-semantic-conventions`` package. Prompt and answer content, tool arguments and results are
never put on spans. The functions here say what the spans hold; ``OtelExecutionTracer`` makes them through
the OpenTelemetry API as a call goes, ``deferred`` builds the same after the call.

No metric for tools or runs: the pinned conventions (and the released GenAI conventions) name none; the
``gen_ai.client.*`` histograms are for model calls only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import orjson
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode

from llm_ledger._metadata import __version__
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ProviderError
from llm_ledger.executor.tools import ToolSpec
from llm_ledger.executor.tracing import SpanRef, current_run
from llm_ledger.telemetry.parenting import NOT_SAMPLED, SampledOutRuns, new_span_id, parent_context
from llm_ledger.telemetry.turns import CurrentTurn

OPERATION = gen_ai.GenAiOperationNameValues.CHAT.value
EXECUTE_TOOL = gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
INVOKE_AGENT = gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value
INVOKE_WORKFLOW = gen_ai.GenAiOperationNameValues.INVOKE_WORKFLOW.value
TOOL_TYPE = "function"
"""``gen_ai.tool.type`` of every tool the executor offers: a function the application runs itself."""
ERROR_TYPE = error_attributes.ERROR_TYPE
FALLBACK_EVENT = "llm_ledger.fallback"

_METRIC_KEYS = (
    gen_ai.GEN_AI_OPERATION_NAME,
    gen_ai.GEN_AI_PROVIDER_NAME,
    gen_ai.GEN_AI_REQUEST_MODEL,
    server_attributes.SERVER_ADDRESS,
    server_attributes.SERVER_PORT,
)


def ledger_attributes(execution_id: UUID, context: ExecutionContext) -> dict[str, Any]:
    """``llm_ledger.*`` attributes shared by an execution's spans (empty context fields left out)."""
    return {"llm_ledger.execution_id": str(execution_id), **context_attributes(context)}


def context_attributes(context: ExecutionContext) -> dict[str, Any]:
    """``llm_ledger.*`` attributes of who the work is for, on every span (empty context fields left out),
    and the session as ``gen_ai.conversation.id``."""
    attributes: dict[str, Any] = {"llm_ledger.tenant_id": context.tenant_id}
    for name, value in (("agent_id", context.agent_id), ("session_id", context.session_id),
                        ("turn_id", context.turn_id), ("step", context.step)):  # fmt: skip
        if value:
            attributes[f"llm_ledger.{name}"] = value
    if context.session_id:
        attributes[gen_ai.GEN_AI_CONVERSATION_ID] = context.session_id
    return attributes


def tool_span_name(tool_name: str) -> str:
    return f"{EXECUTE_TOOL} {tool_name}"


def tool_attributes(tool_name: str, tool_call_id: str | None, context: ExecutionContext) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        **context_attributes(context),
        gen_ai.GEN_AI_OPERATION_NAME: EXECUTE_TOOL,
        gen_ai.GEN_AI_TOOL_NAME: tool_name,
        gen_ai.GEN_AI_TOOL_TYPE: TOOL_TYPE,
    }
    if tool_call_id:
        attributes[gen_ai.GEN_AI_TOOL_CALL_ID] = tool_call_id
    return attributes


def run_span_name(agent_name: str | None) -> str:
    return f"{INVOKE_AGENT} {agent_name}" if agent_name else INVOKE_AGENT


def run_attributes(agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> dict[str, Any]:
    attributes: dict[str, Any] = {**context_attributes(context), gen_ai.GEN_AI_OPERATION_NAME: INVOKE_AGENT}
    if agent_name:
        attributes[gen_ai.GEN_AI_AGENT_NAME] = agent_name
    if agent_id:
        attributes[gen_ai.GEN_AI_AGENT_ID] = agent_id
    return attributes


def turn_span_name(name: str) -> str:
    return f"{INVOKE_WORKFLOW} {name}"


def turn_attributes(name: str, context: ExecutionContext) -> dict[str, Any]:
    return {
        **context_attributes(context),
        gen_ai.GEN_AI_OPERATION_NAME: INVOKE_WORKFLOW,
        gen_ai.GEN_AI_WORKFLOW_NAME: name,
    }


def tool_definitions(tools: Sequence[ToolSpec]) -> str:
    """``gen_ai.tool.definitions`` with the offered tools' names only.

    The attribute is opt-in because a definition in full (description, JSON schema) can be large and say
    more than an operator should see; the conventions' schema of it requires only ``type`` and ``name``
    and recommends leaving the rest out by default. Names alone are small and carry no content, and they
    are what a trace needs to show which tools the model could call (the ledger keeps each schema's
    digest). A JSON string, as the conventions allow where an attribute cannot hold structures."""
    return orjson.dumps([{"type": TOOL_TYPE, "name": tool.name} for tool in tools]).decode()


def execution_name(operation: str, context: ExecutionContext) -> str:
    return f"{operation} {context.step or 'llm'}"


def execution_attributes(ledger: dict[str, Any], chain: tuple[str, ...]) -> dict[str, Any]:
    return {**ledger, "llm_ledger.chain": list(chain), gen_ai.GEN_AI_OPERATION_NAME: OPERATION}


def answer_attributes(client: ModelClient, completion: Completion | None) -> dict[str, Any]:
    """What an execution's span says of the attempt that answered it (or, when none did, of its last): the
    provider and model asked, and the model that answered as the provider reported it, so that a search
    by model or provider finds executions as well as attempts."""
    attributes: dict[str, Any] = {
        gen_ai.GEN_AI_PROVIDER_NAME: client.route.provider.otel_name,
        gen_ai.GEN_AI_REQUEST_MODEL: _model_id(client),
    }
    if completion is not None and completion.response_model:
        attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = completion.response_model
    return attributes


def _model_id(client: ModelClient) -> str:
    return client.route.model_id.partition("?")[0]  # a mock model's behaviour options are not its name


def attempt_name(client: ModelClient) -> str:
    return f"{OPERATION} {_model_id(client)}"


def attempt_attributes(
    ledger: dict[str, Any],
    number: int,
    client: ModelClient,
    fallback_index: int,
    retry: int,
    params: CallParams,
    stream: bool,
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        **ledger,
        gen_ai.GEN_AI_OPERATION_NAME: OPERATION,
        gen_ai.GEN_AI_PROVIDER_NAME: client.route.provider.otel_name,
        gen_ai.GEN_AI_REQUEST_MODEL: _model_id(client),
        gen_ai.GEN_AI_REQUEST_STREAM: stream,
        "llm_ledger.attempt": number,
        "llm_ledger.retry": retry,
        "llm_ledger.fallback_index": fallback_index,
    }
    if params.temperature is not None:
        attributes[gen_ai.GEN_AI_REQUEST_TEMPERATURE] = params.temperature
    if params.max_tokens is not None:
        attributes[gen_ai.GEN_AI_REQUEST_MAX_TOKENS] = params.max_tokens
    if client.server_address:
        attributes[server_attributes.SERVER_ADDRESS] = client.server_address
    if client.server_port:
        attributes[server_attributes.SERVER_PORT] = client.server_port
    if params.tools:
        attributes[gen_ai.GEN_AI_TOOL_DEFINITIONS] = tool_definitions(params.tools)
    return attributes


def response_attributes(completion: Completion, ttfc_ms: float | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if completion.response_model:
        attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = completion.response_model
    if completion.response_id:
        attributes[gen_ai.GEN_AI_RESPONSE_ID] = completion.response_id
    if completion.finish_reason:  # the provider's own word ("tool_calls", "tool_use", ...), as it said it
        attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = [completion.finish_reason]
    if completion.usage is not None:
        attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] = completion.usage.prompt_tokens
        attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] = completion.usage.completion_tokens
    if ttfc_ms is not None:
        attributes[gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc_ms / 1000
    return attributes


def fallback_attributes(from_model: str, to_model: str, reason: str) -> dict[str, Any]:
    return {"llm_ledger.from_model": from_model, "llm_ledger.to_model": to_model, "llm_ledger.reason": reason}


def metric_attributes(client: ModelClient) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        gen_ai.GEN_AI_OPERATION_NAME: OPERATION,
        gen_ai.GEN_AI_PROVIDER_NAME: client.route.provider.otel_name,
        gen_ai.GEN_AI_REQUEST_MODEL: _model_id(client),
    }
    if client.server_address:
        attributes[server_attributes.SERVER_ADDRESS] = client.server_address
    if client.server_port:
        attributes[server_attributes.SERVER_PORT] = client.server_port
    return attributes


class Instruments:
    """The GenAI client histograms."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = gen_ai_metrics.create_gen_ai_client_operation_duration(meter)
        self.tokens = gen_ai_metrics.create_gen_ai_client_token_usage(meter)


def record_success(instruments: Instruments, base: dict[str, Any], seconds: float, completion: Completion) -> None:
    attributes = (
        {**base, gen_ai.GEN_AI_RESPONSE_MODEL: completion.response_model} if completion.response_model else base
    )
    instruments.duration.record(seconds, attributes)
    if completion.usage is not None:
        token_type = gen_ai.GEN_AI_TOKEN_TYPE
        instruments.tokens.record(completion.usage.prompt_tokens, {**attributes, token_type: "input"})
        instruments.tokens.record(completion.usage.completion_tokens, {**attributes, token_type: "output"})


def _ids(span: Span) -> tuple[str | None, str | None]:
    """The span's ids for the events, when the span will be exported (recording and sampled)."""
    context = span.get_span_context()
    if not span.is_recording() or not context.trace_flags.sampled:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class OtelExecutionTracer:
    """The executor's tracer on the OpenTelemetry API: spans made as the call goes, on the application's
    tracer and meter providers (used when the application installed its own)."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("llm_ledger", __version__, tracer_provider)
        self.instruments = Instruments(metrics.get_meter("llm_ledger", __version__, meter_provider))
        self.sampled_out = SampledOutRuns()

    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> _ExecutionTrace:
        ledger = ledger_attributes(execution_id, context)
        run = current_run.get()
        parent = self._under(run) if run is not None else self._under_current()
        if isinstance(parent, Span):
            return _ExecutionTrace(self, parent, ledger)
        span = self.tracer.start_span(
            execution_name(operation, context),
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=execution_attributes(ledger, chain),
        )
        return _ExecutionTrace(self, span, ledger)

    def tool(
        self, tool_name: str, tool_call_id: str | None, context: ExecutionContext, parent: SpanRef | None
    ) -> _SpanTrace:
        ref = current_run.get() or parent
        under = self._under(ref) if ref is not None else self._under_current()
        if isinstance(under, Span):
            return _SpanTrace(under, self.sampled_out, expose_ids=False)
        span = self.tracer.start_span(
            tool_span_name(tool_name),
            context=under,
            kind=SpanKind.INTERNAL,
            attributes=tool_attributes(tool_name, tool_call_id, context),
        )
        return _SpanTrace(span, self.sampled_out, expose_ids=False)

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> _SpanTrace:
        run = current_run.get()
        under = self._under(run) if run is not None else self._under_current()
        if isinstance(under, Span):
            return _SpanTrace(under, self.sampled_out, expose_ids=True)
        span = self.tracer.start_span(
            run_span_name(agent_name),
            context=under,
            kind=SpanKind.INTERNAL,
            attributes=run_attributes(agent_name, agent_id, context),
        )
        return _SpanTrace(span, self.sampled_out, expose_ids=True)

    def turn(self, name: str, context: ExecutionContext) -> CurrentTurn:
        run = current_run.get()
        under = self._under(run) if run is not None else self._under_current()
        if isinstance(under, Span):
            return CurrentTurn(_SpanTrace(under, self.sampled_out, expose_ids=False), under)
        span = self.tracer.start_span(
            turn_span_name(name), context=under, kind=SpanKind.INTERNAL, attributes=turn_attributes(name, context)
        )
        return CurrentTurn(_SpanTrace(span, self.sampled_out, expose_ids=False), span)

    def _under_current(self) -> Span | None:
        """None, to start a span under the caller's current span (the API's default), unless that one is sampled
        out (a turn's, say): then the child itself, a non-recording span in its trace, as the deferred tracer
        makes it (a trace is kept or dropped whole)."""
        current = trace.get_current_span().get_span_context()
        if current.is_valid and not current.trace_flags.sampled:
            return NonRecordingSpan(SpanContext(current.trace_id, new_span_id(), False, NOT_SAMPLED))
        return None

    def _under(self, ref: SpanRef) -> Context | Span:
        """The context to start a child of ``ref`` in; or, when ``ref`` is sampled out, the child itself:
        a non-recording span in the same trace, whatever the application's sampler would say of a child
        (a trace is kept or dropped whole)."""
        parent = parent_context(ref, self.sampled_out)
        if not parent.trace_flags.sampled:
            return NonRecordingSpan(SpanContext(parent.trace_id, new_span_id(), False, NOT_SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(parent))


def _ref(span: Span) -> SpanRef | None:
    """The span as a parent of others (``tracing.span_ref``), sampled or not; None for an invalid span
    (OpenTelemetry's no-op tracer)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    # The flag, not is_recording(): an ended span records no more, and is still the parent it was.
    return SpanRef(format(context.trace_id, "032x"), format(context.span_id, "016x"), context.trace_flags.sampled)


class _ExecutionTrace:
    __slots__ = ("_ledger", "_owner", "last_attempt", "span", "span_id", "trace_id")

    def __init__(self, owner: OtelExecutionTracer, span: Span, ledger: dict[str, Any]) -> None:
        self._owner = owner
        self._ledger = ledger
        self.span = span
        self.trace_id, self.span_id = _ids(span)
        self.last_attempt: _AttemptTrace | None = None

    @property
    def ref(self) -> SpanRef | None:
        return _ref(self.span)

    def attempt(
        self, number: int, client: ModelClient, fallback_index: int, retry: int, params: CallParams, stream: bool
    ) -> _AttemptTrace:
        if not self.span.is_recording():  # sampled out: so are its attempts, whatever the sampler says
            context = self.span.get_span_context()
            quiet = NonRecordingSpan(SpanContext(context.trace_id, new_span_id(), False, NOT_SAMPLED))
            return _AttemptTrace(self._owner, quiet, client)
        span = self._owner.tracer.start_span(
            attempt_name(client),
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attempt_attributes(self._ledger, number, client, fallback_index, retry, params, stream),
        )
        self.last_attempt = _AttemptTrace(self._owner, span, client)
        return self.last_attempt

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self.span.add_event(FALLBACK_EVENT, fallback_attributes(from_model, to_model, reason))

    def succeeded(self) -> None:
        self._describe_answer()
        self.span.end()

    def failed(self, error_type: str, message: str) -> None:
        self._describe_answer()
        self.span.set_attribute(ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.end()

    def _describe_answer(self) -> None:
        last = self.last_attempt
        if last is not None and self.span.is_recording():
            self.span.set_attributes(answer_attributes(last.client, last.completion))


class _AttemptTrace:
    __slots__ = ("_owner", "client", "completion", "span", "span_id", "started_ns", "trace_id")

    def __init__(self, owner: OtelExecutionTracer, span: Span, client: ModelClient) -> None:
        self._owner = owner
        self.client = client
        self.completion: Completion | None = None
        self.span = span
        self.trace_id, self.span_id = _ids(span)
        self.started_ns = time.perf_counter_ns()

    def succeeded(self, completion: Completion, ttfc_ms: float | None) -> None:
        self.completion = completion
        if self.span.is_recording():
            self.span.set_attributes(response_attributes(completion, ttfc_ms))
        self.span.end()
        seconds = (time.perf_counter_ns() - self.started_ns) / 1e9
        record_success(self._owner.instruments, metric_attributes(self.client), seconds, completion)

    def failed(self, error: ProviderError, error_type: str) -> None:
        self.span.set_attribute(ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, error.message))
        self.span.record_exception(error)
        self.span.end()
        seconds = (time.perf_counter_ns() - self.started_ns) / 1e9
        self._owner.instruments.duration.record(seconds, {**metric_attributes(self.client), ERROR_TYPE: error_type})


class _SpanTrace:
    """A tool execution's or an agent run's span. A tool's ids go into its events, so they are there only
    when the span is exported; a run's (``expose_ids``) parent its children and go into no event, so they
    are there whenever the span is valid, and a sampled-out run is remembered until it ends."""

    __slots__ = ("_sampled_out", "ended", "span", "span_id", "trace_id")

    def __init__(self, span: Span, sampled_out: SampledOutRuns, *, expose_ids: bool) -> None:
        self.span = span
        self.ended = False
        self._sampled_out = sampled_out
        self.trace_id, self.span_id = _ids(span)
        if expose_ids and self.span_id is None:
            ref = _ref(span)
            if ref is not None:
                self.trace_id, self.span_id = ref.trace_id, ref.span_id
                sampled_out.add(ref.span_id)

    @property
    def ref(self) -> SpanRef | None:
        return _ref(self.span)

    def succeeded(self) -> None:
        if self._end():
            self.span.end()

    def failed(self, error_type: str, message: str) -> None:
        if self._end():
            self.span.set_attribute(ERROR_TYPE, error_type)
            self.span.set_status(Status(StatusCode.ERROR, message))
            self.span.end()

    def _end(self) -> bool:
        """Whether this is the first end (a second is ignored, as the SDK would warn of it)."""
        if self.ended:
            return False
        self.ended = True
        if self.span_id is not None and self.span_id in self._sampled_out:
            self._sampled_out.discard(self.span_id)
        return True
