"""The values the executor takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
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


InputEntry = tuple[str, str] | tuple[str, str, dict[str, Any]]
"""A message as ``events.values.input_values`` takes it: ``(role, content)``, plus its tool fields if any."""


def input_entries(messages: Sequence[LLMMessage]) -> list[InputEntry]:
    """The messages as the input record is made of them: a message without tool fields is the pair it
    always was (so its digest is unchanged); one with them carries those it has, the calls' arguments as
    their JSON text."""
    return [_entry(message) for message in messages]


def _entry(message: LLMMessage) -> InputEntry:
    if not message.tool_calls and message.tool_call_id is None and message.name is None:
        return (message.role, message.content)
    fields: dict[str, Any] = {}
    if message.tool_calls:
        fields["tool_calls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments_json} for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        fields["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        fields["name"] = message.name
    return (message.role, message.content, fields)


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
