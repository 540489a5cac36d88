"""The door: a call whose input the ledger cannot store is refused before any event exists.

An event the store refuses leaves a hole in its stream, and ``audit verify`` cannot tell a hole from
tampering; so what the caller supplies is checked here, when the call is made, against what an event can
hold (``events.storable``), and refused with ``InvalidInputError`` naming the input and what is wrong.
What a provider supplies cannot be refused (the call has happened): the payload values make it storable.

Cheap for the common call: an ASCII string costs an O(1) ``isascii`` and a NUL search; only capture
``full``, which stores the text, pays for scrubbing and measuring it here (the sealing reuses the result).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import orjson

from llm_ledger.events import CanonicalizationError, CapturePolicy, DigestKey, RequestParameters, Scrubber
from llm_ledger.events import values as payloads
from llm_ledger.events.storable import (
    MAX_CAPTURED_BYTES,
    MAX_EXACT_INTEGER,
    MAX_FIELD_CHARS,
    surrogate_problem,
    text_problem,
)
from llm_ledger.events.values import JsonDict
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.errors import ConfigurationError, InvalidInputError
from llm_ledger.executor.tools import TOOL_CHOICES, TOOL_NAME, ToolSpec, schema_problem
from llm_ledger.executor.types import LLMMessage, input_entries

MAX_STOP_SEQUENCES = 16
MAX_CHAIN_MODELS = 16
"""A chain's model strings all go into its ``ExecutionStarted`` event: 16 at their longest, like 16 stop
sequences, stay within ``RESERVED_EVENT_BYTES`` (a chain of 2,000 long ones made an event over 1 MiB)."""
MAX_TOOLS = 128
"""OpenAI's limit on the tools of one request; each offered tool is a name and a digest in ``ExecutionStarted``
(128 of them, about 18 KB, stay well within an event)."""


def check_identifier(field: str, value: str) -> None:
    """A string stored in every event of a stream, or in its first (a context id, a model string, a stop
    sequence): no NUL, no lone surrogate, at most ``MAX_FIELD_CHARS`` characters."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(field, f"{problem}, which the ledger cannot store")
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidInputError(field, f"is {len(value)} characters long; the ledger keeps at most {MAX_FIELD_CHARS}")


def check_context(context: ExecutionContext) -> None:
    for name in ("tenant_id", "agent_id", "session_id", "turn_id", "step", "subject_id"):
        value = getattr(context, name)
        if value is not None:
            check_identifier(f"execution context {name}", value)


def check_chain(chain: Sequence[str]) -> None:
    """The model strings of a chain (configuration: refused with ``ConfigurationError``)."""
    if len(chain) > MAX_CHAIN_MODELS:
        raise ConfigurationError(
            f"a chain has {len(chain)} models (the model and its fallbacks); the ledger keeps at most"
            f" {MAX_CHAIN_MODELS}"
        )
    for index, model in enumerate(chain):
        try:
            check_identifier(f"model string {index}", model)
        except InvalidInputError as exc:
            raise ConfigurationError(str(exc)) from None


def parameters(
    temperature: float | None, max_tokens: int | None, stop_sequences: Sequence[str] | None
) -> RequestParameters:
    """The call's sampling parameters, refused with ``InvalidInputError`` when an event cannot hold them."""
    if temperature is not None and not (isinstance(temperature, (int, float)) and _finite(temperature)):
        raise InvalidInputError("temperature", f"must be a finite number, not {temperature!r}")
    if max_tokens is not None and not (isinstance(max_tokens, int) and 0 < max_tokens <= MAX_EXACT_INTEGER):
        raise InvalidInputError("max_tokens", f"must be a positive integer up to 2**53 - 1, not {max_tokens!r}")
    if isinstance(stop_sequences, str):  # a str is a sequence of one-character stop sequences
        raise InvalidInputError("stop_sequences", f"must be a list of strings, not the string {stop_sequences!r:.60}")
    stops = tuple(stop_sequences) if stop_sequences else ()
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidInputError(
            "stop_sequences", f"has {len(stops)} items; the ledger keeps at most {MAX_STOP_SEQUENCES}"
        )
    for index, stop in enumerate(stops):
        check_identifier(f"stop_sequences[{index}]", stop)
    return RequestParameters(temperature=temperature, max_tokens=max_tokens, stop_sequences=stops or None)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float (10**400)
        return False


def check_retries(max_retries: int) -> None:
    """``max_retries`` resolved from the executor and its configuration."""
    if not (isinstance(max_retries, int) and 0 <= max_retries <= MAX_EXACT_INTEGER):
        raise ConfigurationError(f"max_retries must be an integer from 0 to 2**53 - 1, got {max_retries!r}")


def check_durations(**seconds: float) -> None:
    """Timeouts resolved from the executor and its configuration: finite and positive."""
    for name, value in seconds.items():
        if not (math.isfinite(value) and value > 0):
            raise ConfigurationError(f"{name} must be a finite number of seconds above 0, got {value!r}")


OfferedTools = tuple[tuple[str, str], ...]
"""The offered tools as ``ExecutionStarted`` keeps them: ``(name, ToolSpec.digest())`` pairs."""


def check_tools(tools: Sequence[ToolSpec] | None, tool_choice: str | None) -> tuple[tuple[ToolSpec, ...], OfferedTools]:
    """The tools offered to the model and their digests; refused with ``InvalidInputError`` naming the bad
    field: a name providers refuse, a name offered twice, parameters that are not an object schema
    ``jsonschema`` accepts, a ``tool_choice`` that is neither ``auto``/``none``/``required`` nor an offered
    tool's name. The checks and digests are made once per ``ToolSpec`` (cached on it)."""
    if tools is None:
        specs: tuple[ToolSpec, ...] = ()
    elif isinstance(tools, (str, ToolSpec)) or not isinstance(tools, Sequence):
        raise InvalidInputError("tools", f"must be a list of ToolSpec, not {type(tools).__name__}")
    else:
        specs = tuple(tools)
    if len(specs) > MAX_TOOLS:
        raise InvalidInputError("tools", f"has {len(specs)} tools; at most {MAX_TOOLS} may be offered at once")
    offered: list[tuple[str, str]] = []
    index_of: dict[str, int] = {}
    for index, tool in enumerate(specs):
        if not isinstance(tool, ToolSpec):
            raise InvalidInputError(f"tools[{index}]", f"must be a ToolSpec, not {type(tool).__name__}")
        if not (isinstance(tool.name, str) and TOOL_NAME.fullmatch(tool.name)):
            raise InvalidInputError(
                f"tools[{index}].name", f"{tool.name!r} is not a tool name: 1 to 64 letters, digits, '_' or '-'"
            )
        if tool.name in index_of:
            raise InvalidInputError(
                f"tools[{index}].name", f"{tool.name!r} is offered twice (also tools[{index_of[tool.name]}])"
            )
        index_of[tool.name] = index
        problem = schema_problem(tool)
        if problem is not None:
            raise InvalidInputError(f"tools[{index}].parameters", problem)
        try:
            digest = tool.digest()
        except CanonicalizationError as exc:
            raise InvalidInputError(f"tools[{index}]", f"has no canonical JSON form to digest: {exc}") from None
        offered.append((tool.name, digest))
    if tool_choice is not None:
        if not specs:
            raise InvalidInputError("tool_choice", f"is {tool_choice!r} but no tools are offered")
        if not (isinstance(tool_choice, str) and (tool_choice in TOOL_CHOICES or tool_choice in index_of)):
            names = ", ".join(repr(name) for name in index_of)
            raise InvalidInputError(
                "tool_choice",
                f"must be 'auto', 'none', 'required' or the name of an offered tool ({names}), not {tool_choice!r}",
            )
    return specs, tuple(offered)


def _check_tool_fields(index: int, message: LLMMessage, stores_text: bool) -> None:
    """The tool fields of one message: on the right role, and storable (ids and names like identifiers; the
    arguments' text like content)."""
    where = f"messages[{index}]"
    if message.tool_calls and message.role != "assistant":
        raise InvalidInputError(
            f"{where}.tool_calls",
            f"are only carried by an assistant message, not by a message of role {message.role!r}",
        )
    if message.tool_call_id is not None and message.role != "tool":
        raise InvalidInputError(
            f"{where}.tool_call_id",
            f"is only carried by a tool message (answering a call), not by a message of role {message.role!r}",
        )
    for number, call in enumerate(message.tool_calls):
        check_identifier(f"{where}.tool_calls[{number}].id", call.id)
        check_identifier(f"{where}.tool_calls[{number}].name", call.name)
        problem = text_problem(call.arguments_json) if stores_text else surrogate_problem(call.arguments_json)
        if problem is not None:
            raise InvalidInputError(
                f"{where}.tool_calls[{number}].arguments_json", f"{problem}, which the ledger cannot store"
            )
    if message.tool_call_id is not None:
        check_identifier(f"{where}.tool_call_id", message.tool_call_id)
    if message.name is not None:
        check_identifier(f"{where}.name", message.name)


def _check_answers(index: int, message: LLMMessage, asked: set[str]) -> None:
    """Each call id once in an assistant message, and each tool result answering a call asked for earlier in
    the conversation: every provider refuses a conversation otherwise (a 400 on each model of the chain),
    so it is refused here, naming the message, rather than after a round of failed attempts."""
    ids = [call.id for call in message.tool_calls]
    if len(set(ids)) < len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInputError(f"messages[{index}].tool_calls", f"carry the call id {twice!r} more than once")
    asked.update(ids)
    if message.tool_call_id is not None and message.tool_call_id not in asked:
        raise InvalidInputError(
            f"messages[{index}].tool_call_id",
            f"{message.tool_call_id!r} answers no tool call of an earlier assistant message",
        )


def check_messages(
    messages: Sequence[LLMMessage], capture: CapturePolicy, scrubber: Scrubber, digest_key: DigestKey | None = None
) -> JsonDict | None:
    """Refuse messages the ledger cannot record under ``capture``. Under ``full``, returns the input record
    (scrubbed text included) that the ``ExecutionStarted`` event will hold, measured here."""
    if not messages:
        raise ValueError("messages must not be empty")
    stores_text = capture == "full"
    asked: set[str] = set()  # the ids of the tool calls asked for so far in the conversation
    for index, message in enumerate(messages):
        content = message.content
        # Every policy digests or sends the text as UTF-8: a lone surrogate has no UTF-8 form. A NUL only
        # matters where the text is stored.
        problem = text_problem(content) if stores_text else surrogate_problem(content)
        if problem is not None:
            where = "the ledger cannot store" if stores_text else "has no UTF-8 form"
            raise InvalidInputError(f"messages[{index}].content", f"{problem}, which {where}")
        if message.tool_calls or message.tool_call_id is not None or message.name is not None:
            _check_tool_fields(index, message, stores_text)
            _check_answers(index, message, asked)
    if not stores_text:
        return None
    record = payloads.input_values(input_entries(messages), capture, scrubber, digest_key)
    size = len(orjson.dumps(record["messages"]))
    if size > MAX_CAPTURED_BYTES:
        raise InvalidInputError(
            "messages",
            f"take {size} bytes as captured JSON; with capture 'full' one event holds at most {MAX_CAPTURED_BYTES}"
            " (use capture 'hash', which keeps a digest, or send less)",
        )
    return record
