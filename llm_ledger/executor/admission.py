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

from llm_ledger.events import CapturePolicy, RequestParameters, Scrubber
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
from llm_ledger.executor.types import LLMMessage

MAX_STOP_SEQUENCES = 16
MAX_CHAIN_MODELS = 16
"""A chain's model strings all go into its ``ExecutionStarted`` event: 16 at their longest, like 16 stop
sequences, stay within ``RESERVED_EVENT_BYTES`` (a chain of 2,000 long ones made an event over 1 MiB)."""


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
    for name in ("tenant_id", "agent_id", "session_id", "turn_id", "step"):
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


def check_messages(messages: Sequence[LLMMessage], capture: CapturePolicy, scrubber: Scrubber) -> JsonDict | None:
    """Refuse messages the ledger cannot record under ``capture``. Under ``full``, returns the input record
    (scrubbed text included) that the ``ExecutionStarted`` event will hold, measured here."""
    if not messages:
        raise ValueError("messages must not be empty")
    stores_text = capture == "full"
    for index, message in enumerate(messages):
        content = message.content
        # Every policy digests or sends the text as UTF-8: a lone surrogate has no UTF-8 form. A NUL only
        # matters where the text is stored.
        problem = text_problem(content) if stores_text else surrogate_problem(content)
        if problem is not None:
            where = "the ledger cannot store" if stores_text else "has no UTF-8 form"
            raise InvalidInputError(f"messages[{index}].content", f"{problem}, which {where}")
    if not stores_text:
        return None
    record = payloads.input_values([(m.role, m.content) for m in messages], capture, scrubber)
    size = len(orjson.dumps(record["messages"]))
    if size > MAX_CAPTURED_BYTES:
        raise InvalidInputError(
            "messages",
            f"take {size} bytes as captured JSON; with capture 'full' one event holds at most {MAX_CAPTURED_BYTES}"
            " (use capture 'hash', which keeps a digest, or send less)",
        )
    return record
