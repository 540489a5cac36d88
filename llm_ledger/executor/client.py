"""The narrow seam between the executor and a model: one attempt, classified errors, no policy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_ledger.events import TokenUsage
from llm_ledger.executor.routing import ModelRoute
from llm_ledger.executor.tools import RequestedToolCall, ToolSpec
from llm_ledger.executor.types import LLMMessage


@dataclass(frozen=True, slots=True)
class CallParams:
    """Per-call parameters. They are applied to a copy of the model, never to a shared instance."""

    timeout: float
    temperature: float | None = None
    max_tokens: int | None = None
    stop_sequences: tuple[str, ...] | None = None
    json_schema: dict[str, Any] | None = None
    """For structured output: the JSON schema the answer must follow."""
    tools: tuple[ToolSpec, ...] = ()
    """The tools the model may call."""
    tool_choice: str | None = None
    """``auto``, ``none``, ``required`` or a tool's name (``tools.TOOL_CHOICES``); None: the provider's default."""


@dataclass(slots=True)
class Completion:
    """What one successful attempt returned (filled in as a stream goes)."""

    text: str = ""
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    response_id: str | None = None
    response_model: str | None = None
    tool_calls: list[RequestedToolCall] = field(default_factory=list)
    """The calls the answer asked for, as the provider wrote them (a stream's once it has ended)."""


class ModelClient(Protocol):
    """Calls one model. Raises only ``ProviderError`` subclasses (or ``asyncio.CancelledError``)."""

    @property
    def route(self) -> ModelRoute: ...

    @property
    def server_address(self) -> str | None: ...

    @property
    def server_port(self) -> int | None: ...

    @property
    def secrets(self) -> tuple[str, ...]:
        """Credential values to scrub from anything stored about this client's calls."""
        ...

    async def complete(self, messages: Sequence[LLMMessage], params: CallParams) -> Completion: ...

    def stream(self, messages: Sequence[LLMMessage], params: CallParams, result: Completion) -> AsyncIterator[str]:
        """Yield text chunks; ``result`` holds usage and finish reason once the stream has ended."""
        ...
