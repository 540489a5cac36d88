"""``LLMStream``: what ``generate_stream`` returns, the text chunks as they arrive and, once the stream has
ended, the whole response (its tool calls, usage and attempts)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload
from uuid import UUID

from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.types import LLMResponse

if TYPE_CHECKING:
    from llm_ledger.executor.execution import Execution


class LLMStream(AsyncGenerator[str, None]):
    """An async generator of the answer's text chunks, exactly as a plain one (``async for``, ``anext``,
    ``aclose``: closing it early records the execution as cancelled), which also tells, once it has ended
    successfully, the execution's ``response`` (``LLMResponse``: usage, attempts, ``tool_calls``), and
    ``tool_calls`` (``()`` until then).

    A tool call is complete only when the stream is: the calls come with the end of the stream, never as
    chunks."""

    __slots__ = ("_chunks", "_execution")

    def __init__(self, execution: Execution, chunks: AsyncGenerator[str, None]) -> None:
        self._execution = execution
        self._chunks = chunks

    @property
    def response(self) -> LLMResponse | None:
        """The response, once the stream has ended successfully; None before, or after a failure."""
        return self._execution.response

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tools the model asked to call, once the stream has ended; ``()`` before."""
        response = self._execution.response
        return response.tool_calls if response is not None else ()

    @property
    def execution_id(self) -> UUID:
        """The id of the stream's execution (its events' ``stream_id``), known from the start."""
        return self._execution.execution_id

    def __aiter__(self) -> LLMStream:
        return self

    def __anext__(self) -> Coroutine[Any, Any, str]:
        return self._chunks.__anext__()

    def asend(self, value: None, /) -> Coroutine[Any, Any, str]:
        return self._chunks.asend(value)

    @overload
    def athrow(
        self, typ: type[BaseException], val: object = None, tb: TracebackType | None = None, /
    ) -> Coroutine[Any, Any, str]: ...

    @overload
    def athrow(
        self, typ: BaseException, val: None = None, tb: TracebackType | None = None, /
    ) -> Coroutine[Any, Any, str]: ...

    def athrow(
        self, typ: type[BaseException] | BaseException, val: object = None, tb: TracebackType | None = None, /
    ) -> Coroutine[Any, Any, str]:
        if val is None and tb is None:
            return self._chunks.athrow(typ)
        return self._chunks.athrow(typ, val, tb)  # type: ignore[arg-type]

    def aclose(self) -> Coroutine[Any, Any, None]:
        return self._chunks.aclose()
