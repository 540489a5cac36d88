"""The values the executor takes and returns."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from llm_ledger.events import TokenUsage
from llm_ledger.executor.tools import ToolCall

Role = Literal["system", "user", "assistant", "tool"]


class LLMMessage(BaseModel):
    """One message of a conversation sent to a model.

    An ``assistant`` message may carry the ``tool_calls`` its model asked for (its ``content`` may then be
    empty); a ``tool`` message answers one of them: ``tool_call_id`` names the call, ``name`` the tool, and
    ``content`` is the tool's result as text."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class AttemptSummary(BaseModel):
    """What happened in one attempt of an execution."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    model: str
    provider: str
    fallback_index: int
    retry: int
    outcome: Literal["succeeded", "failed"]
    latency_ms: float
    error_type: str | None = None
    error_message: str | None = None
    status_code: int | None = None


class LLMResponse(BaseModel):
    """The answer of an execution: the text, the model that gave it and how it was obtained."""

    model_config = ConfigDict(frozen=True)

    content: str
    model: str
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    latency_ms: float
    request_id: str | None = None
    metadata: dict[str, str | None] = Field(default_factory=dict)
    execution_id: UUID
    attempts: tuple[AttemptSummary, ...] = ()
    fallback_used: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools the model asked to call (then ``finish_reason`` is ``"tool_calls"``, whatever word the
    provider used; the events keep the provider's own)."""
