"""What one execution writes down: its events (through its stream's recorder), its spans (the tracer
seam) and the attempt summaries its response carries. The attempt loop (``execution.py``) says what
happened; this says it in events, with payloads built later, when each event is sealed."""

from __future__ import annotations

import time
from typing import Literal
from uuid import UUID

from llm_ledger.events import CapturePolicy, DigestKey, EventDraft, Scrubber, StreamHeader, TokenUsage
from llm_ledger.events import values as payloads
from llm_ledger.events.values import JsonDict, JsonPayload
from llm_ledger.executor.attempts import Attempt
from llm_ledger.executor.client import CallParams, Completion
from llm_ledger.executor.content import content_subject
from llm_ledger.executor.errors import CANCELLED, ProviderError
from llm_ledger.executor.plan import ExecutionPlan
from llm_ledger.executor.policy import Decision
from llm_ledger.executor.recorder import StreamRecorder
from llm_ledger.executor.routing import ModelRoute
from llm_ledger.executor.sink import until_durable
from llm_ledger.executor.tool_executions import asking_executions
from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.tracing import span_ref
from llm_ledger.executor.types import AttemptSummary, LLMResponse, input_entries

TOOL_CALLS_FINISH = "tool_calls"
"""``LLMResponse.finish_reason`` of an answer that asks for tool calls, whatever the provider's word."""


def _started_payload(plan: ExecutionPlan) -> JsonDict:
    record = plan.input_record
    if record is None:
        record = payloads.input_values(input_entries(plan.messages), plan.capture, plan.scrubber, plan.digest_key)
    return payloads.execution_started(
        operation=plan.operation,
        chain=plan.chain,
        max_retries=plan.max_retries,
        timeout_seconds=plan.timeout_seconds,
        attempt_timeout_seconds=plan.attempt_timeout_seconds,
        parameters=plan.params,
        input=record,
        output_schema=plan.schema_name,
        capture=plan.capture,
        tools=payloads.offered_tool_values(plan.offered_tools),
        tool_choice=plan.tool_choice,
    )


def _attempt_succeeded_payload(
    attempt: int,
    route: ModelRoute,
    latency: float,
    completion: Completion,
    ttfc_ms: float | None,
    output: DeferredOutput,
    tool_calls: tuple[ToolCall, ...],
    capture: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None,
) -> JsonDict:
    # Under the capture policy, scrubbed, like the answer; none for a text answer, whose payload is then
    # exactly what it was before tools (``tool_calls`` is left out while empty).
    calls = [
        payloads.tool_call_values(c.id, c.name, c.arguments_json, capture, scrubber, digest_key) for c in tool_calls
    ]
    return payloads.attempt_succeeded(
        attempt=attempt,
        model=route.model,
        provider=route.provider.name,
        latency_ms=latency,
        usage=completion.usage,
        finish_reason=completion.finish_reason,
        request_id=completion.request_id,
        response_id=completion.response_id,
        response_model=completion.response_model,
        time_to_first_chunk_ms=ttfc_ms,
        output=output(),
        tool_calls=calls,
    )


def _succeeded_payload(
    *,
    route: ModelRoute,
    attempts: int,
    fallback_used: bool,
    latency_ms: float,
    usage: TokenUsage | None,
    finish_reason: str | None,
    output: DeferredOutput,
) -> JsonDict:
    return payloads.execution_succeeded(
        model=route.model,
        provider=route.provider.name,
        attempts=attempts,
        fallback_used=fallback_used,
        latency_ms=latency_ms,
        usage=usage,
        finish_reason=finish_reason,
        output=output(),
    )


class DeferredOutput:
    """The output record of an answer (``events.values.output_values`` of its text, under the plan's
    capture policy, scrubber and digest key), built at most once, when the first event that holds it is
    sealed.

    The ``AttemptSucceeded`` and ``ExecutionSucceeded`` payload builders both call it; sealing happens
    off the call path (the sink's consumer), so the output is digested and scrubbed there, once
    (``functools.cache`` measured 10x costlier to set up, per call).
    """

    __slots__ = ("_capture", "_digest_key", "_scrubber", "_text", "_value")

    def __init__(self, text: str, capture: CapturePolicy, scrubber: Scrubber, digest_key: DigestKey | None) -> None:
        self._text = text
        self._capture = capture
        self._scrubber = scrubber
        self._digest_key = digest_key
        self._value: JsonDict | None = None

    @property
    def text(self) -> str:
        return self._text

    def __call__(self) -> JsonDict:
        if self._value is None:
            self._value = payloads.output_values(self._text, self._capture, self._scrubber, self._digest_key)
        return self._value


def _summary(
    attempt: Attempt,
    outcome: Literal["succeeded", "failed"],
    latency_ms: float,
    *,
    error_type: str | None = None,
    error_message: str | None = None,
    status_code: int | None = None,
) -> AttemptSummary:
    """What the response tells the caller of one attempt."""
    route = attempt.client.route
    return AttemptSummary(
        attempt=attempt.number,
        model=route.model,
        provider=route.provider.name,
        fallback_index=attempt.index,
        retry=attempt.retry,
        outcome=outcome,
        latency_ms=latency_ms,
        error_type=error_type,
        error_message=error_message,
        status_code=status_code,
    )


class ExecutionHistory:
    """The events and spans of one execution, in the order the attempt loop reports what happened."""

    def __init__(self, plan: ExecutionPlan, execution_id: UUID) -> None:
        self.plan = plan
        self.execution_id = execution_id
        ctx = plan.context
        self.recorder = StreamRecorder(
            StreamHeader(
                stream_id=execution_id,
                tenant_id=ctx.tenant_id,
                agent_id=ctx.agent_id,
                session_id=ctx.session_id,
                turn_id=ctx.turn_id,
                step=ctx.step,
                content=content_subject(plan.sink, ctx, plan.capture),
            ),
            plan.sink,
            plan.clock,
        )
        self.summaries: list[AttemptSummary] = []
        self.usage: TokenUsage | None = None
        self._started = time.perf_counter()
        self.attempts = 0
        """The number of attempts begun so far (the next one's number is one more)."""
        self.finished = False
        """Whether the execution's end is recorded (then a later cancel or internal error adds nothing)."""
        self.terminal: EventDraft | None = None
        """The last event (ExecutionSucceeded or ExecutionFailed), awaited until durable before returning."""
        self._output: DeferredOutput | None = None
        self.trace = plan.tracer.start(execution_id, plan.operation, ctx, plan.chain)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 3)

    def started(self) -> None:
        self.recorder.record(
            "ExecutionStarted",
            JsonPayload(_started_payload, self.plan),
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
        )
        if self.plan.tools:
            # What a tool execution this one asks for inherits (tool_executions.record_tool_call); the span
            # by its ref, which a sampled-out span has too, so that its tools are sampled out with it.
            plan = self.plan
            asking_executions.add(
                self.execution_id,
                plan.context,
                plan.capture,
                plan.scrubber,
                span_ref(self.trace),
                plan.sink,
                plan.tracer,
                plan.clock,
                plan.digest_secret,
            )

    def attempt_started(self, index: int, retry: int, params: CallParams, timeout: float, by_deadline: bool) -> Attempt:
        self.attempts += 1
        client = self.plan.clients[index]
        trace = self.trace.attempt(
            self.attempts, client, index, retry, params, self.plan.operation == "generate_stream"
        )
        attempt = Attempt(self.attempts, index, retry, client, params, trace, timeout, by_deadline)
        self.recorder.record(
            "AttemptStarted",
            JsonPayload(
                payloads.attempt_started,
                attempt=attempt.number,
                model=client.route.model,
                provider=client.route.provider.name,
                fallback_index=index,
                retry=retry,
                timeout_seconds=round(timeout, 6),
            ),
            trace_id=trace.trace_id,
            span_id=trace.span_id,
        )
        return attempt

    def attempt_succeeded(self, attempt: Attempt, completion: Completion, ttfc_ms: float | None) -> float:
        latency = attempt.elapsed_ms()
        route = attempt.client.route
        output = self._output_record(completion.text)
        payload = JsonPayload(
            _attempt_succeeded_payload,
            attempt.number,
            route,
            latency,
            completion,
            ttfc_ms,
            output,
            attempt.tool_calls,
            self.plan.capture,
            self.plan.scrubber,
            self.plan.digest_key,
        )
        self.recorder.record(
            "AttemptSucceeded",
            payload,
            trace_id=attempt.trace.trace_id,
            span_id=attempt.trace.span_id,
        )
        attempt.trace.succeeded(completion, ttfc_ms)
        self.summaries.append(_summary(attempt, "succeeded", latency))
        if completion.usage is not None:
            self.usage = completion.usage if self.usage is None else self.usage + completion.usage
        return latency

    def attempt_failed(
        self,
        attempt: Attempt,
        error: ProviderError,
        error_type: str,
        decision: Decision,
        *,
        chunks_delivered: int = 0,
    ) -> None:
        latency = attempt.elapsed_ms()
        route = attempt.client.route
        message = self.plan.scrubber.scrub(error.message)
        self.recorder.record(
            "AttemptFailed",
            JsonPayload(
                payloads.attempt_failed,
                attempt=attempt.number,
                model=route.model,
                provider=route.provider.name,
                latency_ms=latency,
                error_type=error_type,
                error_class=type(error).__name__,
                message=message,
                status_code=error.status_code,
                request_id=error.request_id,
                retry_after_seconds=error.retry_after,
                next_action=decision.action,
                backoff_seconds=round(decision.delay, 6) if decision.action == "retry" else None,
                chunks_delivered=chunks_delivered,
            ),
            trace_id=attempt.trace.trace_id,
            span_id=attempt.trace.span_id,
        )
        attempt.trace.failed(error, error_type)
        self.summaries.append(
            _summary(
                attempt, "failed", latency, error_type=error_type, error_message=message, status_code=error.status_code
            )
        )

    def fallback(self, index: int, reason: str) -> None:
        chain = self.plan.chain
        self.recorder.record(
            "FallbackTriggered",
            JsonPayload(
                payloads.fallback_triggered,
                from_model=chain[index],
                to_model=chain[index + 1],
                from_index=index,
                to_index=index + 1,
                reason=reason,
            ),
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
        )
        self.trace.fallback(chain[index], chain[index + 1], reason)

    def succeeded(self, attempt: Attempt, completion: Completion) -> LLMResponse:
        latency = self.elapsed_ms()
        route = attempt.client.route
        self.finished = True
        self.terminal = self.recorder.record(
            "ExecutionSucceeded",
            JsonPayload(
                _succeeded_payload,
                route=route,
                attempts=self.attempts,
                fallback_used=attempt.index > 0,
                latency_ms=latency,
                usage=self.usage,
                finish_reason=completion.finish_reason,
                output=self._output_record(completion.text),
            ),
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
        )
        self.trace.succeeded()
        return LLMResponse(
            content=completion.text,
            model=route.model,
            finish_reason=TOOL_CALLS_FINISH if attempt.tool_calls else completion.finish_reason,
            usage=completion.usage,
            latency_ms=latency,
            request_id=completion.request_id,
            metadata=self.plan.context.as_metadata(),
            execution_id=self.execution_id,
            attempts=tuple(self.summaries),
            fallback_used=attempt.index > 0,
            tool_calls=attempt.tool_calls,
        )

    def _output_record(self, text: str) -> DeferredOutput:
        """The output record of the answer, shared by the events that hold it."""
        if self._output is None or self._output.text is not text:
            self._output = DeferredOutput(text, self.plan.capture, self.plan.scrubber, self.plan.digest_key)
        return self._output

    def failed(self, error_type: str, message: str, *, chunks_delivered: int = 0) -> None:
        self.finished = True
        last = self.summaries[-1].model if self.summaries else None
        message = self.plan.scrubber.scrub(message)
        self.terminal = self.recorder.record(
            "ExecutionFailed",
            JsonPayload(
                payloads.execution_failed,
                error_type=error_type,
                message=message,
                attempts=self.attempts,
                latency_ms=self.elapsed_ms(),
                last_model=last,
                chunks_delivered=chunks_delivered,
            ),
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
        )
        self.trace.failed(error_type, message)

    def cancelled(self, attempt: Attempt | None, *, chunks_delivered: int = 0) -> None:
        """The execution cancelled by its caller, and ``attempt`` with it unless its outcome is recorded
        already (cancelled during the backoff after it). Nothing once the execution's end is recorded."""
        if self.finished:
            return
        if attempt is not None and len(self.summaries) < attempt.number:
            error = ProviderError("cancelled by the caller", model=attempt.client.route.model)
            self.attempt_failed(attempt, error, CANCELLED, Decision("fail"), chunks_delivered=chunks_delivered)
        self.failed(CANCELLED, "cancelled by the caller", chunks_delivered=chunks_delivered)

    async def until_durable(self) -> None:
        """Wait until the execution's last event is durable in the sink, if the sink can say so."""
        await until_durable(self.plan.sink, self.terminal)
