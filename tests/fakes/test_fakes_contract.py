"""How the real Agno model classes behave against the fake provider servers.

These tests pin down, for agno 3.1 with the installed openai / anthropic / groq SDKs, what
``OpenAIChat``, ``OpenRouter``, ``Groq`` and ``Claude`` return or raise for each provider behaviour when
called directly (``aresponse`` / ``aresponse_stream``) with every retry layer turned off. The executor's
error classification is written against this contract; FINDINGS.md summarises it. If an upgrade of agno
or an SDK changes a row here, the classification must be revisited, not the row silently updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anthropic
import groq
import httpx
import openai
import pytest
import pytest_asyncio
from agno.exceptions import ContextWindowExceededError, ModelProviderError, ModelRateLimitError
from agno.models.anthropic import Claude
from agno.models.base import Model
from agno.models.groq import Groq
from agno.models.message import Message
from agno.models.openai import OpenAIChat
from agno.models.openrouter import OpenRouter
from agno.models.response import ModelResponse
from agno.utils import log as agno_log

from tests.fakes import (
    BadRequest,
    Behaviour,
    BrokenStream,
    ContentFiltered,
    ContextOverflow,
    Disconnect,
    FakeProviderServer,
    NotFound,
    Overloaded,
    RateLimited,
    Reply,
    ServerError,
    Stall,
    Unauthorized,
    parse_echo,
    refused_base_url,
)

os.environ.setdefault("AGNO_TELEMETRY", "false")

Kind = Literal["openai", "openrouter", "groq", "claude"]
KINDS: tuple[Kind, ...] = ("openai", "openrouter", "groq", "claude")
API_KEY = "sk-test-SECRET123456789"
STALL_TIMEOUT = 0.3  # per-call timeout used against a stall of STALL_SECONDS
STALL_SECONDS = 60.0  # far beyond the timeout: a call that ignored it would wait this long, not ~0.3 s
TIMED_OUT_WITHIN = 30.0  # returned well before the stall ends (the figure itself is noise under load)

# The SDK behind each class, and the HTTP library that SDK is built on (openai 3.x and anthropic 2.x moved
# to httpx2; groq still uses httpx).
SDK: dict[Kind, str] = {"openai": "openai", "openrouter": "openai", "groq": "groq", "claude": "anthropic"}
HTTP: dict[Kind, str] = {"openai": "httpx2", "openrouter": "httpx2", "groq": "httpx", "claude": "httpx2"}
ANTHROPIC_2_17 = tuple(int(part) for part in anthropic.__version__.split(".")[:2]) >= (2, 17)
"""anthropic 2.17 wraps a transport error raised while iterating a stream in APIConnectionError, as the
other SDKs do, and words an error as "400 <message> (request_id: ..., path: ..., type: ...)" instead of
"Error code: 400 - {<the body>}": pyproject allows both sides of that release, so the contract names both."""


# --------------------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_server_and_quiet_agno(server: FakeProviderServer) -> Iterator[None]:
    server.reset()
    agno_logger = logging.getLogger("agno")
    was_disabled = agno_logger.disabled
    agno_logger.disabled = True  # agno logs every provider error at ERROR to stdout (see test_logging_*)
    yield
    agno_logger.disabled = was_disabled


def model_id_for(kind: Kind, name: str) -> str:
    # Claude ids must be in agno's closed list of models that accept sampling parameters, or agno drops
    # temperature/top_p/top_k with a warning (see test_claude_drops_temperature_for_unknown_model_ids).
    return f"claude-sonnet-4-5-{name}" if kind == "claude" else f"{kind}-{name}"


def http_client_fields(kind: Kind, **client_kwargs: Any) -> dict[str, Any]:
    """Model fields that hand the SDK a plain-HTTP client (``verify=False``).

    Each SDK builds its default client with a TLS context that loads the CA bundle: ~35-45 ms per client on
    the CI VM, more than the calls themselves. The fake is plain HTTP, so the tests skip that; the SDK's
    ``DefaultAsyncHttpxClient`` keeps the SDK's own limits and timeouts otherwise.
    """
    if kind == "groq":  # httpx-based SDK: agno's http_client field takes it (it checks httpx.AsyncClient)
        return {"http_client": groq.DefaultAsyncHttpxClient(verify=False, **client_kwargs)}
    # openai 3.x and anthropic 2.x are httpx2-based. OpenAIChat.http_client only accepts an
    # httpx.AsyncClient (which openai 3.x rejects), and Claude has no base_url field: client_params
    # reaches the SDK constructor for both.
    sdk_module = anthropic if kind == "claude" else openai
    return {"client_params": {"http_client": sdk_module.DefaultAsyncHttpxClient(verify=False, **client_kwargs)}}


def build_model(kind: Kind, server: FakeProviderServer | None, model_id: str, **overrides: Any) -> Model:
    """One Agno model on the fake server (or on a refused port when ``server`` is None), all retries off."""
    fields = {**http_client_fields(kind), **overrides}
    if kind == "claude":
        base_url = server.anthropic_base_url if server else refused_base_url("")
        fields["client_params"] = {"max_retries": 0, "base_url": base_url, **fields["client_params"]}
        return Claude(id=model_id, api_key=API_KEY, retries=0, **fields)
    if kind == "groq":
        base_url = server.groq_base_url if server else refused_base_url("")
        return Groq(id=model_id, api_key=API_KEY, base_url=base_url, max_retries=0, retries=0, **fields)
    if kind == "openrouter":
        base_url = server.openrouter_base_url if server else refused_base_url("/api/v1")
        return OpenRouter(id=model_id, api_key=API_KEY, base_url=base_url, max_retries=0, retries=0, **fields)
    base_url = server.openai_base_url if server else refused_base_url("/v1")
    return OpenAIChat(id=model_id, api_key=API_KEY, base_url=base_url, max_retries=0, retries=0, **fields)


ModelFactory = Callable[..., Model]


@pytest_asyncio.fixture
async def make_model(server: FakeProviderServer) -> AsyncIterator[ModelFactory]:
    """``make_model(kind, model_id, *, refused=False, **fields)``; closes the SDK clients afterwards."""
    created: list[Model] = []

    def factory(kind: Kind, model_id: str, *, refused: bool = False, **overrides: Any) -> Model:
        model = build_model(kind, None if refused else server, model_id, **overrides)
        created.append(model)
        return model

    yield factory
    closed: set[int] = set()
    for model in created:
        client = getattr(model, "async_client", None)
        if client is not None and id(client) not in closed:
            closed.add(id(client))
            await client.close()


def user_says(text: str = "hi") -> list[Message]:
    return [Message(role="user", content=text)]  # aresponse appends to it: a fresh list per call


async def call(model: Model, stream: bool) -> list[ModelResponse]:
    """Run one call; for streams return every yielded item, for non-streams a one-item list."""
    if not stream:
        return [await model.aresponse(messages=user_says())]
    items: list[ModelResponse] = []
    async for item in model.aresponse_stream(messages=user_says()):
        assert isinstance(item, ModelResponse)
        items.append(item)
    return items


def qualname(exc: BaseException) -> str:
    return f"{type(exc).__module__.split('.')[0]}.{type(exc).__name__}"


def cause_chain(exc: BaseException, depth: int = 2) -> tuple[str, ...]:
    """Qualified names along ``__cause__`` below ``exc``; ``"<self>"`` where ``e.__cause__ is e``."""
    names: list[str] = []
    current = exc
    for _ in range(depth):
        cause = current.__cause__
        if cause is None:
            break
        if cause is current:
            names.append("<self>")
            break
        names.append(qualname(cause))
        current = cause
    return tuple(names)


def find_status_error(exc: BaseException) -> tuple[str, BaseException] | None:
    """The SDK's APIStatusError (it holds ``.response``) and whether ``__cause__`` or ``__context__``
    reached it first; None when no response object is reachable at all."""
    seen: set[int] = set()
    frontier: list[tuple[str, BaseException]] = [("self", exc)]
    while frontier:
        via, current = frontier.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(getattr(current, "response", None), (httpx.Response, _httpx2_response_type())):
            return via, current
        for name, nxt in (("cause", current.__cause__), ("context", current.__context__)):
            if nxt is not None:
                frontier.append((via if via != "self" else name, nxt))
    return None


def _httpx2_response_type() -> type:
    import httpx2

    return httpx2.Response


def content_pieces(items: list[ModelResponse]) -> list[str]:
    return [item.content for item in items if isinstance(item.content, str) and item.content]


def completed_event(items: list[ModelResponse]) -> ModelResponse:
    (event,) = [item for item in items if item.event == "ModelRequestCompleted"]
    return event


# --------------------------------------------------------------------------------------------------------
# the error matrix
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Raises:
    exc: type[ModelProviderError]
    status: int
    cause: tuple[str, ...]  # cause_chain() of the raised exception
    status_error: tuple[str, str] | None  # (where, SDK class) of the reachable APIStatusError


def raises(kind: Kind, behaviour: str, stream: bool) -> Raises:
    """What agno raises for ``behaviour`` (a key of BEHAVIOURS) on ``kind``; the contract under test."""
    sdk, http = SDK[kind], HTTP[kind]
    openai_style = kind != "claude"
    if behaviour == "rate_limited":
        if openai_style:
            # classify() re-creates the error as a new ModelRateLimitError and the retry loop raises it
            # outside the except block: no __cause__, no __context__, the SDK error and its headers are gone.
            return Raises(ModelRateLimitError, 429, (), None)
        return Raises(ModelRateLimitError, 429, ("anthropic.RateLimitError",), ("cause", "anthropic.RateLimitError"))
    if behaviour == "overloaded":
        if openai_style:  # the fake answers 503 "engine overloaded" on OpenAI-style APIs
            return Raises(
                ModelProviderError,
                503,
                (f"{sdk}.InternalServerError",),
                ("cause", f"{sdk}.InternalServerError"),
            )
        return Raises(ModelRateLimitError, 529, ("anthropic.OverloadedError",), ("cause", "anthropic.OverloadedError"))
    if behaviour in ("server_500", "server_502", "server_503"):
        status = int(behaviour[-3:])
        sdk_error = f"{sdk}.InternalServerError"
        if kind == "claude" and status == 503:
            sdk_error = "anthropic.ServiceUnavailableError"
        return Raises(ModelProviderError, status, (sdk_error,), ("cause", sdk_error))
    if behaviour in ("unauthorized", "bad_request", "not_found"):
        # Non-retryable: the retry loop does ``raise e from e`` -> e.__cause__ is e; the SDK error survives
        # only as __context__ (with __suppress_context__ = True, so tracebacks do not show it).
        status, sdk_name = {
            "unauthorized": (401, "AuthenticationError"),
            "bad_request": (400, "BadRequestError"),
            "not_found": (404, "NotFoundError"),
        }[behaviour]
        return Raises(ModelProviderError, status, ("<self>",), ("context", f"{sdk}.{sdk_name}"))
    if behaviour == "context_overflow":
        if kind == "openai":  # OpenAIChat recognises code=context_length_exceeded itself -> raise e from e
            return Raises(ContextWindowExceededError, 400, ("<self>",), ("context", "openai.BadRequestError"))
        # the others raise ModelProviderError(400); classify() matches the message and chains it
        return Raises(
            ContextWindowExceededError,
            400,
            ("agno.ModelProviderError", f"{sdk}.BadRequestError"),
            ("cause", f"{sdk}.BadRequestError"),
        )
    if behaviour == "stall":
        return Raises(ModelProviderError, 502, (f"{sdk}.APITimeoutError", f"{http}.ReadTimeout"), None)
    if behaviour == "broken_stream" and stream and (kind == "groq" or (kind == "claude" and not ANTHROPIC_2_17)):
        # groq (and anthropic before 2.17) do not wrap transport errors raised while iterating a stream
        http_core = "httpcore2" if http == "httpx2" else "httpcore"
        return Raises(
            ModelProviderError, 502, (f"{http}.RemoteProtocolError", f"{http_core}.RemoteProtocolError"), None
        )
    if behaviour in ("broken_stream", "disconnect"):
        return Raises(ModelProviderError, 502, (f"{sdk}.APIConnectionError", f"{http}.RemoteProtocolError"), None)
    if behaviour == "refused":
        return Raises(ModelProviderError, 502, (f"{sdk}.APIConnectionError", f"{http}.ConnectError"), None)
    raise AssertionError(behaviour)


BEHAVIOURS: dict[str, Behaviour | None] = {
    "rate_limited": RateLimited(retry_after=1.5),
    "overloaded": Overloaded(),
    "server_500": ServerError(500),
    "server_502": ServerError(502),
    "server_503": ServerError(503),
    "unauthorized": Unauthorized(echo_key=True),
    "bad_request": BadRequest("temperature must be <= 2"),
    "not_found": NotFound(),
    "context_overflow": ContextOverflow(limit=200000, requested=250000),
    "stall": Stall(STALL_SECONDS),
    "broken_stream": BrokenStream(after_chunks=2),
    "disconnect": Disconnect(),
    "refused": None,  # no server at all
}


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest.mark.parametrize("kind", KINDS)
async def test_error_matrix(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind, behaviour: str, stream: bool
) -> None:
    model_id = model_id_for(kind, f"{behaviour}-{stream}")
    scripted = BEHAVIOURS[behaviour]
    if scripted is not None:
        server.script(model_id, scripted)
    per_call_timeout = {"request_params": {"timeout": STALL_TIMEOUT}} if behaviour == "stall" else {}
    model = make_model(kind, model_id, refused=scripted is None, **per_call_timeout)
    expected = raises(kind, behaviour, stream)

    started = time.monotonic()
    with pytest.raises(ModelProviderError) as info:
        await call(model, stream)
    elapsed = time.monotonic() - started
    error = info.value

    assert type(error) is expected.exc
    assert error.status_code == expected.status
    assert cause_chain(error) == expected.cause
    found = find_status_error(error)
    assert ((found[0], qualname(found[1])) if found else None) == expected.status_error
    if found is not None:  # wherever the SDK error survives, it still carries the response headers
        headers = found[1].response.headers  # type: ignore[attr-defined]
        request_id_header = "request-id" if kind == "claude" else "x-request-id"
        assert headers[request_id_header].startswith("req_")
        if behaviour == "rate_limited":
            assert (headers["retry-after"], headers["retry-after-ms"]) == ("1.5", "1500")
    assert (API_KEY in str(error)) is (behaviour == "unauthorized")  # the key is echoed back verbatim
    if behaviour == "stall":
        assert elapsed < TIMED_OUT_WITHIN, "request_params={'timeout': ...} must apply per call"
    if scripted is not None:
        assert len(server.requests_for(model_id)) == 1  # no hidden retries anywhere


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_error_message_shape(server: FakeProviderServer, make_model: ModelFactory, kind: Kind) -> None:
    model_id = model_id_for(kind, "shape")
    server.script(model_id, BadRequest("temperature must be <= 2"))
    with pytest.raises(ModelProviderError) as info:
        await make_model(kind, model_id).aresponse(messages=user_says())
    message = str(info.value)
    if kind in ("openai", "openrouter"):
        assert message == "temperature must be <= 2"  # error.message from the JSON body
    elif kind == "groq":
        assert message == '{"error":{"message":"temperature must be <= 2","type":"invalid_request_error"}}'
    elif ANTHROPIC_2_17:
        assert message.startswith("400 temperature must be <= 2 (request_id: req_"), message
        assert message.endswith("path: /v1/messages, type: invalid_request_error)"), message
    else:
        assert message.startswith("Error code: 400 - {'type': 'error', 'error': {'type': 'invalid_request_error'")
    assert str(info.value) == info.value.message


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_any_400_mentioning_max_tokens_becomes_a_context_window_error(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    # ModelProviderError.classify() matches substrings such as "max_tokens" and "token limit" anywhere in
    # the message, so a plain parameter error is reported as ContextWindowExceededError.
    model_id = model_id_for(kind, "max-tokens")
    server.script(model_id, BadRequest("max_tokens: 100000 > 8192, which is the maximum allowed"))
    with pytest.raises(ContextWindowExceededError) as info:
        await make_model(kind, model_id).aresponse(messages=user_says())
    assert info.value.status_code == 400


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_masked_key_is_not_echoed(server: FakeProviderServer, make_model: ModelFactory, kind: Kind) -> None:
    model_id = model_id_for(kind, "masked")
    server.script(model_id, Unauthorized(echo_key=False))
    with pytest.raises(ModelProviderError) as info:
        await make_model(kind, model_id).aresponse(messages=user_says())
    assert API_KEY not in str(info.value)
    assert "sk-********6789" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_broken_stream_delivers_the_chunks_sent_before_the_break(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    model_id = model_id_for(kind, "broken")
    server.script(model_id, BrokenStream(after_chunks=2, text="aaaa bbbb cccc dddd"))
    received: list[str] = []
    with pytest.raises(ModelProviderError):
        async for item in make_model(kind, model_id).aresponse_stream(messages=user_says()):
            assert isinstance(item, ModelResponse)
            if item.content:
                received.append(item.content)
    assert received == ["aaaa ", "bbbb "]


# --------------------------------------------------------------------------------------------------------
# successful calls
# --------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_reply_json(server: FakeProviderServer, make_model: ModelFactory, kind: Kind) -> None:
    model_id = model_id_for(kind, "reply")
    server.script(model_id, Reply(text="hello world here", input_tokens=11, output_tokens=7))
    response = await make_model(kind, model_id).aresponse(messages=user_says())

    assert response.content == "hello world here"
    assert response.role is None  # only the assistant Message gets the role, not the ModelResponse
    usage = response.response_usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 7, 18)
    # Neither the finish reason nor the provider request id (x-request-id / request-id) is surfaced.
    provider_data = response.provider_data or {}
    assert "finish_reason" not in provider_data and "stop_reason" not in provider_data
    if kind == "openai":
        assert provider_data["id"].startswith("chatcmpl-")  # the completion id, not the request id
        assert provider_data["system_fingerprint"] == "fp_fake0001"
    elif kind == "openrouter":
        assert provider_data["id"].startswith("gen-")
        assert provider_data["model_extra"] == {"provider": "FakeProvider"}
    elif kind == "groq":
        assert response.provider_data is None
        assert usage.provider_metrics == {
            "completion_time": 0.004,
            "prompt_time": 0.002,
            "queue_time": 0.01,
            "total_time": 0.006,
        }
    else:
        assert set(provider_data) == {"content_blocks"}  # no message id
        assert usage.provider_metrics == {"service_tier": "standard"}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_reply_stream(server: FakeProviderServer, make_model: ModelFactory, kind: Kind) -> None:
    model_id = model_id_for(kind, "stream")
    server.script(model_id, Reply(text="hello world here", input_tokens=11, output_tokens=7, chunks=3))
    items = await call(make_model(kind, model_id), stream=True)

    assert items[0].event == "ModelRequestStarted"
    assert items[-1].event == "ModelRequestCompleted"
    assert all(item.event == "AssistantResponse" for item in items[1:-1])
    assert content_pieces(items) == ["hello ", "world ", "here"]
    contents = [item.content for item in items[1:-1]]
    if kind == "claude":
        # empty items for message_start / block start / stops; the message_stop item has content ""
        # and carries the usage
        assert contents[-1] == ""
        usage_items = [item for item in items if item.response_usage is not None]
        assert usage_items == [items[-2]]
    else:
        assert contents[0] == ""  # the role chunk (delta.content == "") is yielded as an item
        (usage_item,) = [item for item in items if item.response_usage is not None]
        assert usage_item.content is None
        assert items.index(usage_item) > max(i for i, item in enumerate(items) if item.content)
    done = completed_event(items)
    assert (done.input_tokens, done.output_tokens, done.total_tokens) == (11, 7, 18)
    assert done.response_usage is None  # the totals are flat fields on the completed event


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", KINDS)
async def test_content_filter_returns_without_error(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind, stream: bool
) -> None:
    model_id = model_id_for(kind, f"filtered-{stream}")
    server.script(model_id, ContentFiltered(), ContentFiltered(partial_text="partial answer"))
    model = make_model(kind, model_id)

    empty = await call(model, stream)
    partial = await call(model, stream)

    # No exception and no finish reason anywhere: a filtered reply looks like an empty (or short) answer.
    if stream:
        assert content_pieces(empty) == []
        assert "".join(content_pieces(partial)) == "partial answer"
    else:
        assert empty[0].content is None
        assert partial[0].content == "partial answer"
    for item in empty + partial:
        assert "finish_reason" not in (item.provider_data or {})


# --------------------------------------------------------------------------------------------------------
# per-call parameters, concurrency, timeouts
# --------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_200_concurrent_calls_with_per_call_parameters_do_not_mix(
    server: FakeProviderServer, make_model: ModelFactory
) -> None:
    server.default("openai-echo", Reply.echo())
    base = make_model("openai", "openai-echo")
    assert isinstance(base, OpenAIChat)
    base.get_async_client()  # created once, so that dataclasses.replace() copies share its pool

    async def one(i: int) -> dict[str, Any]:
        per_call = dataclasses.replace(base, temperature=round(i / 200, 3), max_tokens=100 + i)
        response = await per_call.aresponse(messages=user_says(f"call-{i}"))
        return parse_echo(response.content)

    echoes = await asyncio.gather(*(one(i) for i in range(200)))

    for i, echo in enumerate(echoes):
        assert echo == {
            "last_user": f"call-{i}",
            "max_tokens": 100 + i,
            "model": "openai-echo",
            "stream": False,
            "temperature": round(i / 200, 3),
            "top_p": None,
        }
    assert len(server.requests_for("openai-echo")) == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_echo_shows_what_each_class_sends(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    model_id = model_id_for(kind, "echo")
    server.default(model_id, Reply.echo())
    plain = await make_model(kind, model_id).aresponse(messages=user_says("plain"))
    tuned = await make_model(kind, model_id, temperature=0.25, max_tokens=64).aresponse(messages=user_says("tuned"))

    default_max_tokens = {"openai": None, "openrouter": 1024, "groq": None, "claude": 8192}[kind]
    assert parse_echo(plain.content)["max_tokens"] == default_max_tokens
    assert parse_echo(plain.content)["temperature"] is None
    tuned_echo = parse_echo(tuned.content)
    assert (tuned_echo["temperature"], tuned_echo["max_tokens"], tuned_echo["last_user"]) == (
        0.25,
        64,
        "tuned",
    )


@pytest.mark.asyncio
async def test_claude_drops_temperature_for_unknown_model_ids(
    server: FakeProviderServer, make_model: ModelFactory
) -> None:
    # agno keeps a closed list of Claude ids that accept sampling parameters (up to 4.6); any other
    # "claude..." id (including agno's own default "claude-sonnet-5-5") has temperature removed.
    server.default("claude-sonnet-5-5", Reply.echo())
    response = await make_model("claude", "claude-sonnet-5-5", temperature=0.25).aresponse(messages=user_says())
    assert parse_echo(response.content)["temperature"] is None


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_request_params_timeout_is_per_read_not_a_total_deadline(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    model_id = model_id_for(kind, "trickle")
    server.script(model_id, Reply(text="abcdef", chunks=3, chunk_delay=0.2))  # 0.4 s, gaps of 0.2 s
    model = make_model(kind, model_id, request_params={"timeout": 0.3})
    started = time.monotonic()
    items = await call(model, stream=True)
    assert content_pieces(items) == ["ab", "cd", "ef"]
    assert time.monotonic() - started > 0.4  # longer than the "timeout": the caller must bound the total


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_model_level_timeout_field_also_applies(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    model_id = model_id_for(kind, "model-timeout")
    server.script(model_id, Stall(STALL_SECONDS))
    model = make_model(kind, model_id, timeout=STALL_TIMEOUT)  # client-level; Claude also has this field
    started = time.monotonic()
    with pytest.raises(ModelProviderError) as info:
        await model.aresponse(messages=user_says())
    assert time.monotonic() - started < TIMED_OUT_WITHIN
    assert cause_chain(info.value)[0] == f"{SDK[kind]}.APITimeoutError"


# --------------------------------------------------------------------------------------------------------
# getting back what agno drops: headers via an HTTP client hook, or the SDK error via ainvoke()
# --------------------------------------------------------------------------------------------------------

_responses: contextvars.ContextVar[list[tuple[int, dict[str, str]]]] = contextvars.ContextVar("responses")


async def _record_response(response: Any) -> None:
    seen = _responses.get(None)
    if seen is not None:
        seen.append((response.status_code, dict(response.headers)))


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_response_hook_recovers_retry_after_and_request_id(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    model_id = model_id_for(kind, "hooked")
    server.script(model_id, RateLimited(retry_after=2.5))
    model = make_model(kind, model_id, **http_client_fields(kind, event_hooks={"response": [_record_response]}))
    seen: list[tuple[int, dict[str, str]]] = []
    _responses.set(seen)  # the hook runs in the calling task, so a context variable reaches it

    with pytest.raises(ModelRateLimitError):
        await model.aresponse(messages=user_says())

    ((status, headers),) = seen
    assert status == 429
    assert headers["retry-after"] == "2.5"
    assert headers["request-id" if kind == "claude" else "x-request-id"].startswith("req_")


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_ainvoke_keeps_the_sdk_error_that_aresponse_drops(
    server: FakeProviderServer, make_model: ModelFactory, stream: bool
) -> None:
    model_id = f"openai-ainvoke-{stream}"
    server.script(model_id, RateLimited(retry_after=2.5))
    model = make_model("openai", model_id)
    with pytest.raises(ModelProviderError) as info:
        if stream:
            async for _ in model.ainvoke_stream(messages=user_says(), assistant_message=Message(role="assistant")):
                pass
        else:
            await model.ainvoke(messages=user_says(), assistant_message=Message(role="assistant"))
    assert type(info.value) is ModelProviderError  # not yet classified: that happens in the retry wrapper
    assert info.value.status_code == 429
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert info.value.__cause__.response.headers["retry-after"] == "2.5"


# --------------------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_logging_agno_logs_provider_errors_with_the_key_on_its_own_logger(
    server: FakeProviderServer, make_model: ModelFactory, kind: Kind
) -> None:
    # A Workflow run earlier in the suite leaves Agno on its workflow logger.
    agno_log.use_agent_logger()  # type: ignore[no-untyped-call]
    agno_logger = logging.getLogger("agno")
    assert agno_logger.propagate is False  # so caplog / root handlers never see these records
    assert any(isinstance(h, logging.StreamHandler) for h in agno_logger.handlers)
    capture = _Capture()
    agno_logger.addHandler(capture)
    agno_logger.disabled = False
    level = agno_logger.level  # another module of the suite may have raised it
    agno_logger.setLevel(logging.INFO)  # agno's own default
    model_id = model_id_for(kind, "logged")
    server.script(model_id, Unauthorized(echo_key=True), Unauthorized(echo_key=True))
    try:
        with pytest.raises(ModelProviderError):
            await make_model(kind, model_id).aresponse(messages=user_says())
        logged = [(r.levelname, r.getMessage()) for r in capture.records]
        assert all(name == "agno" for name in {r.name for r in capture.records})
        assert logged[-1][0] == "ERROR"
        assert logged[-1][1].startswith("Non-retryable model provider error: ")
        assert API_KEY in logged[-1][1]  # agno writes the echoed key to stdout

        capture.records.clear()
        agno_logger.disabled = True  # survives agno's set_log_level_to_*(), unlike setLevel()
        with pytest.raises(ModelProviderError):
            await make_model(kind, model_id).aresponse(messages=user_says())
        assert capture.records == []
    finally:
        agno_logger.removeHandler(capture)
        agno_logger.setLevel(level)


# --------------------------------------------------------------------------------------------------------
# the fake itself
# --------------------------------------------------------------------------------------------------------


def test_scripts_are_consumed_in_order_then_defaults_apply(server: FakeProviderServer) -> None:
    server.script("m", RateLimited(retry_after=0), ServerError(503))
    server.default("m", Reply(text="model default"))
    server.default(None, NotFound())
    with httpx.Client(base_url=server.openai_base_url) as client:

        def post(model: str) -> httpx.Response:
            return client.post("/chat/completions", json={"model": model, "messages": []})

        assert [post("m").status_code for _ in range(4)] == [429, 503, 200, 200]
        assert post("other").status_code == 404
    assert server.pending("m") == 0
    assert [r.model for r in server.requests] == ["m", "m", "m", "m", "other"]
    server.reset()
    assert server.requests == []


def test_requests_are_recorded_with_key_and_dialect(server: FakeProviderServer) -> None:
    with httpx.Client() as client:
        client.post(
            f"{server.anthropic_base_url}/v1/messages",
            headers={"x-api-key": "k-anthropic"},
            json={"model": "a", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        )
        client.post(
            f"{server.groq_base_url}/openai/v1/chat/completions",
            headers={"authorization": "Bearer k-groq"},
            json={"model": "g", "messages": []},
        )
    (anthropic_request,) = server.requests_for("a")
    (groq_request,) = server.requests_for("g")
    assert (anthropic_request.provider, anthropic_request.api_key, anthropic_request.stream) == (
        "anthropic",
        "k-anthropic",
        True,
    )
    assert (groq_request.provider, groq_request.api_key, groq_request.path) == (
        "groq",
        "k-groq",
        "/openai/v1/chat/completions",
    )
    assert groq_request.headers["authorization"] == "Bearer k-groq"


def test_stop_is_bounded_while_a_handler_stalls() -> None:
    fake = FakeProviderServer().start()
    fake.default(None, Stall(60))
    with httpx.Client(timeout=90) as client:  # outlives the stall: only the stop can end the request

        def stalled_request() -> None:
            with contextlib.suppress(httpx.HTTPError):
                client.post(f"{fake.openai_base_url}/chat/completions", json={"model": "m"})

        requester = threading.Thread(target=stalled_request, daemon=True)
        requester.start()
        deadline = time.monotonic() + 60
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 30, "the stop waited for the 60 s stall"
        requester.join(30)
        assert not requester.is_alive()


def test_cli_prints_port_and_rate_limits_the_named_model() -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.providers", "--port", "0", "--rate-limit-model", "primary"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT=")
        base = f"http://127.0.0.1:{int(line.strip().split('=', 1)[1])}/v1"
        with httpx.Client(base_url=base) as client:
            limited = client.post("/chat/completions", json={"model": "primary", "messages": []})
            fallback = client.post("/chat/completions", json={"model": "fallback", "messages": []})
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "0")
        assert fallback.status_code == 200
        assert fallback.json()["choices"][0]["message"]["content"] == "fake reply from fallback"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert stderr == ""  # quiet: no per-request logging
