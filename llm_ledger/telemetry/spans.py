"""GenAI spans for executions and attempts (OpenTelemetry semantic conventions for generative AI).

One INTERNAL span per execution, child of the caller's current span, and one CLIENT span per attempt
named ``{gen_ai.operation.name} {gen_ai.request.model}``. Attribute names come from the
``opentelemetry-semantic-conventions`` package. Prompt and answer content is never put on spans.
The functions here say what the spans hold; ``OtelExecutionTracer`` makes them through the
OpenTelemetry API as a call goes, ``deferred`` builds the same after the call.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from opentelemetry import metrics, trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llm_ledger._metadata import __version__
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ProviderError
from llm_ledger.executor.tracing import NoTracer, RunTrace, SpanRef, ToolTrace

OPERATION = gen_ai.GenAiOperationNameValues.CHAT.value
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
    attributes: dict[str, Any] = {
        "llm_ledger.execution_id": str(execution_id),
        "llm_ledger.tenant_id": context.tenant_id,
    }
    for name, value in (("agent_id", context.agent_id), ("session_id", context.session_id),
                        ("turn_id", context.turn_id), ("step", context.step)):  # fmt: skip
        if value:
            attributes[f"llm_ledger.{name}"] = value
    return attributes


def execution_name(operation: str, context: ExecutionContext) -> str:
    return f"{operation} {context.step or 'llm'}"


def execution_attributes(ledger: dict[str, Any], chain: tuple[str, ...]) -> dict[str, Any]:
    return {**ledger, "llm_ledger.chain": list(chain), gen_ai.GEN_AI_OPERATION_NAME: OPERATION}


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
    return attributes


def response_attributes(completion: Completion, ttfc_ms: float | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if completion.response_model:
        attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = completion.response_model
    if completion.response_id:
        attributes[gen_ai.GEN_AI_RESPONSE_ID] = completion.response_id
    if completion.finish_reason:
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

    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...]
    ) -> _ExecutionTrace:
        ledger = ledger_attributes(execution_id, context)
        span = self.tracer.start_span(
            execution_name(operation, context), kind=SpanKind.INTERNAL, attributes=execution_attributes(ledger, chain)
        )
        return _ExecutionTrace(self, span, ledger)

    def tool(
        self, tool_name: str, tool_call_id: str | None, context: ExecutionContext, parent: SpanRef | None
    ) -> ToolTrace:
        return NoTracer().tool()  # scaffolding: the telemetry helper builds execute_tool spans

    def agent_run(self, agent_name: str | None, agent_id: str | None, context: ExecutionContext) -> RunTrace:
        return NoTracer().agent_run()  # scaffolding: the telemetry helper builds invoke_agent spans


class _ExecutionTrace:
    __slots__ = ("_ledger", "_owner", "span", "span_id", "trace_id")

    def __init__(self, owner: OtelExecutionTracer, span: Span, ledger: dict[str, Any]) -> None:
        self._owner = owner
        self._ledger = ledger
        self.span = span
        self.trace_id, self.span_id = _ids(span)

    def attempt(
        self, number: int, client: ModelClient, fallback_index: int, retry: int, params: CallParams, stream: bool
    ) -> _AttemptTrace:
        span = self._owner.tracer.start_span(
            attempt_name(client),
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attempt_attributes(self._ledger, number, client, fallback_index, retry, params, stream),
        )
        return _AttemptTrace(self._owner, span, client)

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self.span.add_event(FALLBACK_EVENT, fallback_attributes(from_model, to_model, reason))

    def succeeded(self) -> None:
        self.span.end()

    def failed(self, error_type: str, message: str) -> None:
        self.span.set_attribute(ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.end()


class _AttemptTrace:
    __slots__ = ("_client", "_owner", "span", "span_id", "started_ns", "trace_id")

    def __init__(self, owner: OtelExecutionTracer, span: Span, client: ModelClient) -> None:
        self._owner = owner
        self._client = client
        self.span = span
        self.trace_id, self.span_id = _ids(span)
        self.started_ns = time.perf_counter_ns()

    def succeeded(self, completion: Completion, ttfc_ms: float | None) -> None:
        if self.span.is_recording():
            self.span.set_attributes(response_attributes(completion, ttfc_ms))
        self.span.end()
        seconds = (time.perf_counter_ns() - self.started_ns) / 1e9
        record_success(self._owner.instruments, metric_attributes(self._client), seconds, completion)

    def failed(self, error: ProviderError, error_type: str) -> None:
        self.span.set_attribute(ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, error.message))
        self.span.record_exception(error)
        self.span.end()
        seconds = (time.perf_counter_ns() - self.started_ns) / 1e9
        self._owner.instruments.duration.record(seconds, {**metric_attributes(self._client), ERROR_TYPE: error_type})
