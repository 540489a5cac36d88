"""Tool calling: the tools offered to a model (``ToolSpec``), the calls it asks for (``ToolCall``), and
the check that turns a provider's raw calls into validated ones (a call that does not parse, or does
not match its tool's schema, is a failed attempt: ``InvalidOutputError``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from llm_ledger.executor.routing import ModelRoute

TOOL_CHOICES = ("auto", "none", "required")
"""``tool_choice`` is one of these, or the name of one of the offered tools (the model must call it)."""


class ToolSpec(BaseModel):
    """A tool offered to the model: its name, what it does, and its parameters as a JSON schema (an
    object schema). Build one by hand, or from a typed function (``from_function``) or a pydantic model
    (``from_model``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> ToolSpec:
        """A tool from a typed Python function: its name, the first paragraph of its docstring, and a
        schema of its parameters (from their annotations and defaults)."""
        raise NotImplementedError  # executor helper

    @classmethod
    def from_model(cls, model: type[BaseModel], *, name: str | None = None, description: str | None = None) -> ToolSpec:
        """A tool whose arguments are a pydantic model (its JSON schema; its docstring as description)."""
        raise NotImplementedError  # executor helper

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the tool's name, description and parameters: what the
        ledger keeps of the tool's definition."""
        raise NotImplementedError  # executor helper


class ToolCall(BaseModel):
    """A call the model asked for: the provider's call id, the tool's name, the parsed arguments and their
    raw text as the model wrote them. ``execution_id`` is the execution whose answer asked for it (None
    for a call written by hand, in a conversation sent back)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    arguments_json: str = "{}"
    execution_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class RequestedToolCall:
    """A call as the provider's answer carried it, not checked yet (``ModelClient`` returns these in
    ``Completion.tool_calls``; ``checked_tool_calls`` turns them into ``ToolCall``s)."""

    id: str
    name: str
    arguments: str


def checked_tool_calls(
    requested: Sequence[RequestedToolCall],
    tools: Mapping[str, ToolSpec],
    route: ModelRoute,
    execution_id: UUID,
) -> tuple[ToolCall, ...]:
    """The calls, parsed and validated against their tools' schemas; raises ``InvalidOutputError`` naming
    the call and what is wrong (an unknown tool, arguments that are not a JSON object, or that do not
    match the schema)."""
    raise NotImplementedError  # executor helper
