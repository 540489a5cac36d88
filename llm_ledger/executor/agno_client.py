"""Model calls through Agno's model classes, one attempt at a time.

Rules learnt from Agno 3.1: call the model's own ``ainvoke``/``ainvoke_stream`` (one request, a fresh
assistant ``Message`` each time): ``aresponse`` would run Agno's tool loop and its retry wrapper, and
``Agent.arun`` turns errors into text. Switch off the SDK's and Agno's own retries so that every attempt
is ours and recorded; never mutate a shared model for per-call parameters (under concurrency that sends
one call's temperature with another's request), but take a ``dataclasses.replace`` copy, which keeps the
cached HTTP client.

Tools go to ``ainvoke`` as Agno's function dicts and conversations as Agno ``Message``s (``tool_calls``
in Agno's OpenAI-style form, ``tool_call_id``/``tool_name`` on results), so that each provider class
formats a tool conversation its own way (Claude: ``tool_use``/``tool_result`` blocks; OpenAIChat
renumbers ids that are not its own), and a fallback between the formats sends each provider a request
it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from typing import Any

import orjson
from agno.models.anthropic import Claude
from agno.models.base import Model
from agno.models.groq import Groq
from agno.models.message import Message
from agno.models.openai import OpenAIChat
from agno.models.openrouter import OpenRouter
from agno.models.response import ModelResponse

from llm_ledger.environment import AGNO_TELEMETRY
from llm_ledger.events import Scrubber, TokenUsage
from llm_ledger.events.storable import provider_cost, provider_count
from llm_ledger.executor.classify import (
    ResponseEvidence,
    carries_secret,
    classify,
    provider_id,
    request_id_from,
    retry_after_from,
)
from llm_ledger.executor.client import CallParams, Completion
from llm_ledger.executor.errors import AuthenticationError, ContentFilterError, InvalidOutputError, ProviderError
from llm_ledger.executor.routing import ModelRoute, ResolvedSettings
from llm_ledger.executor.tools import TOOL_CHOICES, RequestedToolCall, ToolCall, ToolSpec
from llm_ledger.executor.types import LLMMessage

# Nothing phones home: Agno reads this when an Agent, Team or Workflow is built (never at import).
AGNO_TELEMETRY.setdefault("false")

_CONTENT_FILTER_REASONS = {"content_filter", "refusal"}
_MAX_COPIES = 64

_capture: ContextVar[ResponseEvidence | None] = ContextVar("llm_ledger_response_evidence", default=None)


class _DropLogsOfOurCalls(logging.Filter):
    """Agno logs every provider error at ERROR on its own stdout handler, API key included when the
    provider echoes it. The executor records those failures as events and raises them, so Agno's
    copies would only repeat them, once per attempt. Only records logged during the executor's own
    calls are dropped (a filter, unlike a level, also survives the reset every Agent run does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _capture.get() is None


def _install_log_filter() -> None:
    from agno.utils import log as agno_log

    # All three: a Workflow or a Team switches Agno's module-level logger to its own for good.
    loggers = (logging.getLogger("agno"), agno_log.agent_logger, agno_log.team_logger, agno_log.workflow_logger)
    for logger in loggers:
        if not any(isinstance(f, _DropLogsOfOurCalls) for f in logger.filters):
            logger.addFilter(_DropLogsOfOurCalls())


_install_log_filter()


async def _on_response(response: Any) -> None:
    """HTTP hook (httpx, and httpx2 under the openai and anthropic SDKs): note what Agno drops.

    Agno raises 401/404/429 without the SDK exception that carried the response, so the status,
    ``Retry-After`` and request id are read here; for a JSON answer also its id, model and finish
    reason, which ``OpenAIChat`` does not keep.
    """
    evidence = _capture.get()
    if evidence is None:
        return
    headers = response.headers
    status = evidence.status_code = response.status_code
    evidence.request_id = request_id_from(headers)
    if status >= 400:
        evidence.retry_after = retry_after_from(headers)
        return
    if status != 200 or not headers.get("content-type", "").startswith("application/json"):
        return
    await response.aread()
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return
    if not isinstance(body, dict):
        return
    evidence.response_id = body.get("id") if isinstance(body.get("id"), str) else None
    evidence.response_model = body.get("model") if isinstance(body.get("model"), str) else None
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        evidence.finish_reason = reason if isinstance(reason, str) else None
    elif isinstance(body.get("stop_reason"), str):
        evidence.finish_reason = body["stop_reason"]


def _http_client(provider: str) -> Any:
    """Each SDK's own pooled async client class, carrying our response hook. The openai and anthropic
    SDKs run on httpx2 (measured 0.13 ms a call faster than an httpx client here); groq on httpx."""
    hooks = {"response": [_on_response]}
    match provider:
        case "anthropic":
            import anthropic

            return anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
        case "groq":
            import groq

            return groq.DefaultAsyncHttpxClient(event_hooks=hooks)
        case _:
            import openai

            return openai.DefaultAsyncHttpxClient(event_hooks=hooks)


def _build_model(route: ModelRoute, settings: ResolvedSettings, http_client: Any) -> Model:
    common: dict[str, Any] = {"id": route.model_id, "retries": 0}
    match route.provider.name:
        case "openai":
            # Agno passes only an httpx client as ``http_client``; an httpx2 one goes in client_params.
            return OpenAIChat(
                **common,
                api_key=settings.api_key,
                base_url=settings.base_url,
                max_retries=0,
                client_params={"http_client": http_client},
            )
        case "openrouter":
            return OpenRouter(
                **common,
                api_key=settings.api_key,
                base_url=settings.base_url or "https://openrouter.ai/api/v1",
                max_retries=0,
                client_params={"http_client": http_client},
            )
        case "groq":
            return Groq(
                **common, api_key=settings.api_key, base_url=settings.base_url, max_retries=0, http_client=http_client
            )
        case "anthropic":
            # Claude has no base_url field: the endpoint and retries go to the SDK client directly.
            client_params: dict[str, Any] = {"max_retries": 0}
            if settings.base_url:
                client_params["base_url"] = settings.base_url
            return Claude(**common, api_key=settings.api_key, client_params=client_params, http_client=http_client)
    raise AssertionError(f"no Agno class for provider {route.provider.name}")


def _agno_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]] | None:
    """The tools as Agno's function dicts. The schemas are copied: Claude's formatter edits nested
    schemas in place (``additionalProperties``), which would change a ToolSpec, and its digest, behind
    its back."""
    if not tools:
        return None
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": copy.deepcopy(tool.parameters),
            },
        }
        for tool in tools
    ]


def _openai_tool_choice(choice: str) -> str | dict[str, Any]:
    return choice if choice in TOOL_CHOICES else {"type": "function", "function": {"name": choice}}


_ANTHROPIC_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}


def _anthropic_tool_choice(choice: str) -> dict[str, Any]:
    if choice in _ANTHROPIC_TOOL_CHOICE:
        return {"type": _ANTHROPIC_TOOL_CHOICE[choice]}
    return {"type": "tool", "name": choice}


def _arguments_text(call: ToolCall) -> str:
    """The arguments' JSON text to send back: the model's own text when it says what ``arguments`` say
    (Claude's formatter parses it again), else ``arguments`` encoded (a call written by hand may set only
    the dict)."""
    try:
        if orjson.loads(call.arguments_json) == call.arguments:
            return call.arguments_json
    except orjson.JSONDecodeError:
        pass
    return orjson.dumps(call.arguments).decode()


def _agno_message(message: LLMMessage) -> Message:
    if message.role == "tool":
        # Agno's own tool results carry the tool as tool_name (``name`` would be sent as the OpenAI
        # participant name, which a tool message does not take).
        return Message(role="tool", content=message.content, tool_call_id=message.tool_call_id, tool_name=message.name)
    if message.tool_calls:
        calls = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": _arguments_text(call)}}
            for call in message.tool_calls
        ]
        return Message(role=message.role, content=message.content or None, tool_calls=calls)
    return Message(role=message.role, content=message.content)


def _requested(calls: Sequence[Any]) -> list[RequestedToolCall]:
    """Agno's complete tool calls (OpenAI-style dicts) as RequestedToolCalls; arguments kept as text."""
    requested: list[RequestedToolCall] = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        requested.append(
            RequestedToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode(),
            )
        )
    return requested


@dataclasses.dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    fragments: list[str] = dataclasses.field(default_factory=list)


class _StreamedToolCalls:
    """Tool calls assembled from a stream's items. OpenAI-style classes yield the SDK's delta objects:
    the first of a call carries its index, id and name, the next ones the same index and a fragment of
    the arguments, merged here in order. Claude yields each call complete, as a dict, at its block's
    stop.

    Some OpenAI-compatible servers number every call 0, or leave the index out: a delta with a new id is
    then a new call, and one without an index continues the call in progress."""

    def __init__(self) -> None:
        self._partial: dict[int, _PartialCall] = {}  # in order of first appearance
        self._index_of: dict[int, int] = {}  # the provider's index -> the key of its current call
        self._current: int | None = None
        self._complete: list[RequestedToolCall] = []

    def add(self, items: Sequence[Any]) -> None:
        for item in items:
            if isinstance(item, dict):
                self._complete.extend(_requested([item]))
                continue
            call = self._call_for(getattr(item, "index", None), getattr(item, "id", None) or "")
            function = getattr(item, "function", None)
            if function is not None:
                if function.name:
                    call.name = function.name
                if function.arguments:
                    call.fragments.append(function.arguments)

    def _call_for(self, index: int | None, call_id: str) -> _PartialCall:
        key = self._index_of.get(index) if index is not None else self._current
        call = self._partial.get(key) if key is not None else None
        if call is None or (call_id and call.id and call_id != call.id):
            key = len(self._partial)
            call = self._partial[key] = _PartialCall()
            if index is not None:
                self._index_of[index] = key
        if call_id:
            call.id = call_id
        self._current = key
        return call

    def calls(self) -> list[RequestedToolCall]:
        merged = [RequestedToolCall(c.id, c.name, "".join(c.fragments)) for c in self._partial.values()]
        return merged + self._complete


def _usage(response: ModelResponse, cache_counted_apart: bool) -> TokenUsage | None:
    """The usage the provider reported, or None when it reported none, or counts no event can hold exactly
    (10**30 tokens, a negative or fractional count: ``storable.provider_count``). Its cost when the provider
    billed one in the response (OpenRouter's ``usage.cost``, which Agno reads as ``metrics.cost``).

    ``cache_counted_apart`` for Anthropic, whose ``input_tokens`` (Agno's too) leave out the tokens read
    from and written to the prompt cache: they are added back, so that every event's ``prompt_tokens``
    counts all input tokens, as OpenAI's and OpenRouter's do."""
    metrics = response.response_usage
    if metrics is None:
        return None
    prompt = provider_count(getattr(metrics, "input_tokens", 0) or 0)
    completion = provider_count(getattr(metrics, "output_tokens", 0) or 0)
    total = provider_count(getattr(metrics, "total_tokens", 0) or 0)
    cached = provider_count(getattr(metrics, "cache_read_tokens", None))
    cache_writes = provider_count(getattr(metrics, "cache_write_tokens", None))
    if cache_counted_apart and prompt is not None and completion is not None:
        prompt = provider_count(prompt + (cached or 0) + (cache_writes or 0))
        total = provider_count((prompt or 0) + completion)
    if prompt is None or completion is None or total is None:
        return None
    reasoning = provider_count(getattr(metrics, "reasoning_tokens", None))
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total or provider_count(prompt + completion) or 0,
        cached_tokens=cached or None,
        reasoning_tokens=reasoning or None,
        cost_usd=provider_cost(getattr(metrics, "cost", None)),
        cache_write_tokens=cache_writes or None,
    )


class AgnoModelClient:
    """One provider model behind Agno, with per-call copies for per-call parameters."""

    def __init__(self, route: ModelRoute, settings: ResolvedSettings) -> None:
        self._route = route
        self._settings = settings
        self._claude = route.provider.name == "anthropic"
        # The models of the loop used last, read and replaced as one tuple (threads on other loops may
        # switch it between two reads); the loop only weakly, so that a finished loop is let go.
        self._current: tuple[weakref.ReferenceType[asyncio.AbstractEventLoop], Model, dict[Any, Model]] | None = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Model, dict[Any, Model]]] = (
            weakref.WeakKeyDictionary()
        )
        self._new_loop = threading.Lock()
        self._scrubber = Scrubber(self.secrets)

    @property
    def route(self) -> ModelRoute:
        return self._route

    @property
    def server_address(self) -> str | None:
        return self._settings.server_address

    @property
    def server_port(self) -> int | None:
        return self._settings.server_port

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._settings.api_key,) if self._settings.api_key else ()

    def _classified(self, exc: Exception, evidence: ResponseEvidence) -> tuple[ProviderError, Exception | None]:
        """The taxonomy error for ``exc``, and the cause to chain: the SDK's exception stays attached
        for debugging unless its text carries a credential, or the model's output (an unparsable tool
        input is quoted in the SDK's message: only the capture policy decides what of an answer is kept)."""
        error = classify(exc, self._route, evidence, self._scrubber)
        hidden = isinstance(error, InvalidOutputError) or carries_secret(exc, self._scrubber)
        return error, None if hidden else exc

    def _use_loop(self) -> tuple[Model, dict[Any, Model]]:
        """The base model and per-call copies of the current event loop: an SDK's async client belongs to
        the loop it was made on (its pool's connections), so an executor used from a second loop (a
        second ``asyncio.run``, a thread of its own) gets clients of its own there, instead of failing
        every attempt with "Event loop is closed"."""
        loop = asyncio.get_running_loop()
        current = self._current
        if current is not None and current[0]() is loop:
            return current[1], current[2]
        with self._new_loop:  # rare (a loop's first call), and the dict is walked: one thread at a time
            entry = self._by_loop.get(loop)
            if entry is None:
                # A closed loop that is still referenced somewhere can run nothing again: its clients go.
                for closed in [known for known in list(self._by_loop.keys()) if known.is_closed()]:
                    self._by_loop.pop(closed, None)
                base = _build_model(self._route, self._settings, _http_client(self._route.provider.name))
                # Create the SDK client once on the shared instance so that per-call copies reuse it.
                base.get_async_client()  # type: ignore[attr-defined]
                entry = (base, {})
                self._by_loop[loop] = entry
        self._current = (weakref.ref(loop), *entry)
        return entry

    def _model_for(self, params: CallParams) -> Model:
        base, copies = self._use_loop()
        # The attempt's timeout is enforced by the executor (asyncio cancels the request, which closes
        # its connection), so a copy depends only on the sampling parameters and can be reused: a
        # dataclasses.replace per call measured 12 us, three times that between SDK calls.
        # Claude's ainvoke ignores its tool_choice argument: for Claude alone the choice goes on the copy,
        # as a request parameter (the tools themselves still go to ainvoke).
        claude_choice = params.tool_choice if params.tools and isinstance(base, Claude) else None
        key = (params.temperature, params.max_tokens, params.stop_sequences, claude_choice)
        model = copies.get(key)
        if model is None:
            overrides: dict[str, Any] = {}
            if params.temperature is not None:
                overrides["temperature"] = params.temperature
            if params.max_tokens is not None:
                overrides["max_tokens"] = params.max_tokens
            if params.stop_sequences:
                stop_field = "stop_sequences" if isinstance(base, Claude) else "stop"
                overrides[stop_field] = list(params.stop_sequences)
            if claude_choice is not None:
                overrides["request_params"] = {"tool_choice": _anthropic_tool_choice(claude_choice)}
            model = dataclasses.replace(base, **overrides) if overrides else base
            if len(copies) >= _MAX_COPIES:
                copies.clear()
            copies[key] = model
        return model

    def _invoke_arguments(self, messages: Sequence[LLMMessage], params: CallParams) -> dict[str, Any]:
        """What ``ainvoke``/``ainvoke_stream`` take for this call: fresh messages, a fresh assistant
        message (Agno fills it in), and the tools and tool choice of this call only."""
        arguments: dict[str, Any] = {
            "messages": [_agno_message(m) for m in messages],
            "assistant_message": Message(role="assistant"),
        }
        tools = _agno_tools(params.tools)
        if tools is not None:
            arguments["tools"] = tools
            if params.tool_choice is not None and not self._claude:
                arguments["tool_choice"] = _openai_tool_choice(params.tool_choice)
        return arguments

    def _check_credentials(self) -> None:
        if not self._settings.api_key:
            env = self._route.provider.api_key_env
            raise AuthenticationError(
                f"no API key for provider {self._route.provider.name!r}: set {env} or pass "
                f"providers={{'{self._route.provider.name}': ProviderSettings(api_key=...)}}",
                model=self._route.model,
                provider=self._route.provider.name,
            )

    async def complete(self, messages: Sequence[LLMMessage], params: CallParams) -> Completion:
        self._check_credentials()
        model = self._model_for(params)
        capture = ResponseEvidence()
        token = _capture.set(capture)
        try:
            response = await model.ainvoke(**self._invoke_arguments(messages, params))
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified, then re-raised
            error, cause = self._classified(exc, capture)
            raise error from cause
        finally:
            _capture.reset(token)
        text = response.content if isinstance(response.content, str) else ""
        tool_calls = _requested(response.tool_calls or [])
        if capture.finish_reason in _CONTENT_FILTER_REASONS and not text and not tool_calls:
            raise ContentFilterError(
                f"the provider filtered the answer (finish reason {capture.finish_reason})",
                model=self._route.model,
                provider=self._route.provider.name,
                request_id=provider_id(capture.request_id, self._scrubber),
            )
        # What the provider says of its answer is stored and exported: scrubbed here, once, for both.
        scrubber = self._scrubber
        return Completion(
            text=text,
            usage=_usage(response, self._claude),
            finish_reason=provider_id(capture.finish_reason, scrubber),
            request_id=provider_id(capture.request_id, scrubber),
            response_id=provider_id(capture.response_id, scrubber),
            response_model=provider_id(capture.response_model, scrubber),
            tool_calls=tool_calls,
        )

    async def stream(
        self, messages: Sequence[LLMMessage], params: CallParams, result: Completion
    ) -> AsyncIterator[str]:
        self._check_credentials()
        model = self._model_for(params)
        capture = ResponseEvidence()
        token = _capture.set(capture)
        # Joined once at the end: `result.text += chunk` copies the answer so far at every chunk, which is
        # quadratic in a long answer (400,000 small chunks: 204 s of CPU on the event loop).
        pieces: list[str] = []
        tool_calls = _StreamedToolCalls()
        ended = False
        try:
            async for chunk in model.ainvoke_stream(**self._invoke_arguments(messages, params)):
                if not isinstance(chunk, ModelResponse):
                    continue
                if chunk.response_usage is not None:
                    result.usage = _usage(chunk, self._claude)
                if chunk.tool_calls:
                    tool_calls.add(chunk.tool_calls)
                if isinstance(chunk.content, str) and chunk.content:
                    pieces.append(chunk.content)
                    yield chunk.content
            ended = True
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified, then re-raised
            error, cause = self._classified(exc, capture)
            raise error from cause
        finally:
            if ended:
                # Only a stream that ended has calls: a broken one's fragments are not a call.
                result.tool_calls = tool_calls.calls()
            result.text += "".join(pieces)
            result.request_id = provider_id(capture.request_id, self._scrubber)
            # A stream closed from another context (garbage collection) cannot reset the token there.
            with contextlib.suppress(ValueError):
                _capture.reset(token)
