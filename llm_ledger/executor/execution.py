"""One execution: the attempt loop over the chain. The policy decides, this obeys; ``history.py`` records
what happened (events, spans, attempt summaries)."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar
from uuid import UUID

from llm_ledger.events import uuid7
from llm_ledger.executor.attempts import Attempt, AttemptKind, CompletionAttempt, StreamAttempt
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.errors import (
    AllModelsFailedError,
    DeadlineExceededError,
    ProviderError,
    StreamInterruptedError,
    TimeoutError,
)
from llm_ledger.executor.history import ExecutionHistory
from llm_ledger.executor.plan import ExecutionPlan
from llm_ledger.executor.policy import Decision
from llm_ledger.executor.stream import LLMStream
from llm_ledger.executor.tools import ToolCall, checked_tool_calls
from llm_ledger.executor.types import LLMResponse

T = TypeVar("T")


class Execution:
    """Runs one plan to its end: the deadline, the attempts, the policy's decisions, the give-up, and
    what a cancelled call or an error of the executor itself leaves in the record."""

    def __init__(self, plan: ExecutionPlan) -> None:
        self.plan = plan
        self.execution_id: UUID = uuid7()
        self._deadline = time.monotonic() + plan.timeout_seconds
        self.history = ExecutionHistory(plan, self.execution_id)
        self.errors: list[ProviderError] = []
        self._response: LLMResponse | None = None
        self._tools_by_name = {tool.name: tool for tool in plan.tools}

    @property
    def response(self) -> LLMResponse | None:
        """The response, once the execution has succeeded."""
        return self._response

    def _checked_calls(self, completion: Completion, client: ModelClient) -> tuple[ToolCall, ...]:
        return checked_tool_calls(completion.tool_calls, self._tools_by_name, client.route, self.execution_id)

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
                f"all {len(self.plan.chain)} model(s) failed after {self.history.attempts} attempt(s): {summary}",
                errors=self.errors,
            )
        self.history.failed(final.error_type, str(final))
        await self.history.until_durable()
        return final

    async def _interrupted(self, attempt: Attempt, error: ProviderError, delivered: int) -> StreamInterruptedError:
        """Record the end of a stream that failed after chunks reached the caller; returns, once durable,
        the error to raise. No fallback and no policy: the caller would get a second answer after the first."""
        self.history.attempt_failed(attempt, error, error.error_type, Decision("fail"), chunks_delivered=delivered)
        self.errors.append(error)
        interrupted = StreamInterruptedError(
            f"stream failed after {delivered} chunk(s) reached the caller: {error.message}",
            cause=error,
            chunks_delivered=delivered,
        )
        self.history.failed(interrupted.error_type, str(interrupted), chunks_delivered=delivered)
        await self.history.until_durable()
        return interrupted

    async def _after_failure(self, attempt: Attempt, error: ProviderError) -> tuple[int, int] | None:
        """Record the failure and carry out the decision. Returns the next (index, retry), or None to stop."""
        decision = self._decide(error, attempt)
        self.history.attempt_failed(attempt, error, error.error_type, decision)
        if decision.action == "retry":
            self.errors.append(error)
            await asyncio.sleep(decision.delay)
            return attempt.index, attempt.retry + 1
        if decision.action == "fall_back":
            self.errors.append(error)
            self.history.fallback(attempt.index, error.error_type)
            return attempt.index + 1, 0
        return None

    async def _attempt_loop(self, kind: AttemptKind) -> AsyncGenerator[str, None]:
        """The attempt loop, for either kind of attempt: yields the chunks that reach the caller.

        It returns once the execution's events are durable, or raises, once they are, the execution's
        ``ProviderError``; no fallback once a chunk has reached the caller (StreamInterruptedError). A
        cancelled call, or a stream closed early, is recorded as cancelled, and an error of the executor
        itself as ``internal_error``; both propagate unchanged.
        """
        self.history.started()
        index, retry = 0, 0
        attempt: Attempt | None = None
        delivered = 0
        try:
            while True:
                timeout, by_deadline = self._attempt_timeout()
                if timeout <= 0:
                    raise await self._give_up(self._deadline_error())
                attempt = self.history.attempt_started(index, retry, self._call_params(timeout), timeout, by_deadline)
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
                    self.history.attempt_succeeded(attempt, completion, attempt.first_chunk_ms)
                    self._response = self.history.succeeded(attempt, completion)
                    await self.history.until_durable()
                    return
                if delivered:
                    interrupted = await self._interrupted(attempt, error, delivered)
                    raise interrupted from error
                next_step = await self._after_failure(attempt, error)
                if next_step is None:
                    raise await self._give_up(error)
                index, retry = next_step
        except (asyncio.CancelledError, GeneratorExit):
            self.history.cancelled(attempt, chunks_delivered=delivered)
            raise
        except BaseException as exc:
            if not self.history.finished:
                self.history.failed("internal_error", f"{type(exc).__name__}: {exc}", chunks_delivered=delivered)
            raise

    async def run(self, parse: Callable[[Completion, ModelClient], T]) -> tuple[T, LLMResponse]:
        """Run a non-streaming execution to its end; it returns (or raises) once its events are durable."""
        kind = CompletionAttempt(self.plan.messages, parse, self._checked_calls)
        async for _ in self._attempt_loop(kind):
            pass  # a completion delivers no chunk
        assert self._response is not None
        return kind.value, self._response

    def stream(self) -> LLMStream:
        """Run a streaming execution, yielding text chunks. Falls back only before the first chunk."""
        return LLMStream(self, self._attempt_loop(StreamAttempt(self.plan.messages, self._checked_calls)))

    def _call_params(self, timeout: float) -> CallParams:
        p = self.plan.params
        return CallParams(
            timeout=timeout,
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            stop_sequences=p.stop_sequences,
            json_schema=self.plan.json_schema,
            tools=self.plan.tools,
            tool_choice=self.plan.tool_choice,
        )
