"""One execution: the attempt loop over the chain, with its events. The policy decides, this obeys."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from llm_ledger.events import (
    CapturePolicy,
    EventDraft,
    Operation,
    RequestParameters,
    Scrubber,
    StreamHeader,
    TokenUsage,
    uuid7,
)
from llm_ledger.events import values as payloads
from llm_ledger.events.values import JsonDict, JsonPayload
from llm_ledger.executor.attempts import Attempt, AttemptKind, CompletionAttempt, StreamAttempt
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import (
    CANCELLED,
    AllModelsFailedError,
    DeadlineExceededError,
    ProviderError,
    StreamInterruptedError,
    TimeoutError,
)
from llm_ledger.executor.policy import Decision, RetryPolicy
from llm_ledger.executor.recorder import StreamRecorder
from llm_ledger.executor.routing import ModelRoute
from llm_ledger.executor.sink import EventSink, until_durable
from llm_ledger.executor.tracing import ExecutionTracer
from llm_ledger.executor.types import AttemptSummary, LLMMessage, LLMResponse

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """Everything one execution needs, resolved from the executor, the configuration and the call."""

    operation: Operation
    context: ExecutionContext
    chain: tuple[str, ...]
    clients: tuple[ModelClient, ...]
    messages: tuple[LLMMessage, ...]
    params: RequestParameters
    json_schema: dict[str, Any] | None
    schema_name: str | None
    max_retries: int
    timeout_seconds: float
    attempt_timeout_seconds: float
    capture: CapturePolicy
    policy: RetryPolicy
    sink: EventSink
    scrubber: Scrubber
    tracer: ExecutionTracer
    input_record: JsonDict | None = None
    """The ``ExecutionStarted`` input record when the door already built it (capture ``full``, to measure it)."""


def _started_payload(plan: ExecutionPlan) -> JsonDict:
    record = plan.input_record
    if record is None:
        record = payloads.input_values([(m.role, m.content) for m in plan.messages], plan.capture, plan.scrubber)
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
    )


def _attempt_succeeded_payload(
    attempt: int,
    route: ModelRoute,
    latency: float,
    completion: Completion,
    ttfc_ms: float | None,
    output: DeferredOutput,
) -> JsonDict:
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
    capture policy and scrubber), built at most once, when the first event that holds it is sealed.

    The ``AttemptSucceeded`` and ``ExecutionSucceeded`` payload builders both call it; sealing happens
    off the call path (the sink's consumer), so the output is digested and scrubbed there, once
    (``functools.cache`` measured 10x costlier to set up, per call).
    """

    __slots__ = ("_capture", "_scrubber", "_text", "_value")

    def __init__(self, text: str, capture: CapturePolicy, scrubber: Scrubber) -> None:
        self._text = text
        self._capture = capture
        self._scrubber = scrubber
        self._value: JsonDict | None = None

    @property
    def text(self) -> str:
        return self._text

    def __call__(self) -> JsonDict:
        if self._value is None:
            self._value = payloads.output_values(self._text, self._capture, self._scrubber)
        return self._value


class Execution:
    """Runs one plan to its end and records it. ``parse`` turns a completion into the caller's value
    (structured output raises InvalidOutputError there, which counts as a failed attempt)."""

    def __init__(self, plan: ExecutionPlan) -> None:
        self.plan = plan
        self.execution_id: UUID = uuid7()
        ctx = plan.context
        self.recorder = StreamRecorder(
            StreamHeader(
                stream_id=self.execution_id,
                tenant_id=ctx.tenant_id,
                agent_id=ctx.agent_id,
                session_id=ctx.session_id,
                turn_id=ctx.turn_id,
                step=ctx.step,
            ),
            plan.sink,
        )
        self.summaries: list[AttemptSummary] = []
        self.errors: list[ProviderError] = []
        self.usage: TokenUsage | None = None
        self._started = time.perf_counter()
        self._deadline = time.monotonic() + plan.timeout_seconds
        self._attempts = 0
        self._finished = False
        self._terminal: EventDraft | None = None  # the last event, awaited until durable before returning
        self._output: DeferredOutput | None = None
        self._response: LLMResponse | None = None
        self.trace = plan.tracer.start(self.execution_id, plan.operation, ctx, plan.chain)

    # --- recording ----------------------------------------------------------------------------

    def _elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 3)

    def _start(self) -> None:
        self.recorder.record(
            "ExecutionStarted",
            JsonPayload(_started_payload, self.plan),
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
        )

    def _begin_attempt(self, index: int, retry: int, timeout: float, by_deadline: bool) -> Attempt:
        self._attempts += 1
        client = self.plan.clients[index]
        params = self._call_params(timeout)
        trace = self.trace.attempt(
            self._attempts, client, index, retry, params, self.plan.operation == "generate_stream"
        )
        attempt = Attempt(self._attempts, index, retry, client, params, trace, timeout, by_deadline)
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

    def _attempt_succeeded(self, attempt: Attempt, completion: Completion, ttfc_ms: float | None) -> float:
        latency = attempt.elapsed_ms()
        route = attempt.client.route
        output = self._output_record(completion.text)
        self.recorder.record(
            "AttemptSucceeded",
            JsonPayload(_attempt_succeeded_payload, attempt.number, route, latency, completion, ttfc_ms, output),
            trace_id=attempt.trace.trace_id,
            span_id=attempt.trace.span_id,
        )
        attempt.trace.succeeded(completion, ttfc_ms)
        self.summaries.append(
            AttemptSummary(
                attempt=attempt.number,
                model=route.model,
                provider=route.provider.name,
                fallback_index=attempt.index,
                retry=attempt.retry,
                outcome="succeeded",
                latency_ms=latency,
            )
        )
        if completion.usage is not None:
            self.usage = completion.usage if self.usage is None else self.usage + completion.usage
        return latency

    def _attempt_failed(
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
            AttemptSummary(
                attempt=attempt.number,
                model=route.model,
                provider=route.provider.name,
                fallback_index=attempt.index,
                retry=attempt.retry,
                outcome="failed",
                latency_ms=latency,
                error_type=error_type,
                error_message=message,
                status_code=error.status_code,
            )
        )

    def _fallback(self, index: int, reason: str) -> None:
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

    def _succeeded(self, attempt: Attempt, completion: Completion) -> LLMResponse:
        latency = self._elapsed_ms()
        route = attempt.client.route
        self._finished = True
        self._terminal = self.recorder.record(
            "ExecutionSucceeded",
            JsonPayload(
                _succeeded_payload,
                route=route,
                attempts=self._attempts,
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
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            latency_ms=latency,
            request_id=completion.request_id,
            metadata=self.plan.context.as_metadata(),
            execution_id=self.execution_id,
            attempts=tuple(self.summaries),
            fallback_used=attempt.index > 0,
        )

    def _output_record(self, text: str) -> DeferredOutput:
        """The output record of the answer, shared by the events that hold it."""
        if self._output is None or self._output.text is not text:
            self._output = DeferredOutput(text, self.plan.capture, self.plan.scrubber)
        return self._output

    def _failed(self, error_type: str, message: str, *, chunks_delivered: int = 0) -> None:
        self._finished = True
        last = self.summaries[-1].model if self.summaries else None
        message = self.plan.scrubber.scrub(message)
        self._terminal = self.recorder.record(
            "ExecutionFailed",
            JsonPayload(
                payloads.execution_failed,
                error_type=error_type,
                message=message,
                attempts=self._attempts,
                latency_ms=self._elapsed_ms(),
                last_model=last,
                chunks_delivered=chunks_delivered,
            ),
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
        )
        self.trace.failed(error_type, message)

    def _cancelled(self, attempt: Attempt | None, *, chunks_delivered: int = 0) -> None:
        if self._finished:
            return
        if attempt is not None:
            error = ProviderError("cancelled by the caller", model=attempt.client.route.model)
            self._attempt_failed(attempt, error, CANCELLED, Decision("fail"), chunks_delivered=chunks_delivered)
        self._failed(CANCELLED, "cancelled by the caller", chunks_delivered=chunks_delivered)

    # --- the loop -----------------------------------------------------------------------------

    def _time_left(self) -> float:
        return self._deadline - time.monotonic()

    def _attempt_timeout(self) -> tuple[float, bool]:
        """The timeout of the next attempt, and whether the deadline (not the per-attempt limit) sets it."""
        left = self._time_left()
        per_attempt = self.plan.attempt_timeout_seconds
        return (left, True) if left < per_attempt else (per_attempt, False)

    def _classify_timeout(self, attempt: Attempt) -> ProviderError:
        route = attempt.client.route
        if attempt.by_deadline:
            return DeadlineExceededError(
                f"execution deadline of {self.plan.timeout_seconds:g} s reached during the attempt",
                model=route.model,
                provider=route.provider.name,
            )
        return TimeoutError(f"no answer within {attempt.timeout:g} s", model=route.model, provider=route.provider.name)

    def _deadline_error(self) -> DeadlineExceededError:
        last = self.errors[-1] if self.errors else None
        return DeadlineExceededError(
            f"execution deadline of {self.plan.timeout_seconds:g} s reached",
            model=last.model if last else None,
            provider=last.provider if last else None,
        )

    def _decide(self, error: ProviderError, attempt: Attempt) -> Decision:
        if isinstance(error, DeadlineExceededError) or self._time_left() <= 0:
            return Decision("fail")
        return self.plan.policy.decide(
            error,
            retries_done=attempt.retry,
            max_retries=self.plan.max_retries,
            has_next_model=attempt.index + 1 < len(self.plan.chain),
            time_left=self._time_left(),
        )

    async def _give_up(self, error: ProviderError) -> ProviderError:
        """Record the execution as failed after ``error``; returns, once durable, the error to raise."""
        self.errors.append(error)
        final: ProviderError
        if isinstance(error, DeadlineExceededError):
            final = error
        elif self._time_left() <= 0:
            final = self._deadline_error()
        else:
            summary = "; ".join(f"{e.model}: {e.error_type}" for e in self.errors)
            final = AllModelsFailedError(
                f"all {len(self.plan.chain)} model(s) failed after {self._attempts} attempt(s): {summary}",
                errors=self.errors,
            )
        self._failed(final.error_type, str(final))
        await until_durable(self.plan.sink, self._terminal)
        return final

    async def _interrupted(self, attempt: Attempt, error: ProviderError, delivered: int) -> StreamInterruptedError:
        """Record the end of a stream that failed after chunks reached the caller; returns, once durable,
        the error to raise. No fallback and no policy: the caller would get a second answer after the first."""
        self._attempt_failed(attempt, error, error.error_type, Decision("fail"), chunks_delivered=delivered)
        self.errors.append(error)
        interrupted = StreamInterruptedError(
            f"stream failed after {delivered} chunk(s) reached the caller: {error.message}",
            cause=error,
            chunks_delivered=delivered,
        )
        self._failed(interrupted.error_type, str(interrupted), chunks_delivered=delivered)
        await until_durable(self.plan.sink, self._terminal)
        return interrupted

    async def _after_failure(self, attempt: Attempt, error: ProviderError) -> tuple[int, int] | None:
        """Record the failure and carry out the decision. Returns the next (index, retry), or None to stop."""
        decision = self._decide(error, attempt)
        self._attempt_failed(attempt, error, error.error_type, decision)
        if decision.action == "retry":
            self.errors.append(error)
            await asyncio.sleep(decision.delay)
            return attempt.index, attempt.retry + 1
        if decision.action == "fall_back":
            self.errors.append(error)
            self._fallback(attempt.index, error.error_type)
            return attempt.index + 1, 0
        return None

    def _in_progress(self, attempt: Attempt | None) -> Attempt | None:
        """``attempt`` unless its outcome is recorded already (a cancel during a backoff is not the attempt's)."""
        return attempt if attempt and len(self.summaries) < attempt.number else None

    async def _attempt_loop(self, kind: AttemptKind) -> AsyncGenerator[str, None]:
        """The attempt loop, for either kind of attempt: yields the chunks that reach the caller.

        It returns once the execution's events are durable, or raises, once they are, the execution's
        ``ProviderError``; no fallback once a chunk has reached the caller (StreamInterruptedError). A
        cancelled call, or a stream closed early, is recorded as cancelled, and an error of the executor
        itself as ``internal_error``; both propagate unchanged.
        """
        self._start()
        index, retry = 0, 0
        attempt: Attempt | None = None
        delivered = 0
        try:
            while True:
                timeout, by_deadline = self._attempt_timeout()
                if timeout <= 0:
                    raise await self._give_up(self._deadline_error())
                attempt = self._begin_attempt(index, retry, timeout, by_deadline)
                chunks = kind.chunks(attempt)
                try:
                    async for chunk in chunks:
                        delivered += 1
                        try:
                            yield chunk
                        except BaseException:
                            # The caller leaving at a chunk (aclose): the attempt's own stream closes first.
                            await chunks.aclose()
                            raise
                except ProviderError as exc:
                    error: ProviderError = exc
                except builtins.TimeoutError:
                    error = self._classify_timeout(attempt)
                else:
                    completion = attempt.completion
                    assert completion is not None
                    self._attempt_succeeded(attempt, completion, attempt.first_chunk_ms)
                    self._response = self._succeeded(attempt, completion)
                    await until_durable(self.plan.sink, self._terminal)
                    return
                if delivered:
                    interrupted = await self._interrupted(attempt, error, delivered)
                    raise interrupted from error
                next_step = await self._after_failure(attempt, error)
                if next_step is None:
                    raise await self._give_up(error)
                index, retry = next_step
        except (asyncio.CancelledError, GeneratorExit):
            self._cancelled(self._in_progress(attempt), chunks_delivered=delivered)
            raise
        except BaseException as exc:
            if not self._finished:
                self._failed("internal_error", f"{type(exc).__name__}: {exc}", chunks_delivered=delivered)
            raise

    async def run(self, parse: Callable[[Completion, ModelClient], T]) -> tuple[T, LLMResponse]:
        """Run a non-streaming execution to its end; it returns (or raises) once its events are durable."""
        kind = CompletionAttempt(self.plan.messages, parse)
        async for _ in self._attempt_loop(kind):
            pass  # a completion delivers no chunk
        assert self._response is not None
        return kind.value, self._response

    def stream(self) -> AsyncGenerator[str, None]:
        """Run a streaming execution, yielding text chunks. Falls back only before the first chunk."""
        return self._attempt_loop(StreamAttempt(self.plan.messages))

    def _call_params(self, timeout: float) -> CallParams:
        p = self.plan.params
        return CallParams(
            timeout=timeout,
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            stop_sequences=p.stop_sequences,
            json_schema=self.plan.json_schema,
        )
