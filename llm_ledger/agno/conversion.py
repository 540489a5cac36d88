"""Agno's values and the executor's, both ways: Agno ``Message``s to ``LLMMessage``s, Agno's tool dicts
and ``tool_choice`` to ``ToolSpec``s and a tool's name, and an ``LLMResponse`` back to Agno's
``ModelResponse`` (the OpenAI-style tool-call dicts Agno's tool loop reads, and its usage metrics)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agno.metrics import MessageMetrics
from agno.models.message import Message
from agno.models.response import ModelResponse

from llm_ledger.events import TokenUsage
from llm_ledger.executor import ConfigurationError, LLMMessage, LLMResponse
from llm_ledger.executor.tools import ToolCall, ToolSpec
from llm_ledger.executor.types import Role

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "model": "assistant",
    "tool": "tool",
}


def llm_messages(
    messages: Sequence[Message],
    *,
    compressed: bool = False,
    known_calls: Mapping[str, ToolCall] | None = None,
) -> list[LLMMessage]:
    """The conversation as the executor takes it. Text only: a message carrying media is refused (the
    ledger records text, and the chain's providers would not all accept it).

    ``known_calls`` are the calls this run's executions asked for, by id: an assistant message that
    carries one is sent back with that ``ToolCall`` (its ``execution_id`` included)."""
    converted: list[LLMMessage] = []
    for index, message in enumerate(messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise ConfigurationError(
                f"AuditedModel: messages[{index}] has role {message.role!r}; the executor takes system, "
                "user, assistant and tool messages"
            )
        if message.images or message.audio or message.videos or message.files:
            raise ConfigurationError(
                f"AuditedModel: messages[{index}] carries media (images, audio, video or files); "
                "AuditedModel sends text only"
            )
        if role == "tool":
            content = message.get_content(use_compressed_content=compressed)
            converted.append(
                LLMMessage(
                    role="tool",
                    content=_text(content),
                    tool_call_id=message.tool_call_id,
                    name=message.tool_name,
                )
            )
            continue
        calls = tuple(_tool_call(raw, known_calls) for raw in message.tool_calls or ()) if role == "assistant" else ()
        converted.append(LLMMessage(role=role, content=message.get_content_string(), tool_calls=calls))
    return converted


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False, default=str)


def _tool_call(raw: Mapping[str, Any], known: Mapping[str, ToolCall] | None) -> ToolCall:
    call_id = str(raw.get("id") or "")
    function = raw.get("function") or {}
    arguments_json = function.get("arguments") or "{}"
    if not isinstance(arguments_json, str):
        arguments_json = json.dumps(arguments_json)
    recorded = known.get(call_id) if known is not None else None
    # Only the same call: a provider that numbers its calls per answer uses an id again in a later
    # round trip, and the message must still say what its own round trip asked for.
    if recorded is not None and recorded.name == function.get("name") and recorded.arguments_json == arguments_json:
        return recorded
    try:
        arguments = json.loads(arguments_json)
    except ValueError:
        arguments = {}
    return ToolCall(
        id=call_id,
        name=str(function.get("name") or ""),
        arguments=arguments if isinstance(arguments, dict) else {},
        arguments_json=arguments_json,
    )


def tool_specs(tools: Sequence[Mapping[str, Any]] | None) -> list[ToolSpec]:
    """Agno's tool dicts (``{"type": "function", "function": {...}}``, what ``Model._format_tools`` makes
    of its ``Function``s) as ``ToolSpec``s. A provider's built-in tool (any other dict) is refused: it
    would run on the provider's side, unseen by the ledger."""
    specs: list[ToolSpec] = []
    for index, tool in enumerate(tools or ()):
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, Mapping) or not function.get("name"):
            raise ConfigurationError(
                f"AuditedModel: tools[{index}] is not a function tool ({tool.get('type')!r}); only Agno "
                "functions and toolkits can be offered through the executor"
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        specs.append(
            ToolSpec(
                name=str(function["name"]),
                description=str(function.get("description") or ""),
                parameters=dict(parameters),
            )
        )
    return specs


def tool_choice_name(tool_choice: str | Mapping[str, Any] | None) -> str | None:
    """Agno's ``tool_choice`` (a word, or ``{"type": "function", "function": {"name": ...}}``) as the
    executor's (a word or a tool's name)."""
    if tool_choice is None or isinstance(tool_choice, str):
        return tool_choice
    function = tool_choice.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        return str(function["name"])
    raise ConfigurationError(f"AuditedModel: tool_choice {dict(tool_choice)!r} names no function")


def agno_tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """The calls in the form Agno's tool loop reads (``get_function_call_for_tool_call``)."""
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_json}}
        for call in calls
    ]


def usage_metrics(usage: TokenUsage | None, model: str) -> MessageMetrics:
    """The answer's usage as Agno's metrics. It is the usage of the attempt that answered (a failed
    attempt bills nothing the response carries), so a run's metrics count each round trip once;
    ``provider_metrics["model"]`` names the model of the chain that answered.

    An answer without usage (none reported, or counts no event can hold) gets zero metrics, never None:
    Agno's tool loop keeps the previous round trip's usage when an answer carries none, and would add
    it to the run's metrics a second time."""
    if usage is None:
        return MessageMetrics(provider_metrics={"model": model})
    return MessageMetrics(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cache_read_tokens=usage.cached_tokens or 0,
        cache_write_tokens=usage.cache_write_tokens or 0,
        reasoning_tokens=usage.reasoning_tokens or 0,
        cost=usage.cost_usd,
        provider_metrics={"model": model},
    )


def provider_data(response: LLMResponse) -> dict[str, Any]:
    """What the assistant message keeps of the execution behind it, to find it in the ledger."""
    return {
        "llm_ledger": {
            "execution_id": str(response.execution_id),
            "model": response.model,
            "fallback_used": response.fallback_used,
            "attempts": len(response.attempts),
        }
    }


def model_response(response: LLMResponse) -> ModelResponse:
    """One round trip's answer as Agno's ``ModelResponse``."""
    return ModelResponse(
        role="assistant",
        content=response.content if response.content or not response.tool_calls else None,
        tool_calls=agno_tool_calls(response.tool_calls),
        response_usage=usage_metrics(response.usage, response.model),
        provider_data=provider_data(response),
    )


@dataclass(frozen=True, slots=True)
class Request:
    """One round trip's arguments for the executor."""

    messages: list[LLMMessage]
    tools: list[ToolSpec] | None
    choice: str | None

    @property
    def tool_arguments(self) -> dict[str, Any]:
        """``tools=``/``tool_choice=`` for the executor, left out when no tool is offered (a text-only
        round trip is the same call it always was)."""
        return {"tools": self.tools, "tool_choice": self.choice} if self.tools else {}
