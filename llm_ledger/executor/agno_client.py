"""Model calls through Agno's model classes, one attempt at a time.

Rules learnt from Agno 3.1: call ``aresponse``/``aresponse_stream`` on the model directly (``Agent.arun``
turns errors into text); switch off the SDK's and Agno's own retries so that every attempt is ours and
recorded; never mutate a shared model for per-call parameters (under concurrency that sends one call's
temperature with another's request), but take a ``dataclasses.replace`` copy, which keeps the cached
HTTP client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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
from llm_ledger.events.storable import provider_count
from llm_ledger.executor.classify import (
    ResponseEvidence,
    carries_secret,
    classify,
    provider_id,
    request_id_from,
    retry_after_from,
)
from llm_ledger.executor.client import CallParams, Completion
from llm_ledger.executor.errors import AuthenticationError, ContentFilterError, ProviderError
from llm_ledger.executor.routing import ModelRoute, ResolvedSettings
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

    for logger in {logging.getLogger("agno"), agno_log.logger}:
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


def _usage(response: ModelResponse) -> TokenUsage | None:
    """The usage the provider reported, or None when it reported none, or counts no event can hold exactly
    (10**30 tokens, a negative or fractional count: ``storable.provider_count``)."""
    metrics = response.response_usage
    if metrics is None:
        return None
    prompt = provider_count(getattr(metrics, "input_tokens", 0) or 0)
    completion = provider_count(getattr(metrics, "output_tokens", 0) or 0)
    total = provider_count(getattr(metrics, "total_tokens", 0) or 0)
    if prompt is None or completion is None or total is None:
        return None
    cached = provider_count(getattr(metrics, "cache_read_tokens", None))
    reasoning = provider_count(getattr(metrics, "reasoning_tokens", None))
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total or provider_count(prompt + completion) or 0,
        cached_tokens=cached or None,
        reasoning_tokens=reasoning or None,
    )


class AgnoModelClient:
    """One provider model behind Agno, with per-call copies for per-call parameters."""

    def __init__(self, route: ModelRoute, settings: ResolvedSettings) -> None:
        self._route = route
        self._settings = settings
        self._base: Model | None = None
        self._copies: dict[tuple[float | None, int | None, tuple[str, ...] | None], Model] = {}
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
        for debugging unless its text carries a credential."""
        error = classify(exc, self._route, evidence, self._scrubber)
        return error, None if carries_secret(exc, self._scrubber) else exc

    def _model_for(self, params: CallParams) -> Model:
        if self._base is None:
            self._base = _build_model(self._route, self._settings, _http_client(self._route.provider.name))
            # Create the SDK client once on the shared instance so that per-call copies reuse it.
            self._base.get_async_client()  # type: ignore[attr-defined]
        # The attempt's timeout is enforced by the executor (asyncio cancels the request, which closes
        # its connection), so a copy depends only on the sampling parameters and can be reused: a
        # dataclasses.replace per call measured 12 us, three times that between SDK calls.
        key = (params.temperature, params.max_tokens, params.stop_sequences)
        model = self._copies.get(key)
        if model is None:
            overrides: dict[str, Any] = {}
            if params.temperature is not None:
                overrides["temperature"] = params.temperature
            if params.max_tokens is not None:
                overrides["max_tokens"] = params.max_tokens
            if params.stop_sequences:
                stop_field = "stop_sequences" if isinstance(self._base, Claude) else "stop"
                overrides[stop_field] = list(params.stop_sequences)
            model = dataclasses.replace(self._base, **overrides) if overrides else self._base
            if len(self._copies) >= _MAX_COPIES:
                self._copies.clear()
            self._copies[key] = model
        return model

    def _messages(self, messages: Sequence[LLMMessage]) -> list[Message]:
        # Agno appends the assistant's answer to the list it is given: a fresh list per call.
        return [Message(role=m.role, content=m.content) for m in messages]

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
            response = await model.aresponse(messages=self._messages(messages))
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified, then re-raised
            error, cause = self._classified(exc, capture)
            raise error from cause
        finally:
            _capture.reset(token)
        text = response.content if isinstance(response.content, str) else ""
        if capture.finish_reason in _CONTENT_FILTER_REASONS and not text:
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
            usage=_usage(response),
            finish_reason=provider_id(capture.finish_reason, scrubber),
            request_id=provider_id(capture.request_id, scrubber),
            response_id=provider_id(capture.response_id, scrubber),
            response_model=provider_id(capture.response_model, scrubber),
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
        try:
            async for chunk in model.aresponse_stream(messages=self._messages(messages)):
                if not isinstance(chunk, ModelResponse):
                    continue
                if chunk.response_usage is not None:
                    result.usage = _usage(chunk)
                if isinstance(chunk.content, str) and chunk.content:
                    pieces.append(chunk.content)
                    yield chunk.content
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified, then re-raised
            error, cause = self._classified(exc, capture)
            raise error from cause
        finally:
            result.text += "".join(pieces)
            result.request_id = provider_id(capture.request_id, self._scrubber)
            # A stream closed from another context (garbage collection) cannot reset the token there.
            with contextlib.suppress(ValueError):
                _capture.reset(token)
