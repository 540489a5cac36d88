"""One attempt of an execution: its bookkeeping, and the two ways of asking the model (whole, or streamed).

The attempt loop (``Execution._attempt_loop`` in ``execution.py``) drives either kind the same way: it iterates
``kind.chunks(attempt)``, passing each chunk on to the caller as it arrives. A kind ends an attempt in
one of three ways: it returns, leaving the answer in ``attempt.completion``; it raises
``ProviderError``; or it lets ``builtins.TimeoutError`` out when the attempt's time is up (the loop
names that a timeout or the deadline). Retries, fallbacks, the deadline and cancellation are the
loop's; the kinds know nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.tracing import AttemptTrace
from llm_ledger.executor.types import LLMMessage

T = TypeVar("T")

ToolCallCheck = Callable[[Completion, ModelClient], tuple[ToolCall, ...]]
"""Turns an answer's requested tool calls into checked ones, or raises ``InvalidOutputError`` (which fails
the attempt like any provider error). Called only when the answer asked for calls."""


class Attempt:
    """Bookkeeping of the attempt in progress: its place in the chain, its time limit, what it got."""

    __slots__ = (
        "by_deadline",
        "client",
        "completion",
        "first_chunk_ms",
        "index",
        "number",
        "params",
        "retry",
        "started",
        "timeout",
        "tool_calls",
        "trace",
    )

    def __init__(
        self,
        number: int,
        index: int,
        retry: int,
        client: ModelClient,
        params: CallParams,
        trace: AttemptTrace,
        timeout: float,
        by_deadline: bool,
    ) -> None:
        self.number = number
        self.params = params
        self.index = index
        self.retry = retry
        self.client = client
        self.trace = trace
        self.timeout = timeout
        self.by_deadline = by_deadline
        """Whether the execution's deadline, not the per-attempt limit, set ``timeout``."""
        self.completion: Completion | None = None
        """The answer, once the attempt has succeeded."""
        self.tool_calls: tuple[ToolCall, ...] = ()
        """The answer's tool calls, checked, once the attempt has succeeded."""
        self.first_chunk_ms: float | None = None
        self.started = time.perf_counter()

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


class AttemptKind(Protocol):
    """A way of making one attempt (see the module docstring for how it ends one)."""

    def chunks(self, attempt: Attempt) -> AsyncGenerator[str, None]:
        """The chunks that reach the caller, as they arrive."""
        ...


class CompletionAttempt(Generic[T]):
    """The whole answer in one call, bounded by ``asyncio.timeout``; no chunk reaches the caller.

    ``parse`` turns the answer into the caller's value, kept in ``value`` (structured output raises
    InvalidOutputError there, which fails the attempt like any provider error).
    """

    __slots__ = ("_check", "_messages", "_parse", "value")

    value: T

    def __init__(
        self, messages: Sequence[LLMMessage], parse: Callable[[Completion, ModelClient], T], check: ToolCallCheck
    ) -> None:
        self._messages = messages
        self._parse = parse
        self._check = check

    async def chunks(self, attempt: Attempt) -> AsyncGenerator[str, None]:
        async with asyncio.timeout(attempt.timeout):
            completion = await attempt.client.complete(self._messages, attempt.params)
        if completion.tool_calls:
            attempt.tool_calls = self._check(completion, attempt.client)
        self.value = self._parse(completion, attempt.client)
        attempt.completion = completion
        return
        yield  # an async generator that yields nothing, so that the loop drives both kinds alike


class StreamAttempt:
    """The answer chunk by chunk. The attempt's time limit covers the whole stream, the caller's time
    between two chunks included; only the waits for a chunk are bounded (``asyncio.timeout_at`` one
    deadline), since a timeout cannot interrupt the caller while it holds a chunk.

    The tool calls come complete with the end of the stream (the client assembles their deltas); they are
    checked then, so an invalid one fails the attempt after whatever text reached the caller."""

    __slots__ = ("_check", "_messages")

    def __init__(self, messages: Sequence[LLMMessage], check: ToolCallCheck) -> None:
        self._messages = messages
        self._check = check

    async def chunks(self, attempt: Attempt) -> AsyncGenerator[str, None]:
        completion = Completion()
        chunks = attempt.client.stream(self._messages, attempt.params, completion)
        attempt_deadline = time.monotonic() + attempt.timeout
        try:
            while True:
                try:
                    async with asyncio.timeout_at(_loop_time_for(attempt_deadline)):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                if attempt.first_chunk_ms is None:
                    attempt.first_chunk_ms = attempt.elapsed_ms()
                if chunk:
                    yield chunk
        finally:
            await _close(chunks)
        if completion.tool_calls:
            attempt.tool_calls = self._check(completion, attempt.client)
        attempt.completion = completion


def _loop_time_for(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


async def _close(chunks: AsyncIterator[str]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        # Closing a failed provider stream must not mask the error that ended it.
        with contextlib.suppress(Exception):
            await aclose()
