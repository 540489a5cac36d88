"""Fake LLM provider servers for tests and benchmarks (stdlib only).

One :class:`FakeProviderServer` speaks four wire dialects on 127.0.0.1, chosen by the request path:

* ``POST /v1/chat/completions``: OpenAI. ``OpenAIChat(base_url=server.openai_base_url)``
  (``.../v1``: the openai SDK appends ``/chat/completions``). Any other path ending in
  ``/chat/completions`` gets this dialect too.
* ``POST /api/v1/chat/completions``: OpenRouter (``gen-`` ids, a ``provider`` field, integer error
  codes). ``OpenRouter(base_url=server.openrouter_base_url)`` (``.../api/v1``, like the real
  ``https://openrouter.ai/api/v1``).
* ``POST /openai/v1/chat/completions``: Groq (``x_groq`` with the stream usage, raw timing fields).
  ``Groq(base_url=server.groq_base_url)``: the bare origin, the groq SDK appends
  ``/openai/v1/chat/completions`` itself.
* ``POST /v1/messages``: Anthropic Messages. ``Claude(client_params={"base_url":
  server.anthropic_base_url})``: the bare origin, the anthropic SDK appends ``/v1/messages``; ``Claude``
  has no ``base_url`` field.
* ``GET /health``: ``{"ok":true}``, for readiness checks.

Behaviour is scripted per model id (the ``model`` field of the request body)::

    with FakeProviderServer() as server:
        server.script("gpt-a", RateLimited(retry_after=0), Reply(text="second call works"))
        server.default("gpt-b", Reply.echo())
        ...
        assert server.requests_for("gpt-a")[0].stream is False

Each request consumes the next scripted behaviour of its model; when the model's queue is empty the
model default applies (``server.default(model, ...)``), then the global default
(``server.default(None, ...)``; initially ``Reply()``).

Echo replies (``Reply.echo()``) answer with a compact JSON object (sorted keys) describing the request::

    {"last_user":"hi","max_tokens":1024,"model":"m","stream":false,"temperature":0.3,"top_p":null}

``max_tokens`` falls back to ``max_completion_tokens`` when only that is sent; ``last_user`` is the text
of the last ``user`` message (text parts joined with ``""``). Use :func:`parse_echo` to decode it.

Tool calls (``ToolCalls``) are answered in each dialect's own form, streamed or not: parallel calls,
text before the calls, malformed arguments. A request whose tools or tool conversation the real API would
refuse (an unanswered call, a result without its call, a ``tool`` role sent to Anthropic, ...) gets that
API's 400 instead of its scripted behaviour (``RecordedRequest.rejected``; see
:mod:`tests.fakes.tool_conversation`). ``RecordedRequest.tool_names``, ``tool_choice``, ``tool_calls_sent``
and ``tool_results`` read a recorded request's tools the same way for every dialect.

Token usage: when ``input_tokens`` / ``output_tokens`` are not given, ``input_tokens`` is
``max(1, characters of all message/system text // 4)`` and ``output_tokens`` is
``max(1, len(reply_text.split()))``.

Run standalone (for benchmarks): ``python -m tests.fakes.providers --port 0`` prints ``PORT=<n>`` on one
line, then serves until SIGINT/SIGTERM. ``--rate-limit-model NAME`` (repeatable) makes every request for
model NAME answer 429 with ``Retry-After: 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Self, TypeAlias

from tests.fakes.tool_conversation import (
    SentToolCall,
    SentToolResult,
    conversation_error,
    offered_tool_names,
    sent_tool_calls,
    sent_tool_results,
)

__all__ = [
    "BadRequest",
    "Behaviour",
    "BrokenStream",
    "ContentFiltered",
    "ContextOverflow",
    "Disconnect",
    "FakeProviderServer",
    "NotFound",
    "Overloaded",
    "RateLimited",
    "RecordedRequest",
    "Reply",
    "SentToolCall",
    "SentToolResult",
    "ServerError",
    "Stall",
    "ToolCalls",
    "Unauthorized",
    "parse_echo",
    "refused_base_url",
    "unused_port",
]

Provider = Literal["openai", "openrouter", "groq", "anthropic"]

# --------------------------------------------------------------------------------------------------------
# Behaviours
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A normal 200 answer (JSON, or SSE when the request has ``stream: true``).

    ``text`` may contain ``{model}``, replaced by the requested model id. ``finish_reason`` uses OpenAI
    names and is mapped for Anthropic (stop->end_turn, length->max_tokens, content_filter->refusal,
    tool_calls->tool_use; other values pass through unchanged). ``delay`` is slept before the response
    headers are sent; ``chunk_delay`` between two streamed content chunks (not before the first).
    ``chunks`` is the number of content chunks a streamed reply is split into (fewer if the text is
    shorter). ``request_id``, ``response_id`` and ``response_model`` replace the ids and the model name the
    answer reports (``{api_key}`` in them, and in ``finish_reason``, is replaced by the key the request
    carried: a provider echoing it). ``input_tokens``/``output_tokens`` are sent as given, however large.
    ``cached_tokens`` and ``reasoning_tokens`` go in OpenAI's and OpenRouter's usage details (of the input and
    output tokens: counted in them, as OpenAI counts them), ``cache_write_tokens`` too (as OpenRouter reports
    them), ``cost`` as OpenRouter's ``usage.cost`` (US dollars; the other dialects report no cost). Anthropic
    reports ``cached_tokens`` as ``cache_read_input_tokens`` and ``cache_write_tokens`` as
    ``cache_creation_input_tokens``, and as it does, leaves both out of its ``input_tokens``: ``input_tokens``
    here is always every input token, however the dialect splits them.
    """

    text: str = "fake reply from {model}"
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    finish_reason: str = "stop"
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunks: int = 3
    echo_request: bool = False
    request_id: str | None = None
    response_id: str | None = None
    response_model: str | None = None

    @classmethod
    def echo(cls, **kwargs: Any) -> Reply:
        """A reply whose text is the JSON request summary described in the module docstring."""
        return cls(echo_request=True, **kwargs)


ToolArguments: TypeAlias = Mapping[str, Any] | str


@dataclass(frozen=True, init=False)
class ToolCalls:
    """A 200 answer that asks for tool calls (JSON, or SSE when the request has ``stream: true``)::

        ToolCalls([("lookup_order", {"order_id": "A1"}), ("refund", {"order_id": "A1"})], text="Let me check.")

    Each call is ``(tool name, arguments)``: a mapping is sent as its compact JSON text, a ``str`` verbatim
    (so one call's arguments can be broken on purpose). ``malformed`` breaks every call's arguments
    (``{order_id":"A1"}``: not JSON, nor the start of any). ``text`` is answered before the calls.

    On the wire, as each API does it: OpenAI-style ``message.tool_calls`` with ``finish_reason:
    "tool_calls"``; streamed, one ``delta.tool_calls`` chunk per call carrying ``index``, ``id``, ``type``
    and the name, then the arguments split over ``argument_chunks`` chunks that carry only ``index`` and
    a fragment. Anthropic: ``tool_use`` content blocks with ``stop_reason: "tool_use"``; streamed,
    ``content_block_start`` (tool_use, empty input), ``input_json_delta`` fragments, ``content_block_stop``.
    Anthropic's non-streamed ``input`` is an object: malformed arguments are sent there as a JSON string
    (what a broken upstream would give). ``ids`` replaces the generated call ids (``call_...`` /
    ``toolu_...``). ``delay``, ``chunk_delay``, token counts and ids as for :class:`Reply`.
    """

    calls: tuple[tuple[str, ToolArguments], ...]
    text: str | None
    malformed: bool
    ids: tuple[str, ...] | None
    argument_chunks: int
    input_tokens: int | None
    output_tokens: int | None
    delay: float
    chunk_delay: float
    request_id: str | None
    response_id: str | None

    def __init__(
        self,
        calls: Sequence[tuple[str, ToolArguments]] = (("lookup_order", {"order_id": "A1"}),),
        *,
        text: str | None = None,
        malformed: bool = False,
        ids: Sequence[str] | None = None,
        argument_chunks: int = 3,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        request_id: str | None = None,
        response_id: str | None = None,
    ) -> None:
        if not calls:
            raise ValueError("ToolCalls needs at least one (name, arguments) call")
        if ids is not None and len(ids) != len(calls):
            raise ValueError(f"ToolCalls got {len(ids)} ids for {len(calls)} calls")
        values = {
            "calls": tuple((str(name), arguments) for name, arguments in calls),
            "text": text,
            "malformed": malformed,
            "ids": tuple(ids) if ids is not None else None,
            "argument_chunks": max(1, argument_chunks),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "delay": delay,
            "chunk_delay": chunk_delay,
            "request_id": request_id,
            "response_id": response_id,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def arguments_text(self, index: int) -> str:
        """The arguments of call ``index`` as they go on the wire (OpenAI-style, and Anthropic streams)."""
        arguments = self.calls[index][1]
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
        if not self.malformed:
            return text
        # Not a prefix of any JSON text either, so that even a parser that accepts incomplete JSON (the
        # anthropic SDK's, on a stream) rejects it: the opening quote of the first key is dropped.
        return "{" + text[2:] if text.startswith('{"') else "{]"

    def anthropic_input(self, index: int) -> Any:
        """The ``input`` of a non-streamed Anthropic ``tool_use`` block: the arguments' object, or their
        text when that is not a JSON object (malformed)."""
        text = self.arguments_text(index)
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, dict) else text


@dataclass(frozen=True)
class RateLimited:
    """429 with ``Retry-After`` (seconds) and ``retry-after-ms`` headers; ``None`` omits both.
    ``retry_after_header`` sends that text as the only ``Retry-After`` header instead (``"inf"``, ``"nan"``,
    ``"-5"``, ``"1e400"``: what a broken provider may send)."""

    retry_after: float | None = 1.0
    message: str | None = None
    retry_after_header: str | None = None


@dataclass(frozen=True)
class Overloaded:
    """Anthropic: 529 ``overloaded_error``. OpenAI-style dialects: 503 "engine overloaded"."""

    retry_after: float | None = None


@dataclass(frozen=True)
class Unauthorized:
    """401. With ``echo_key`` the error message contains the received API key verbatim
    (``Authorization: Bearer ...`` or ``x-api-key``); otherwise it is masked like OpenAI does."""

    echo_key: bool = True


@dataclass(frozen=True)
class ServerError:
    """5xx (500, 502, 503, ...) with a provider-shaped JSON error body."""

    status: int = 500
    message: str | None = None


@dataclass(frozen=True)
class ContextOverflow:
    """400 with each API's real context-length wording (OpenAI code ``context_length_exceeded``;
    Anthropic ``invalid_request_error`` "prompt is too long: N tokens > M maximum")."""

    limit: int = 128000
    requested: int = 150000


@dataclass(frozen=True)
class BadRequest:
    """400 invalid request with ``message``."""

    message: str = "Invalid request."
    param: str | None = None


@dataclass(frozen=True)
class NotFound:
    """404 model not found."""


@dataclass(frozen=True)
class ContentFiltered:
    """200 cut short by the provider's filter: OpenAI-style ``finish_reason: content_filter``
    (content ``null`` unless ``partial_text``), Anthropic ``stop_reason: refusal``."""

    partial_text: str = ""


@dataclass(frozen=True)
class Stall:
    """Read the request, send nothing for ``seconds``, then close the connection."""

    seconds: float = 1.5


@dataclass(frozen=True)
class BrokenStream:
    """Streaming: send the preamble and ``after_chunks`` content chunks, then drop the connection (no
    ``[DONE]`` / ``message_stop``). Non-streaming: send headers and half the body, then close."""

    after_chunks: int = 2
    text: str = "this stream will break before it ends properly"


@dataclass(frozen=True)
class Disconnect:
    """Close the connection after reading the request, without any response."""


@dataclass(frozen=True)
class ToolRoundTrip:
    """One tool round trip per conversation: ``ToolCalls(calls)`` while the request carries no tool
    result, then ``Reply(text)``, whatever order concurrent conversations arrive in (a benchmark's Agent
    runs, where a per-model script would hand one run's answer to another)."""

    calls: tuple[tuple[str, ToolArguments], ...] = (("lookup_order", {"order_id": "A1"}),)
    text: str = "A1 is shipped."

    def resolve(self, provider: str, body: dict[str, Any]) -> Reply | ToolCalls:
        if sent_tool_results(provider, body):
            return Reply(text=self.text)
        return ToolCalls(self.calls)


Behaviour: TypeAlias = (
    Reply
    | ToolCalls
    | ToolRoundTrip
    | RateLimited
    | Overloaded
    | Unauthorized
    | ServerError
    | ContextOverflow
    | BadRequest
    | NotFound
    | ContentFiltered
    | Stall
    | BrokenStream
    | Disconnect
)


@dataclass(frozen=True)
class RecordedRequest:
    """A request as received. ``headers`` keys are lower-case; ``body`` is the decoded JSON body.

    ``rejected`` is the message of the 400 the fake answered instead of the scripted behaviour (which then
    stays queued) because the request broke a tool-conversation rule of its API (see
    :mod:`tests.fakes.tool_conversation`); ``None`` for a request the API would accept."""

    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    stream: bool
    provider: str = "openai"
    api_key: str | None = None
    received_at: float = field(default_factory=time.monotonic)
    rejected: str | None = None
    request_id: str | None = None
    """The request id the answer carried (``x-request-id``; Anthropic ``request-id``): what a client
    records of this request. ``None`` when no answer was sent (``Stall``, ``Disconnect``)."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` as sent (Anthropic's system prompt is in ``body["system"]``)."""
        messages = self.body.get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools offered, in order, whatever the dialect."""
        return offered_tool_names(self.provider, self.body)

    @property
    def tool_choice(self) -> Any:
        """``tool_choice`` as sent (a word or an object; ``None`` when absent)."""
        return self.body.get("tool_choice")

    @property
    def tool_calls_sent(self) -> list[SentToolCall]:
        """The calls carried by the assistant messages sent back, in order."""
        return sent_tool_calls(self.provider, self.body)

    @property
    def tool_results(self) -> list[SentToolResult]:
        """The tool results sent: ``tool`` messages (OpenAI-style) or ``tool_result`` blocks (Anthropic)."""
        return sent_tool_results(self.provider, self.body)


def parse_echo(text: object) -> dict[str, Any]:
    """Decode the text of a ``Reply.echo()`` answer (typically ``ModelResponse.content``)."""
    if not isinstance(text, str):
        raise TypeError(f"not an echo payload: {text!r}")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"not an echo payload: {text!r}")
    return value


def unused_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` on which nothing listens (bound then released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def refused_base_url(path: str = "/v1") -> str:
    """A base URL whose connections are refused, e.g. ``http://127.0.0.1:54321/v1``."""
    return f"http://127.0.0.1:{unused_port()}{path}"


# --------------------------------------------------------------------------------------------------------
# Wire formats
# --------------------------------------------------------------------------------------------------------

_REASONS: Final[dict[int, str]] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

_TO_ANTHROPIC_STOP: Final[dict[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}
_TO_OPENAI_FINISH: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(obj: Any) -> str:
    # A lone surrogate (which a broken provider may send) is written as its JSON escape: it has no UTF-8.
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _http_chunk(frame: str) -> bytes:
    raw = frame.encode()
    return b"%x\r\n%s\r\n" % (len(raw), raw)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def _last_user_text(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return None


def _estimate_input_tokens(body: dict[str, Any]) -> int:
    chars = len(_text_of(body.get("system")))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                chars += len(_text_of(message.get("content")))
    return max(1, chars // 4)


def _echo_text(body: dict[str, Any]) -> str:
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    payload = {
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_tokens": max_tokens,
        "last_user": _last_user_text(body),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def _split(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` non-empty pieces (at least one piece, possibly empty)."""
    if n <= 1 or len(text) <= 1:
        return [text]
    n = min(n, len(text))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# uuid4() reads os.urandom, which costs ~40 us per call on some VMs: ids are a random per-process prefix
# plus a counter instead (unique, and cheap on the hot path).
_ID_PREFIX: Final[str] = uuid.uuid4().hex[:12]
_ID_COUNTER: Final[itertools.count[int]] = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def _mask_key(key: str) -> str:
    return key[:3] + "*" * 8 + key[-4:] if len(key) > 8 else "*" * len(key)


@dataclass
class _Ctx:
    provider: Provider
    model: str
    body: dict[str, Any]
    stream: bool
    api_key: str | None
    request_id: str
    response_id: str | None = None
    response_model: str | None = None
    usage_details: Reply | None = None
    """The reply whose cached and reasoning tokens and cost the usage reports (none: zeros)."""

    @property
    def request_id_header(self) -> str:
        return "request-id" if self.provider == "anthropic" else "x-request-id"


@dataclass(frozen=True)
class _FakeToolCall:
    """One call of a :class:`ToolCalls` answer, as it goes on the wire."""

    id: str
    name: str
    arguments: str
    """The arguments' text (OpenAI-style ``function.arguments``, Anthropic's streamed ``partial_json``)."""
    anthropic_input: Any
    """Anthropic's non-streamed ``input``."""
    fragments: list[str]
    """``arguments`` split for a stream (at least one fragment, possibly empty)."""


def _fake_tool_calls(ctx: _Ctx, behaviour: ToolCalls) -> list[_FakeToolCall]:
    prefix = "toolu_01" if ctx.provider == "anthropic" else "call_"
    calls: list[_FakeToolCall] = []
    for index, (name, _arguments) in enumerate(behaviour.calls):
        call_id = behaviour.ids[index] if behaviour.ids is not None else _new_id(prefix)
        text = behaviour.arguments_text(index)
        calls.append(
            _FakeToolCall(
                id=call_id,
                name=name,
                arguments=text,
                anthropic_input=behaviour.anthropic_input(index),
                fragments=_split(text, behaviour.argument_chunks),
            )
        )
    return calls


@dataclass
class _Answer:
    """A fully built non-streaming HTTP answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


# ---- OpenAI-style (openai / openrouter / groq) ---------------------------------------------------------


def _openai_usage(ctx: _Ctx, prompt: int, completion: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if ctx.provider == "groq":
        usage.update(queue_time=0.01, prompt_time=0.002, completion_time=0.004, total_time=0.006)
    else:
        details = ctx.usage_details or Reply()
        usage["prompt_tokens_details"] = {
            "cached_tokens": details.cached_tokens,
            "cache_write_tokens": details.cache_write_tokens,
            "audio_tokens": 0,
        }
        usage["completion_tokens_details"] = {
            "reasoning_tokens": details.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    if ctx.provider == "openrouter":
        usage["cost"] = (ctx.usage_details or Reply()).cost
    return usage


def _openai_completion_id(ctx: _Ctx) -> str:
    if ctx.response_id is not None:
        return ctx.response_id
    if ctx.provider == "openrouter":
        return _new_id(f"gen-{int(time.time())}-")
    return _new_id("chatcmpl-")


def _openai_envelope(ctx: _Ctx, completion_id: str, obj: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": completion_id,
        "object": obj,
        "created": int(time.time()),
        "model": ctx.response_model or ctx.model,
    }
    if ctx.provider == "openrouter":
        env["provider"] = "FakeProvider"
    else:
        env["system_fingerprint"] = "fp_fake0001"
    if ctx.provider == "openai":
        env["service_tier"] = "default"
    return env


def _openai_json_reply(
    ctx: _Ctx,
    text: str | None,
    finish_reason: str,
    prompt: int,
    completion: int,
    tool_calls: list[_FakeToolCall] | None = None,
) -> dict[str, Any]:
    body = _openai_envelope(ctx, _openai_completion_id(ctx), "chat.completion")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if ctx.provider == "openai":
        message.update(refusal=None, annotations=[])
    if tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in tool_calls
        ]
    body["choices"] = [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}]
    body["usage"] = _openai_usage(ctx, prompt, completion)
    if ctx.provider == "groq":
        body["x_groq"] = {"id": ctx.request_id}
    return body


class _Frames(NamedTuple):
    """The SSE frames of one streamed answer (``tail`` is empty for a stream that never finishes)."""

    preamble: list[str]
    content: list[str]
    tail: list[str]


def _openai_stream_events(
    ctx: _Ctx,
    pieces: list[str],
    finish_reason: str | None,
    prompt: int,
    completion: int,
    tool_calls: list[_FakeToolCall] | None = None,
) -> _Frames:
    completion_id = _openai_completion_id(ctx)
    stream_options = ctx.body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None, extra: dict[str, Any] | None = None) -> str:
        data = _openai_envelope(ctx, completion_id, "chat.completion.chunk")
        data["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if include_usage:
            data["usage"] = None
        if extra:
            data.update(extra)
        return f"data: {_dumps(data)}\n\n"

    head: list[str] = []
    if ctx.provider == "openrouter":
        head.append(": OPENROUTER PROCESSING\n\n")  # OpenRouter sends SSE comments while it waits
    first_delta: dict[str, Any] = {"role": "assistant", "content": ""}
    if ctx.provider == "openai":
        first_delta["refusal"] = None
    head.append(chunk(first_delta, None, {"x_groq": {"id": ctx.request_id}} if ctx.provider == "groq" else None))
    content = [chunk({"content": piece}, None) for piece in pieces if piece]
    for index, call in enumerate(tool_calls or ()):
        # As OpenAI streams a call: the first delta names it (index, id, type, name, no arguments yet), the
        # following ones carry only the index and a fragment of the arguments' text.
        opening = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        content.append(chunk({"tool_calls": [opening]}, None))
        content.extend(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, None)
            for fragment in call.fragments
            if fragment
        )
    tail: list[str] = []
    if finish_reason is not None:
        extra: dict[str, Any] | None = None
        if ctx.provider == "groq":
            extra = {"x_groq": {"id": ctx.request_id, "usage": _openai_usage(ctx, prompt, completion)}}
        elif ctx.provider == "openrouter" and not include_usage:
            extra = {"usage": _openai_usage(ctx, prompt, completion)}
        tail.append(chunk({}, finish_reason, extra))
        if include_usage:
            data = _openai_envelope(ctx, completion_id, "chat.completion.chunk")
            data["choices"] = []
            data["usage"] = _openai_usage(ctx, prompt, completion)
            tail.append(f"data: {_dumps(data)}\n\n")
        tail.append("data: [DONE]\n\n")
    return _Frames(head, content, tail)


def _openai_error(
    ctx: _Ctx, status: int, message: str, type_: str | None, code: str | None, param: str | None = None
) -> dict[str, Any]:
    if ctx.provider == "openrouter":
        return {"error": {"message": message, "code": status, "metadata": {"provider_name": "FakeProvider"}}}
    if ctx.provider == "groq":
        err: dict[str, Any] = {"message": message, "type": type_}
        if param is not None:
            err["param"] = param
        if code is not None:
            err["code"] = code
        return {"error": err}
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---- Anthropic -----------------------------------------------------------------------------------------


def _anthropic_usage(ctx: _Ctx, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    details = ctx.usage_details or Reply()
    return {
        "input_tokens": max(input_tokens - details.cached_tokens - details.cache_write_tokens, 0),
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": details.cache_write_tokens,
        "cache_read_input_tokens": details.cached_tokens,
        "service_tier": "standard",
    }


def _anthropic_json_reply(
    ctx: _Ctx,
    text: str,
    stop_reason: str,
    prompt: int,
    completion: int,
    tool_calls: list[_FakeToolCall] | None = None,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.anthropic_input}
        for call in tool_calls or ()
    )
    return {
        "id": ctx.response_id or _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": ctx.response_model or ctx.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(ctx, prompt, completion),
    }


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {_dumps(data)}\n\n"


def _anthropic_stream_events(
    ctx: _Ctx,
    pieces: list[str],
    stop_reason: str | None,
    prompt: int,
    completion: int,
    tool_calls: list[_FakeToolCall] | None = None,
) -> _Frames:
    message: dict[str, Any] = {
        "id": ctx.response_id or _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": ctx.response_model or ctx.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(ctx, prompt, 1),
    }
    has_text = any(pieces)
    head = [_sse("message_start", {"type": "message_start", "message": message})]
    if has_text:
        head.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
    head.append(_sse("ping", {"type": "ping"}))
    content = [
        _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
        )
        for piece in pieces
        if piece
    ]
    tail: list[str] = []
    if tool_calls:
        # The text block closes before the first tool_use block opens; each tool_use block starts with an
        # empty input, receives its arguments as input_json_delta fragments and is complete at its stop.
        if has_text:
            content.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        for offset, call in enumerate(tool_calls):
            index = offset + (1 if has_text else 0)
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            content.append(
                _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            )
            content.extend(
                _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": fragment},
                    },
                )
                for fragment in ["", *call.fragments]
            )
            content.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    if stop_reason is not None:
        if has_text and not tool_calls:
            tail.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        tail.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": completion},
                },
            )
        )
        tail.append(_sse("message_stop", {"type": "message_stop"}))
    return _Frames(head, content, tail)


def _anthropic_error(ctx: _Ctx, type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": ctx.request_id}


# ---- error answers -------------------------------------------------------------------------------------


def _retry_headers(retry_after: float | None) -> dict[str, str]:
    if retry_after is None:
        return {}
    return {"retry-after": _fmt_seconds(retry_after), "retry-after-ms": str(int(retry_after * 1000))}


def _error_answer(ctx: _Ctx, behaviour: Behaviour) -> _Answer:
    anthropic = ctx.provider == "anthropic"
    if isinstance(behaviour, RateLimited):
        headers = (
            {"retry-after": behaviour.retry_after_header}
            if behaviour.retry_after_header is not None
            else _retry_headers(behaviour.retry_after)
        )
        if anthropic:
            headers.update(
                {
                    "anthropic-ratelimit-requests-limit": "50",
                    "anthropic-ratelimit-requests-remaining": "0",
                }
            )
            msg = behaviour.message or (
                "This request would exceed the rate limit for your organization of 50 requests per minute. "
                "For details, refer to: https://docs.claude.com/en/api/rate-limits."
            )
            return _Answer(429, _anthropic_error(ctx, "rate_limit_error", msg), headers)
        headers.update({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0"})
        if ctx.provider == "openrouter":
            msg = behaviour.message or "Rate limit exceeded: free-models-per-min."
        elif ctx.provider == "groq":
            msg = behaviour.message or (
                f"Rate limit reached for model `{ctx.model}` in organization `org_fake` service tier "
                "`on_demand` on tokens per minute (TPM): Limit 6000, Used 5900, Requested 300. "
                "Please try again in 2s."
            )
        else:
            msg = behaviour.message or (
                f"Rate limit reached for {ctx.model} in organization org-fake on tokens per min (TPM): "
                "Limit 30000, Used 29500, Requested 1200. Please try again in 1.4s. "
                "Visit https://platform.openai.com/account/rate-limits to learn more."
            )
        return _Answer(429, _openai_error(ctx, 429, msg, "tokens", "rate_limit_exceeded"), headers)

    if isinstance(behaviour, Overloaded):
        headers = _retry_headers(behaviour.retry_after)
        if anthropic:
            return _Answer(529, _anthropic_error(ctx, "overloaded_error", "Overloaded"), headers)
        msg = "The engine is currently overloaded, please try again later."
        return _Answer(503, _openai_error(ctx, 503, msg, "server_error", None), headers)

    if isinstance(behaviour, Unauthorized):
        key = ctx.api_key or ""
        shown = key if behaviour.echo_key else _mask_key(key)
        if anthropic:
            return _Answer(401, _anthropic_error(ctx, "authentication_error", f"invalid x-api-key: {shown}"))
        if ctx.provider == "groq":
            msg = f"Invalid API Key: {shown}"
        else:
            msg = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return _Answer(401, _openai_error(ctx, 401, msg, "invalid_request_error", "invalid_api_key"))

    if isinstance(behaviour, ServerError):
        status = behaviour.status
        if anthropic:
            msg = behaviour.message or ("Internal server error" if status == 500 else f"Upstream error {status}")
            return _Answer(status, _anthropic_error(ctx, "api_error", msg))
        msg = behaviour.message or (
            "The server had an error while processing your request. Sorry about that!"
            if status == 500
            else f"Bad gateway or service unavailable ({status})."
        )
        return _Answer(status, _openai_error(ctx, status, msg, "server_error", None))

    if isinstance(behaviour, ContextOverflow):
        if anthropic:
            msg = f"prompt is too long: {behaviour.requested} tokens > {behaviour.limit} maximum"
            return _Answer(400, _anthropic_error(ctx, "invalid_request_error", msg))
        if ctx.provider == "openrouter":
            msg = (
                f"This endpoint's maximum context length is {behaviour.limit} tokens. However, you requested "
                f"about {behaviour.requested} tokens. Please reduce the length of either one, or use the "
                '"middle-out" transform to compress your prompt automatically.'
            )
        elif ctx.provider == "groq":
            msg = "Please reduce the length of the messages or completion."
        else:
            msg = (
                f"This model's maximum context length is {behaviour.limit} tokens. However, your messages "
                f"resulted in {behaviour.requested} tokens. Please reduce the length of the messages."
            )
        return _Answer(
            400, _openai_error(ctx, 400, msg, "invalid_request_error", "context_length_exceeded", "messages")
        )

    if isinstance(behaviour, BadRequest):
        if anthropic:
            return _Answer(400, _anthropic_error(ctx, "invalid_request_error", behaviour.message))
        return _Answer(400, _openai_error(ctx, 400, behaviour.message, "invalid_request_error", None, behaviour.param))

    if isinstance(behaviour, NotFound):
        if anthropic:
            return _Answer(404, _anthropic_error(ctx, "not_found_error", f"model: {ctx.model}"))
        msg = f"The model `{ctx.model}` does not exist or you do not have access to it."
        return _Answer(404, _openai_error(ctx, 404, msg, "invalid_request_error", "model_not_found"))

    raise TypeError(f"not an error behaviour: {behaviour!r}")  # pragma: no cover


# --------------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------------


class _BadHTTP(Exception):
    pass


class FakeProviderServer:
    """Scriptable fake OpenAI / OpenRouter / Groq / Anthropic HTTP/1.1 server (keep-alive, asyncio).

    The server runs an asyncio event loop in a daemon thread. Connections are kept alive, so SDK
    connection pools are reused; hundreds of concurrent requests are fine (listen backlog 4096).
    ``stop()`` is bounded (about 2 s worst case) even with stalled handlers.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Behaviour]] = {}
        self._defaults: dict[str | None, Behaviour] = {None: Reply()}
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._startup_error: BaseException | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._thread is not None:
            return self
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="fake-llm-provider", daemon=True)
        self._thread.start()
        if not started.wait(60.0):
            raise RuntimeError("FakeProviderServer did not start within 60 s")
        if self._startup_error is not None:
            self._thread = None
            raise RuntimeError("FakeProviderServer failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=1.0)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2.0)
        self._thread = None
        self._loop = None

    def _run(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _loop, _context: None)  # stay quiet
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle_connection, self._host, self._requested_port, backlog=4096)
            )
            self._port = int(self._server.sockets[0].getsockname()[1])
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._startup_error = exc
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._conn_tasks):
            task.cancel()
        await asyncio.sleep(0)

    # ---- addresses ----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """For ``OpenAIChat(base_url=...)`` / ``openai.AsyncOpenAI(base_url=...)``."""
        return f"{self.origin}/v1"

    @property
    def openrouter_base_url(self) -> str:
        """For ``OpenRouter(base_url=...)`` (OpenRouter-flavoured bodies and errors)."""
        return f"{self.origin}/api/v1"

    @property
    def groq_base_url(self) -> str:
        """For ``Groq(base_url=...)``: the groq SDK appends ``/openai/v1/chat/completions`` itself."""
        return self.origin

    @property
    def anthropic_base_url(self) -> str:
        """For ``Claude(client_params={"base_url": ...})``: the anthropic SDK appends ``/v1/messages``."""
        return self.origin

    # ---- scripting & recording ------------------------------------------------------------------------

    def script(self, model: str, *behaviours: Behaviour) -> None:
        """Queue behaviours for ``model``, consumed one per request in order."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(behaviours)

    def default(self, model: str | None, behaviour: Behaviour) -> None:
        """Behaviour for ``model`` once its queue is empty (``None``: for every model without one)."""
        with self._lock:
            self._defaults[model] = behaviour

    def pending(self, model: str) -> int:
        """Number of scripted behaviours not yet consumed for ``model``."""
        with self._lock:
            return len(self._scripts.get(model, ()))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of all recorded requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if r.model == model]

    def reset(self) -> None:
        """Clear scripts, per-model defaults (global default back to ``Reply()``) and recorded requests."""
        with self._lock:
            self._scripts.clear()
            self._defaults = {None: Reply()}
            self._requests.clear()

    def _next_behaviour(self, model: str) -> Behaviour:
        with self._lock:
            queue = self._scripts.get(model)
            if queue:
                return queue.popleft()
            behaviour = self._defaults.get(model)
            return behaviour if behaviour is not None else self._defaults[None]

    # ---- HTTP ---------------------------------------------------------------------------------------

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                try:
                    method, path, headers = self._parse_head(head)
                    body = await self._read_body(reader, headers)
                except _BadHTTP:
                    await self._write(writer, 400, b'{"error":"bad request"}', {"connection": "close"})
                    return
                keep = await self._dispatch(method, path, headers, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the fake must stay quiet
            return
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._conn_tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _BadHTTP from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadHTTP
            headers[name.strip().lower()] = value.strip()
        return method.upper(), target.split("?", 1)[0], headers

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadHTTP from exc
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise _BadHTTP from exc
        return await reader.readexactly(length) if length > 0 else b""

    @staticmethod
    def _head_bytes(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _write(self, writer: asyncio.StreamWriter, status: int, payload: bytes, headers: dict[str, str]) -> None:
        all_headers = {"content-type": "application/json", "content-length": str(len(payload)), **headers}
        writer.write(self._head_bytes(status, all_headers) + payload)
        await writer.drain()

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; return False when the connection must not be reused."""
        if method == "GET" and path in ("/health", "/healthz"):
            await self._write(writer, 200, b'{"ok":true}', {})
            return True

        provider: Provider
        if path.endswith("/chat/completions"):
            provider = "groq" if path.startswith("/openai/") else "openrouter" if path.startswith("/api/") else "openai"
        elif path.endswith("/v1/messages"):
            provider = "anthropic"
        else:
            await self._write(writer, 404, _dumps({"error": {"message": f"no route {path}"}}).encode(), {})
            return True
        if method != "POST":
            await self._write(writer, 405, b'{"error":{"message":"method not allowed"}}', {})
            return True
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            await self._write(writer, 400, b'{"error":{"message":"body is not a JSON object"}}', {})
            return True
        body: dict[str, Any] = decoded

        api_key: str | None = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if api_key is None and auth.lower().startswith("bearer "):
            api_key = auth[7:].strip()
        model = str(body.get("model", ""))
        stream = bool(body.get("stream"))
        rejected = conversation_error(provider, body)
        ctx = _Ctx(provider, model, body, stream, api_key, _new_id("req_"))
        behaviour = BadRequest(rejected) if rejected is not None else self._next_behaviour(model)
        if isinstance(behaviour, ToolRoundTrip):
            behaviour = behaviour.resolve(provider, body)
        if isinstance(behaviour, (Reply, ToolCalls)) and behaviour.request_id is not None:
            ctx.request_id = behaviour.request_id.replace("{api_key}", api_key or "")
        if isinstance(behaviour, Reply):
            ctx.usage_details = behaviour
        record = RecordedRequest(
            path=path,
            model=model,
            headers=headers,
            body=body,
            stream=stream,
            provider=provider,
            api_key=api_key,
            rejected=rejected,
            request_id=None if isinstance(behaviour, (Stall, Disconnect)) else ctx.request_id,
        )
        with self._lock:
            self._requests.append(record)

        if isinstance(behaviour, Disconnect):
            return False
        if isinstance(behaviour, Stall):
            await asyncio.sleep(behaviour.seconds)
            return False
        if isinstance(behaviour, (Reply, ToolCalls, ContentFiltered, BrokenStream)):
            return await self._answer_completion(ctx, behaviour, writer)
        answer = _error_answer(ctx, behaviour)
        answer.headers[ctx.request_id_header] = ctx.request_id
        await self._write(writer, answer.status, _dumps(answer.body).encode(), answer.headers)
        return True

    async def _answer_completion(
        self, ctx: _Ctx, behaviour: Reply | ToolCalls | ContentFiltered | BrokenStream, writer: asyncio.StreamWriter
    ) -> bool:
        anthropic = ctx.provider == "anthropic"
        chunk_delay = 0.0
        finish: str | None
        tool_calls: list[_FakeToolCall] | None = None
        if isinstance(behaviour, ToolCalls):
            if behaviour.delay > 0:
                await asyncio.sleep(behaviour.delay)
            text = (behaviour.text or "").replace("{model}", ctx.model)
            finish = "tool_calls"
            if behaviour.response_id is not None:
                ctx.response_id = behaviour.response_id
            tool_calls = _fake_tool_calls(ctx, behaviour)
            pieces = _split(text, 2) if text else []
            prompt = behaviour.input_tokens
            completion = behaviour.output_tokens
            if completion is None:
                completion = max(1, len(text.split()) + sum(len(call.arguments) // 4 for call in tool_calls))
            chunk_delay = behaviour.chunk_delay
        elif isinstance(behaviour, Reply):
            if behaviour.delay > 0:
                await asyncio.sleep(behaviour.delay)
            text = _echo_text(ctx.body) if behaviour.echo_request else behaviour.text.replace("{model}", ctx.model)

            def echoed(value: str) -> str:
                return value.replace("{api_key}", ctx.api_key or "")

            finish = echoed(behaviour.finish_reason)
            if behaviour.response_id is not None:
                ctx.response_id = echoed(behaviour.response_id)
            if behaviour.response_model is not None:
                ctx.response_model = echoed(behaviour.response_model)
            pieces = _split(text, behaviour.chunks)
            prompt = behaviour.input_tokens
            completion = behaviour.output_tokens
            chunk_delay = behaviour.chunk_delay
        elif isinstance(behaviour, ContentFiltered):
            text = behaviour.partial_text
            finish = "content_filter"
            pieces = _split(text, 2)
            prompt = completion = None
        else:
            text = behaviour.text
            finish = None
            pieces = _split(text, behaviour.after_chunks + 2)[: behaviour.after_chunks]
            prompt = completion = None
        prompt_tokens = prompt if prompt is not None else _estimate_input_tokens(ctx.body)
        completion_tokens = completion if completion is not None else max(1, len(text.split()))
        if finish is not None:
            finish = _TO_ANTHROPIC_STOP.get(finish, finish) if anthropic else _TO_OPENAI_FINISH.get(finish, finish)
        id_header = {ctx.request_id_header: ctx.request_id}

        if not ctx.stream:
            if anthropic:
                payload = _anthropic_json_reply(
                    ctx, text, finish or "end_turn", prompt_tokens, completion_tokens, tool_calls
                )
            else:
                # OpenAI sends content null beside tool calls when the model wrote no text.
                keep = bool(text) or not isinstance(behaviour, (ContentFiltered, ToolCalls))
                payload = _openai_json_reply(
                    ctx, text if keep else None, finish or "stop", prompt_tokens, completion_tokens, tool_calls
                )
            data = _dumps(payload).encode()
            if isinstance(behaviour, BrokenStream):
                head = {"content-type": "application/json", "content-length": str(len(data)), **id_header}
                writer.write(self._head_bytes(200, head) + data[: len(data) // 2])
                await writer.drain()
                # A FIN, not a RST: a reset can make the kernel drop data the client has not read yet,
                # which would make "how many chunks arrived before the break" nondeterministic.
                writer.close()
                return False
            await self._write(writer, 200, data, id_header)
            return True

        build = _anthropic_stream_events if anthropic else _openai_stream_events
        frames = build(ctx, pieces, finish, prompt_tokens, completion_tokens, tool_calls)
        head = {
            "content-type": "text/event-stream; charset=utf-8",
            "transfer-encoding": "chunked",
            "cache-control": "no-cache",
            **id_header,
        }
        writer.write(self._head_bytes(200, head) + b"".join(map(_http_chunk, frames.preamble)))
        for index, frame in enumerate(frames.content):
            if chunk_delay > 0 and index > 0:
                await writer.drain()
                await asyncio.sleep(chunk_delay)
            writer.write(_http_chunk(frame))
        if isinstance(behaviour, BrokenStream):
            await writer.drain()
            writer.close()
            return False
        writer.write(b"".join(map(_http_chunk, frames.tail)) + b"0\r\n\r\n")
        await writer.drain()
        return True


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.providers", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = OS-assigned (printed as PORT=<n>)")
    parser.add_argument(
        "--rate-limit-model",
        action="append",
        default=[],
        metavar="NAME",
        help="every request for model NAME answers 429 with Retry-After: 0 (repeatable)",
    )
    parser.add_argument(
        "--tool-round-trip-model",
        action="append",
        default=[],
        metavar="NAME",
        help="model NAME asks for lookup_order until it is sent the result, then answers (repeatable)",
    )
    args = parser.parse_args(argv)

    server = FakeProviderServer(host=args.host, port=args.port)
    for name in args.rate_limit_model:
        server.default(name, RateLimited(retry_after=0))
    for name in args.tool_round_trip_model:
        server.default(name, ToolRoundTrip())
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    sys.stdout.write(f"PORT={server.port}\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
