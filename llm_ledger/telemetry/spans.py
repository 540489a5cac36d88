"""GenAI spans for executions and attempts (OpenTelemetry semantic conventions for generative AI).

One INTERNAL span per execution, child of the caller's current span, and one CLIENT span per attempt
named ``{gen_ai.operation.name} {gen_ai.request.model}``. Attribute names come from the
``opentelemetry-semantic-conventions`` package. Prompt and answer content is never put on spans.
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

from llm_ledger import __version__
from llm_ledger.events import TokenUsage
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ProviderError

OPERATION = gen_ai.GenAiOperationNameValues.CHAT.value

# The ledger's own attributes, on execution and attempt spans alike.
EXECUTION_ID = "llm_ledger.execution_id"
TENANT_ID = "llm_ledger.tenant_id"
AGENT_ID = "llm_ledger.agent_id"
SESSION_ID = "llm_ledger.session_id"
TURN_ID = "llm_ledger.turn_id"
STEP = "llm_ledger.step"
ATTEMPT = "llm_ledger.attempt"
RETRY = "llm_ledger.retry"
FALLBACK_INDEX = "llm_ledger.fallback_index"
CHAIN = "llm_ledger.chain"
FALLBACK_EVENT = "llm_ledger.fallback"


def _ids(span: Span) -> tuple[str | None, str | None]:
    """The span's ids for the events, when the span will be exported (recording and sampled)."""
    context = span.get_span_context()
    if not span.is_recording() or not context.trace_flags.sampled:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = gen_ai_metrics.create_gen_ai_client_operation_duration(meter)
        self.tokens = gen_ai_metrics.create_gen_ai_client_token_usage(meter)


class OtelExecutionTracer:
    """The executor's tracer on OpenTelemetry's API: the application's tracer and meter providers if it
    installed some (``configure_tracing`` installs them from the OTEL_* variables), else no-ops."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("llm_ledger", __version__, tracer_provider)
        self.instruments = _Instruments(metrics.get_meter("llm_ledger", __version__, meter_provider))

    def start(
        self, execution_id: UUID, operation: str, context: ExecutionContext, chain: tuple[str, ...], capture: str
    ) -> _ExecutionTrace:
        ledger = {
            EXECUTION_ID: str(execution_id),
            TENANT_ID: context.tenant_id,
            AGENT_ID: context.agent_id or "",
            SESSION_ID: context.session_id or "",
            TURN_ID: context.turn_id or "",
            STEP: context.step or "",
        }
        span = self.tracer.start_span(
            f"{operation} {context.step or 'llm'}",
            kind=SpanKind.INTERNAL,
            attributes={**ledger, CHAIN: list(chain), gen_ai.GEN_AI_OPERATION_NAME: OPERATION},
        )
        return _ExecutionTrace(self, span, ledger)


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
        route = client.route
        model_id = route.model_id.partition("?")[0]  # a mock model's behaviour options are not its name
        attributes: dict[str, Any] = {
            **self._ledger,
            gen_ai.GEN_AI_OPERATION_NAME: OPERATION,
            gen_ai.GEN_AI_PROVIDER_NAME: route.provider.otel_name,
            gen_ai.GEN_AI_REQUEST_MODEL: model_id,
            gen_ai.GEN_AI_REQUEST_STREAM: stream,
            ATTEMPT: number,
            RETRY: retry,
            FALLBACK_INDEX: fallback_index,
        }
        if params.temperature is not None:
            attributes[gen_ai.GEN_AI_REQUEST_TEMPERATURE] = params.temperature
        if params.max_tokens is not None:
            attributes[gen_ai.GEN_AI_REQUEST_MAX_TOKENS] = params.max_tokens
        if client.server_address:
            attributes[server_attributes.SERVER_ADDRESS] = client.server_address
        if client.server_port:
            attributes[server_attributes.SERVER_PORT] = client.server_port
        span = self._owner.tracer.start_span(
            f"{OPERATION} {model_id}",
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return _AttemptTrace(self._owner, span, attributes)

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self.span.add_event(
            FALLBACK_EVENT,
            {"llm_ledger.from_model": from_model, "llm_ledger.to_model": to_model, "llm_ledger.reason": reason},
        )

    def succeeded(self, model: str, usage: TokenUsage | None) -> None:
        self.span.set_attribute("llm_ledger.model", model)
        self.span.end()

    def failed(self, error_type: str, message: str) -> None:
        self.span.set_attribute(error_attributes.ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.end()


class _AttemptTrace:
    __slots__ = ("_attributes", "_owner", "span", "span_id", "started_ns", "trace_id")

    def __init__(self, owner: OtelExecutionTracer, span: Span, attributes: dict[str, Any]) -> None:
        self._owner = owner
        self._attributes = attributes
        self.span = span
        self.trace_id, self.span_id = _ids(span)
        self.started_ns = time.perf_counter_ns()

    def _metric_attributes(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        keys = (
            gen_ai.GEN_AI_OPERATION_NAME,
            gen_ai.GEN_AI_PROVIDER_NAME,
            gen_ai.GEN_AI_REQUEST_MODEL,
            server_attributes.SERVER_ADDRESS,
            server_attributes.SERVER_PORT,
        )
        attributes = {k: self._attributes[k] for k in keys if k in self._attributes}
        return {**attributes, **(extra or {})}

    def succeeded(self, completion: Completion, ttfc_ms: float | None) -> None:
        span = self.span
        if span.is_recording():
            if completion.response_model:
                span.set_attribute(gen_ai.GEN_AI_RESPONSE_MODEL, completion.response_model)
            if completion.response_id:
                span.set_attribute(gen_ai.GEN_AI_RESPONSE_ID, completion.response_id)
            if completion.finish_reason:
                span.set_attribute(gen_ai.GEN_AI_RESPONSE_FINISH_REASONS, [completion.finish_reason])
            if completion.usage is not None:
                span.set_attribute(gen_ai.GEN_AI_USAGE_INPUT_TOKENS, completion.usage.prompt_tokens)
                span.set_attribute(gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, completion.usage.completion_tokens)
            if ttfc_ms is not None:
                span.set_attribute(gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttfc_ms / 1000)
        span.end()
        instruments = self._owner.instruments
        attributes = self._metric_attributes(
            {gen_ai.GEN_AI_RESPONSE_MODEL: completion.response_model} if completion.response_model else None
        )
        instruments.duration.record((time.perf_counter_ns() - self.started_ns) / 1e9, attributes)
        if completion.usage is not None:
            token_type = gen_ai.GEN_AI_TOKEN_TYPE
            instruments.tokens.record(completion.usage.prompt_tokens, {**attributes, token_type: "input"})
            instruments.tokens.record(completion.usage.completion_tokens, {**attributes, token_type: "output"})

    def failed(self, error: ProviderError, error_type: str) -> None:
        span = self.span
        span.set_attribute(error_attributes.ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR, error.message))
        span.record_exception(error)
        span.end()
        self._owner.instruments.duration.record(
            (time.perf_counter_ns() - self.started_ns) / 1e9,
            self._metric_attributes({error_attributes.ERROR_TYPE: error_type}),
        )
