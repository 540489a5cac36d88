"""Payloads as their JSON values, built straight from typed data without the payload models.

Each event type of ``model.EVENT_TYPES`` has one builder here, named after it (``attempt_failed`` for
``AttemptFailed``), taking its payload's fields, in order, as keyword arguments: written out by hand, so
that mypy checks the executor's calls field by field and sealing pays no generic loop. Each returns
exactly what ``SomePayload(...).model_dump(mode="json")`` returns for the same arguments (every field
present, ``None`` as null, tuples as lists, ``Number`` fields integral floats as ints), so the canonical
JSON, and every hash, is the same; tests/events/test_values.py holds them to it, and test_shape.py to
the declaration (a builder per event type, its parameters and keys its model's fields, the provider
fields made storable exactly where the model marks them ``ProviderSupplied``).
Sealing a payload given this way costs a fraction of validating and dumping the model (the writer's
sealing thread is the ingest bottleneck); ``EventDraft.payload`` builds the model from these values only
when someone reads it. ``record_input`` and ``record_output`` give the capture records as models, built
from the same values.

Every value is checked as the model would check it, cheaply: a value of the exact type passes (``type(v)
is str``), anything else goes through pydantic's validator for the field's type, so the values are what
the model would hold, or the same ``ValidationError`` is raised. The values therefore hold no float but
the ``Number`` fields', and ``number`` tells the sealing (``plain_floats``) whether orjson writes those
the way canonical JSON has them, so that it can skip the float scan of ``canonical_json``.

Values a provider supplied (ids, names, finish reasons, messages, token counts, ``Retry-After``: the
fields marked ``ProviderSupplied`` in ``model``) are made storable here whatever they are
(``storable.provider_*``: cut, bad characters replaced, out-of-range numbers unknown or clamped), because
these functions run when the event is sealed, in the writer, where an error would leave a hole in the
stream. What the caller supplied was checked at the door (``executor.admission``); an integer beyond
``MAX_EXACT_INTEGER`` still raises, for the store to refuse.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from functools import partial
from typing import Any
from uuid import UUID

import orjson
from pydantic import TypeAdapter

from llm_ledger.events.canonical import canonical_json, sha256_hex
from llm_ledger.events.capture import CAPTURE_POLICIES, CapturePolicy, InputRecord, OutputRecord
from llm_ledger.events.digests import DigestKey
from llm_ledger.events.model import Number, RequestParameters, TokenUsage
from llm_ledger.events.scrub import Scrubber
from llm_ledger.events.storable import (
    MAX_CAPTURED_BYTES,
    MAX_EXACT_INTEGER,
    MAX_MESSAGE_CHARS,
    provider_cost,
    provider_count,
    provider_seconds,
    provider_text,
)

log = logging.getLogger("llm_ledger.events")

JsonDict = dict[str, Any]


class JsonPayload(partial[JsonDict]):
    """A deferred payload: one of this module's builders and its arguments, called once, later, in the
    thread that seals the event.

    Its route: the executor makes one per event (``JsonPayload(values.attempt_failed, attempt=..., ...)``,
    or a function of its own that calls a builder) and hands it to ``StreamRecorder.record``, which drafts
    it (``StreamSealer.draft``, a few microseconds on the call path). The store's writer thread seals the
    draft: it calls the builder through ``plain_floats``, serializes the values it returns, and stores them
    (``chain.PayloadJson``); the payload model is built from the same values only if someone reads
    ``EventDraft.payload``. Why: validating and dumping a payload model measured 5-8 us an event, its
    builder 3 us; and work done off the LLM call measured three to four times cheaper than the same work
    interleaved with the provider SDK's (``chain.EventDraft``). A subclass, not a bare ``partial``, so
    that the sealing tells it from a builder of the payload model by its type (``type(build) is
    JsonPayload``), and a reader sees what it is."""

    __slots__ = ()


_MAX_EXACT = 2**53
# orjson writes a float in plain decimal with its shortest round-trip digits, as ECMAScript does, from 1e-5
# up to 1e16; integral floats below 2**53 are ints here. Other floats need canonical_json's rewriting.
_PLAIN_MIN = 1e-5
_str: TypeAdapter[str] = TypeAdapter(str)
_int: TypeAdapter[int] = TypeAdapter(int)
_bool: TypeAdapter[bool] = TypeAdapter(bool)
_number: TypeAdapter[float] = TypeAdapter(Number)
_OPERATIONS = frozenset({"generate", "generate_structured", "generate_stream"})
_NEXT_ACTIONS = frozenset({"retry", "fall_back", "fail"})
_CAPTURES = frozenset(CAPTURE_POLICIES)


class FloatRewriteFlag(threading.local):
    """Whether the payload being built holds a float that orjson writes otherwise than canonical JSON does
    (an exponent form: below ``1e-5`` or from ``2**53`` up), one flag per thread.

    Its route: ``plain_floats`` clears it and calls a ``JsonPayload``'s builder, in the sealing thread;
    ``number`` (every ``Number`` field's converter) sets it while the builder runs; ``plain_floats`` reads
    it as soon as the builder returns and tells the sealing (``chain.StreamSealer._seal``), which then lets
    orjson's sorted output stand as the canonical form instead of running ``canonical_json``'s float scan
    (measured 6.3 against 1.3 us for an ``AttemptSucceeded`` payload). A thread-local rather than a value
    returned by every converter and builder, which would cost each field a tuple; per thread because
    several threads may seal (a writer, a test reading an in-memory sink)."""

    rewrite: bool = False


_float_rewrite = FloatRewriteFlag()


def plain_floats(build: JsonPayload) -> tuple[JsonDict, bool]:
    """``build()``, and whether orjson writes every float of its values as canonical JSON has them
    (``FloatRewriteFlag``)."""
    flag = _float_rewrite
    flag.rewrite = False
    values = build()
    return values, not flag.rewrite


def number(value: float) -> int | float:
    """A ``Number`` field's JSON value: a finite float, integral ones as ints (``model._json_number``)."""
    kind = type(value)
    v = value if kind is float else float(value) if kind is int else _number.validate_python(value)
    if not math.isfinite(v):
        raise ValueError(f"{value!r} is not a finite number")
    if v.is_integer() and -_MAX_EXACT < v < _MAX_EXACT:
        return int(v)
    if not _PLAIN_MIN <= abs(v) < _MAX_EXACT:
        _float_rewrite.rewrite = True
    return v


def _optional_number(value: float | None) -> int | float | None:
    return None if value is None else number(value)


def text(value: str) -> str:
    return value if type(value) is str else _str.validate_python(value)


def _optional_text(value: str | None) -> str | None:
    return value if value is None or type(value) is str else _str.validate_python(value)


def integer(value: int) -> int:
    value = value if type(value) is int else _int.validate_python(value)
    if -MAX_EXACT_INTEGER <= value <= MAX_EXACT_INTEGER:
        return value
    raise ValueError(f"{value} is beyond the integers an event can hold exactly (|n| <= 2**53 - 1)")


def _optional_integer(value: int | None) -> int | None:
    return None if value is None else integer(value)


def _provider_message(value: str) -> str:
    return provider_text(text(value), MAX_MESSAGE_CHARS)


def _provider_text(value: str | None) -> str | None:
    return None if value is None else provider_text(text(value))


def _provider_seconds(value: float | None) -> int | float | None:
    return _optional_number(provider_seconds(None if value is None else float(value)))


def _one_of(value: str, allowed: frozenset[str], name: str) -> str:
    if type(value) is str and value in allowed:
        return value
    raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")


def usage_values(usage: TokenUsage | None) -> JsonDict | None:
    """A validated ``TokenUsage``'s values (its fields hold exact ints)."""
    if usage is None:
        return None
    if type(usage) is not TokenUsage:
        raise TypeError(f"usage must be a TokenUsage, not {type(usage).__name__}")
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    if any(provider_count(count) is None for count in counts):
        _unstorable("the token usage a provider reported:", usage)
        return None  # a count no event can hold exactly is no count: usage unknown
    values: JsonDict = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": provider_count(usage.cached_tokens),
        "reasoning_tokens": provider_count(usage.reasoning_tokens),
    }
    cost = provider_cost(usage.cost_usd)
    if cost is not None:  # an AddedLater field: left out while unknown (``later.py``)
        values["cost_usd"] = number(cost)
    cache_writes = provider_count(usage.cache_write_tokens)
    if cache_writes is not None:  # AddedLater too
        values["cache_write_tokens"] = cache_writes
    return values


_reported: set[str] = set()


def _unstorable(what: str, value: object) -> None:
    """Say once per kind that a provider-supplied value was not kept as it came (the event says so too:
    the field is null)."""
    if what not in _reported:
        _reported.add(what)
        log.warning("llm-ledger: not kept, since no event can hold it (logged once): %s %.200r", what, value)


def parameters_values(params: RequestParameters) -> JsonDict:
    """A validated ``RequestParameters``' values (its fields hold exact types)."""
    if type(params) is not RequestParameters:
        raise TypeError(f"parameters must be RequestParameters, not {type(params).__name__}")
    stop = params.stop_sequences
    return {
        "temperature": _optional_number(params.temperature),
        "max_tokens": params.max_tokens,
        "stop_sequences": None if stop is None else list(stop),
    }


def input_values(
    messages: Sequence[tuple[str, str] | tuple[str, str, JsonDict]],
    policy: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None = None,
) -> JsonDict:
    """What an event keeps of the messages sent (``InputRecord``'s JSON values): sizes always; a digest or
    the scrubbed text by policy.

    A message is ``(role, content)``, or ``(role, content, tool_fields)`` for one that carries tool fields:
    the JSON values of any of ``tool_calls`` (a list of ``{"id", "name", "arguments"}``, the arguments'
    JSON text), ``tool_call_id`` and ``name``, only those the message has. They are in the digest (the
    canonical JSON of each message's ``role``, ``content`` and those fields), the arguments' text counts in
    ``chars`` and ``bytes``, and capture ``full`` keeps them (arguments scrubbed, like the content); a
    message without them is digested exactly as before tools existed.

    ``digest_key``: the tenant's key (``events.digests``), which the executor always gives: the digest is
    then its HMAC-SHA-256 (``digest``, ``digest_alg``, ``key_id``) and ``sha256`` null. Without one, the
    plain SHA-256 in ``sha256``, as events before keyed digests hold it."""
    plain = [(text(m[0]), text(m[1])) for m in messages]
    extras = [_tool_fields(m[2]) if len(m) == 3 else None for m in messages]
    chars = sum(len(content) for _, content in plain)
    size = sum(len(content.encode("utf-8", "surrogatepass")) for _, content in plain)
    for fields in extras:
        if fields:
            for call in fields.get("tool_calls", ()):
                chars += len(call["arguments"])
                size += len(call["arguments"].encode("utf-8", "surrogatepass"))
    digest = None
    keyed: JsonDict | None = None
    captured = None
    if policy != "none":
        form = [
            {"content": content, "role": role, **(fields or {})}
            for (role, content), fields in zip(plain, extras, strict=True)
        ]
        data = canonical_json(form)
        if digest_key is None:
            digest = sha256_hex(data)
        else:
            keyed = digest_key.values(data)
    if policy == "full":
        captured = [
            {"role": role, "content": scrubber.scrub(content), **_captured_tool_fields(fields, scrubber)}
            for (role, content), fields in zip(plain, extras, strict=True)
        ]
    values: JsonDict = {
        "message_count": len(plain),
        "chars": chars,
        "bytes": size,
        "sha256": digest,
        "messages": captured,
    }
    if keyed is not None:  # AddedLater fields: left out of a record without a keyed digest (``later.py``)
        values.update(keyed)
    return values


def _tool_fields(fields: JsonDict) -> JsonDict:
    checked: JsonDict = {}
    calls = fields.get("tool_calls")
    if calls:
        checked["tool_calls"] = [
            {"id": text(c["id"]), "name": text(c["name"]), "arguments": text(c["arguments"])} for c in calls
        ]
    for key in ("tool_call_id", "name"):
        if fields.get(key) is not None:
            checked[key] = text(fields[key])
    return checked


def _captured_tool_fields(fields: JsonDict | None, scrubber: Scrubber) -> JsonDict:
    if not fields:
        return {}
    captured = dict(fields)
    if "tool_calls" in captured:
        captured["tool_calls"] = [
            {"id": c["id"], "name": c["name"], "arguments": scrubber.scrub(c["arguments"])}
            for c in captured["tool_calls"]
        ]
    return captured


def offered_tool_values(tools: Sequence[tuple[str, str]]) -> list[JsonDict]:
    """``OfferedTool``'s JSON values of ``(name, sha256)`` pairs (``ToolSpec.digest``: a lowercase hex
    SHA-256, refused otherwise, as the model refuses it)."""
    return [{"name": text(name), "sha256": _sha256(digest)} for name, digest in tools]


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(value: str) -> str:
    if type(value) is str and _SHA256.fullmatch(value):
        return value
    raise ValueError(f"a tool's digest must be a lowercase hex SHA-256, not {value!r}")


def tool_call_values(
    call_id: str,
    name: str,
    arguments: str,
    policy: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None = None,
) -> JsonDict:
    """``ToolCallRecord``'s JSON values: the provider's call id and the tool's name (made storable), and
    the arguments' text under the capture policy (as ``output_values`` keeps an answer)."""
    return {
        "id": provider_text(text(call_id)),
        "name": provider_text(text(name)),
        "arguments": output_values(arguments, policy, scrubber, digest_key),
    }


def output_values(
    output: str, policy: CapturePolicy, scrubber: Scrubber, digest_key: DigestKey | None = None
) -> JsonDict:
    """What an event keeps of a response text (``OutputRecord``'s JSON values): sizes always; a digest (over
    the text's UTF-8 bytes) or the scrubbed text by policy. The digest keyed under ``digest_key``, or plain
    without one, as ``input_values``'."""
    body = text(output)
    data = body.encode("utf-8", "surrogatepass")
    values: JsonDict = {
        "chars": len(body),
        "bytes": len(data),
        "sha256": sha256_hex(data) if policy != "none" and digest_key is None else None,
        "text": _captured_output(body, scrubber) if policy == "full" else None,
    }
    if policy != "none" and digest_key is not None:
        values.update(digest_key.values(data))
    return values


def _captured_output(body: str, scrubber: Scrubber) -> str | None:
    """The answer as capture ``full`` keeps it: scrubbed, with NULs and lone surrogates replaced; None (not
    kept, its digest and sizes still are) when it would not fit an event."""
    kept = provider_text(scrubber.scrub(body), None)
    if len(kept) * 6 > MAX_CAPTURED_BYTES and len(orjson.dumps(kept)) > MAX_CAPTURED_BYTES:
        _unstorable("the text of an answer too large to capture in full, characters:", len(kept))
        return None
    return kept


def record_input(
    messages: Sequence[tuple[str, str] | tuple[str, str, JsonDict]],
    policy: CapturePolicy,
    scrubber: Scrubber,
    digest_key: DigestKey | None = None,
) -> InputRecord:
    """Summarise ``(role, content)`` pairs; the digest is over their canonical JSON, so it can be recomputed."""
    return InputRecord.model_validate(input_values(messages, policy, scrubber, digest_key))


def record_output(
    output: str, policy: CapturePolicy, scrubber: Scrubber, digest_key: DigestKey | None = None
) -> OutputRecord:
    """Summarise a response text; the digest is over its UTF-8 bytes."""
    return OutputRecord.model_validate(output_values(output, policy, scrubber, digest_key))


def execution_started(
    *,
    operation: str,
    chain: Sequence[str],
    max_retries: int,
    timeout_seconds: float,
    attempt_timeout_seconds: float,
    parameters: RequestParameters,
    input: JsonDict,  # noqa: A002 - the field's name
    output_schema: str | None,
    capture: CapturePolicy,
    tools: Sequence[JsonDict] = (),
    tool_choice: str | None = None,
) -> JsonDict:
    """``tools``: ``offered_tool_values``; left out when empty, like ``tool_choice`` when None (``later.py``)."""
    values: JsonDict = {
        "operation": _one_of(operation, _OPERATIONS, "operation"),
        "chain": [text(model) for model in chain],
        "max_retries": integer(max_retries),
        "timeout_seconds": number(timeout_seconds),
        "attempt_timeout_seconds": number(attempt_timeout_seconds),
        "parameters": parameters_values(parameters),
        "input": input,
        "output_schema": _optional_text(output_schema),
        "capture": _one_of(capture, _CAPTURES, "capture"),
    }
    if tools:
        values["tools"] = list(tools)
    if tool_choice is not None:
        values["tool_choice"] = text(tool_choice)
    return values


def attempt_started(
    *, attempt: int, model: str, provider: str, fallback_index: int, retry: int, timeout_seconds: float
) -> JsonDict:
    attempt, fallback_index, retry = integer(attempt), integer(fallback_index), integer(retry)
    if attempt < 1 or fallback_index < 0 or retry < 0:
        raise ValueError(f"attempt {attempt}, fallback_index {fallback_index}, retry {retry}: out of range")
    return {
        "attempt": attempt,
        "model": text(model),
        "provider": text(provider),
        "fallback_index": fallback_index,
        "retry": retry,
        "timeout_seconds": number(timeout_seconds),
    }


def attempt_succeeded(
    *,
    attempt: int,
    model: str,
    provider: str,
    latency_ms: float,
    usage: TokenUsage | None,
    finish_reason: str | None,
    request_id: str | None,
    response_id: str | None,
    response_model: str | None,
    time_to_first_chunk_ms: float | None,
    output: JsonDict,
    tool_calls: Sequence[JsonDict] = (),
) -> JsonDict:
    """``tool_calls``: ``tool_call_values`` of each call the answer asked for; left out when empty."""
    values: JsonDict = {
        "attempt": integer(attempt),
        "model": text(model),
        "provider": text(provider),
        "latency_ms": number(latency_ms),
        "usage": usage_values(usage),
        "finish_reason": _provider_text(finish_reason),
        "request_id": _provider_text(request_id),
        "response_id": _provider_text(response_id),
        "response_model": _provider_text(response_model),
        "time_to_first_chunk_ms": _optional_number(time_to_first_chunk_ms),
        "output": output,
    }
    if tool_calls:
        values["tool_calls"] = list(tool_calls)
    return values


def attempt_failed(
    *,
    attempt: int,
    model: str,
    provider: str,
    latency_ms: float,
    error_type: str,
    error_class: str,
    message: str,
    status_code: int | None,
    request_id: str | None,
    retry_after_seconds: float | None,
    next_action: str,
    backoff_seconds: float | None,
    chunks_delivered: int,
) -> JsonDict:
    return {
        "attempt": integer(attempt),
        "model": text(model),
        "provider": text(provider),
        "latency_ms": number(latency_ms),
        "error_type": text(error_type),
        "error_class": text(error_class),
        "message": _provider_message(message),
        "status_code": _optional_integer(status_code),
        "request_id": _provider_text(request_id),
        "retry_after_seconds": _provider_seconds(retry_after_seconds),
        "next_action": _one_of(next_action, _NEXT_ACTIONS, "next_action"),
        "backoff_seconds": _optional_number(backoff_seconds),
        "chunks_delivered": integer(chunks_delivered),
    }


def fallback_triggered(*, from_model: str, to_model: str, from_index: int, to_index: int, reason: str) -> JsonDict:
    return {
        "from_model": text(from_model),
        "to_model": text(to_model),
        "from_index": integer(from_index),
        "to_index": integer(to_index),
        "reason": text(reason),
    }


def execution_succeeded(
    *,
    model: str,
    provider: str,
    attempts: int,
    fallback_used: bool,
    latency_ms: float,
    usage: TokenUsage | None,
    finish_reason: str | None,
    output: JsonDict,
) -> JsonDict:
    return {
        "model": text(model),
        "provider": text(provider),
        "attempts": integer(attempts),
        "fallback_used": fallback_used if type(fallback_used) is bool else _bool.validate_python(fallback_used),
        "latency_ms": number(latency_ms),
        "usage": usage_values(usage),
        "finish_reason": _provider_text(finish_reason),
        "output": output,
    }


def execution_failed(
    *,
    error_type: str,
    message: str,
    attempts: int,
    latency_ms: float,
    last_model: str | None,
    chunks_delivered: int,
) -> JsonDict:
    return {
        "error_type": text(error_type),
        "message": _provider_message(message),
        "attempts": integer(attempts),
        "latency_ms": number(latency_ms),
        "last_model": _optional_text(last_model),
        "chunks_delivered": integer(chunks_delivered),
    }


def tool_call_started(
    *,
    tool_name: str,
    tool_call_id: str | None,
    execution_id: UUID | None,
    arguments: JsonDict,
    capture: CapturePolicy,
) -> JsonDict:
    """``arguments``: ``output_values`` of the arguments' JSON text."""
    return {
        "tool_name": text(tool_name),
        "tool_call_id": _provider_text(tool_call_id),
        "execution_id": None if execution_id is None else str(_uuid(execution_id)),
        "arguments": arguments,
        "capture": _one_of(capture, _CAPTURES, "capture"),
    }


def tool_call_succeeded(*, tool_name: str, latency_ms: float, result: JsonDict) -> JsonDict:
    """``result``: ``output_values`` of the tool's result as text."""
    return {"tool_name": text(tool_name), "latency_ms": number(latency_ms), "result": result}


def tool_call_failed(
    *,
    tool_name: str,
    latency_ms: float,
    error_type: str,
    error_class: str,
    message: str,
    error_text: JsonDict | None = None,
) -> JsonDict:
    """``error_text``: ``output_values`` of the exception's text; left out when None (``later.py``)."""
    values: JsonDict = {
        "tool_name": text(tool_name),
        "latency_ms": number(latency_ms),
        "error_type": text(error_type),
        "error_class": text(error_class),
        "message": _provider_message(message),
    }
    if error_text is not None:
        values["error_text"] = error_text
    return values


def _uuid(value: UUID) -> UUID:
    return value if type(value) is UUID else _uuid_adapter.validate_python(value)


_uuid_adapter: TypeAdapter[UUID] = TypeAdapter(UUID)


def given(values: JsonDict, plain: bool) -> JsonDict:
    """The builder of a payload whose JSON values were built in another process (an application handing its
    drafts to its writer process): ``values`` as they were, and ``plain`` as ``plain_floats`` found it
    there, so that the sealing here writes the same canonical JSON (and hash)."""
    if not plain:
        _float_rewrite.rewrite = True
    return values


def refused(reason: str) -> JsonDict:
    """The builder of a payload whose values could not be built or sent by the application: it raises as
    the builder did there, so that the draft is set aside here and the chain goes on as it would there."""
    raise ValueError(reason)
