"""What a request body says about tools, read the same way for every dialect, and the tool-conversation
rules the real APIs enforce (stdlib only).

The fake answers a request that breaks one of these rules with the 400 the real API gives, worded as it
words it, so a client that sends a tool conversation the next provider cannot take (a ``tool`` message
to Anthropic, a ``tool_result`` whose call is not in the previous message, an unanswered call) fails
against the fake as it would in production. The views (``offered_tool_names``, ``sent_tool_calls``,
``sent_tool_results``) let a test assert what the server received without knowing the dialect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SentToolCall",
    "SentToolResult",
    "conversation_error",
    "offered_tool_names",
    "sent_tool_calls",
    "sent_tool_results",
]

_OPENAI_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ANTHROPIC_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ANTHROPIC_ID: Final = re.compile(r"^[a-zA-Z0-9_-]+$")
_ANTHROPIC_CHOICES: Final = ("auto", "any", "tool", "none")
_OPENAI_CHOICES: Final = ("auto", "none", "required")


@dataclass(frozen=True)
class SentToolCall:
    """A call an assistant message of the request carries (the conversation sent back).

    ``arguments`` is the parsed object (``None`` when the text is not a JSON object); ``arguments_text``
    the text as sent (Anthropic: the JSON of ``input``)."""

    message_index: int
    id: str
    name: str
    arguments: dict[str, Any] | None
    arguments_text: str


@dataclass(frozen=True)
class SentToolResult:
    """A tool result the request carries: an OpenAI-style ``tool`` message, or an Anthropic
    ``tool_result`` block (its text parts joined) inside a ``user`` message."""

    message_index: int
    tool_call_id: str
    content: str
    is_error: bool = False


def _messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def _blocks(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def offered_tool_names(provider: str, body: dict[str, Any]) -> list[str]:
    """The names of the tools the request offers, in order."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    names: list[str] = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        holder = tool if provider == "anthropic" else tool.get("function")
        if isinstance(holder, dict) and isinstance(holder.get("name"), str):
            names.append(holder["name"])
    return names


def _openai_calls(index: int, message: dict[str, Any]) -> Iterator[SentToolCall]:
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        text = function.get("arguments")
        text = text if isinstance(text, str) else json.dumps(text)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        yield SentToolCall(
            index,
            str(call.get("id")),
            str(function.get("name")),
            parsed if isinstance(parsed, dict) else None,
            text,
        )


def sent_tool_calls(provider: str, body: dict[str, Any]) -> list[SentToolCall]:
    """Every call carried by an assistant message of the request, in order."""
    found: list[SentToolCall] = []
    for index, message in enumerate(_messages(body)):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        if provider != "anthropic":
            found.extend(_openai_calls(index, message))
            continue
        for block in _blocks(message):
            if isinstance(block, dict) and block.get("type") == "tool_use":
                value = block.get("input")
                found.append(
                    SentToolCall(
                        index,
                        str(block.get("id")),
                        str(block.get("name")),
                        value if isinstance(value, dict) else None,
                        json.dumps(value, separators=(",", ":")),
                    )
                )
    return found


def sent_tool_results(provider: str, body: dict[str, Any]) -> list[SentToolResult]:
    """Every tool result the request carries, in order."""
    found: list[SentToolResult] = []
    for index, message in enumerate(_messages(body)):
        if not isinstance(message, dict):
            continue
        if provider != "anthropic":
            if message.get("role") == "tool":
                found.append(SentToolResult(index, str(message.get("tool_call_id")), _text(message.get("content"))))
            continue
        for block in _blocks(message):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                found.append(
                    SentToolResult(
                        index,
                        str(block.get("tool_use_id")),
                        _text(block.get("content")),
                        bool(block.get("is_error", False)),
                    )
                )
    return found


def conversation_error(provider: str, body: dict[str, Any]) -> str | None:
    """The message of the 400 the real API answers for this request's tools and tool conversation, or
    ``None`` when it breaks none of the rules checked here."""
    if provider == "anthropic":
        return _anthropic_error(body)
    return _openai_error(provider, body)


def _openai_error(provider: str, body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names = offered_tool_names(provider, body)
    if tools is not None:
        # OpenAI refuses an empty list; Groq takes it (Agno's Groq class sends ``tools: []`` on every call).
        if not isinstance(tools, list) or (not tools and provider == "openai"):
            return "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array."
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                return f"Missing required parameter: 'tools[{i}].function'."
            name = function.get("name")
            if not isinstance(name, str) or not _OPENAI_NAME.match(name):
                return (
                    f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string "
                    "that matches the pattern '^[a-zA-Z0-9_-]+$'."
                )
            parameters = function.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                return f"Invalid type for 'tools[{i}].function.parameters': expected an object."
    choice = body.get("tool_choice")
    if choice is not None:
        if tools is None:
            return "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
        if isinstance(choice, dict):
            function = choice.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if choice.get("type") != "function" or name not in names:
                return f"Invalid value for 'tool_choice': no function named {name!r} was specified in 'tools'."
        elif choice not in _OPENAI_CHOICES:
            return (
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'. (param: tool_choice)"
            )

    pending: list[str] = []
    for i, message in enumerate(_messages(body)):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'."
                )
            pending.remove(call_id)
            content = message.get("content")
            if not isinstance(content, (str, list)):
                return f"Invalid type for 'messages[{i}].content': expected one of a string or array of objects."
            continue
        if pending:
            return _openai_unanswered(pending)
        if role == "assistant":
            calls = message.get("tool_calls")
            for j, call in enumerate(calls if isinstance(calls, list) else []):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                    return (
                        f"Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': expected a "
                        "string, but got an object instead."
                    )
                pending.append(str(call.get("id")))
    if pending:
        return _openai_unanswered(pending)
    return None


def _openai_unanswered(pending: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}"
    )


def _anthropic_error(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names = offered_tool_names("anthropic", body)
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, dict):
            return f"tools.{i}: Input should be a valid dictionary"
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution): not checked here
        name = tool.get("name")
        if not isinstance(name, str) or not _ANTHROPIC_NAME.match(name):
            return f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            return f"tools.{i}.custom.input_schema: Field required"
        if schema.get("type") != "object":
            return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in _ANTHROPIC_CHOICES:
            return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        if not tools and choice.get("type") != "none":
            return "tool_choice may only be specified while providing tools."
        if choice.get("type") == "tool" and choice.get("name") not in names:
            return f"Tool '{choice.get('name')}' not found in provided tools"

    previous_ids: list[str] = []
    for i, message in enumerate(_messages(body)):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        blocks = _blocks(message)
        if role == "user":
            answered = []
            for j, block in enumerate(blocks):
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    call_id = block.get("tool_use_id")
                    if call_id not in previous_ids:
                        return (
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{call_id}. Each `tool_result` block must have a corresponding `tool_use` block in "
                            "the previous message."
                        )
                    answered.append(call_id)
            missing = [call_id for call_id in previous_ids if call_id not in answered]
            if missing:
                return _anthropic_unanswered(i - 1, missing)
            previous_ids = []
            continue
        if previous_ids:
            return _anthropic_unanswered(i - 1, previous_ids)
        for j, block in enumerate(blocks):
            if not isinstance(block, dict) or block.get("type") != "tool_use":
                continue
            call_id = block.get("id")
            if not isinstance(call_id, str) or not _ANTHROPIC_ID.match(call_id):
                return f"messages.{i}.content.{j}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
            if not isinstance(block.get("input"), dict):
                return f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
            previous_ids.append(call_id)
    if previous_ids:
        return _anthropic_unanswered(len(_messages(body)) - 1, previous_ids)
    return None


def _anthropic_unanswered(index: int, ids: list[str]) -> str:
    return (
        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
        "message."
    )
