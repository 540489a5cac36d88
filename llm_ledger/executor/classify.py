"""Classification of provider failures into the error taxonomy, done once, at the edge.

Agno wraps the provider SDKs' exceptions in its own (``ModelProviderError`` and subclasses), and
loses detail on the way: timeouts and refused connections both arrive as a made-up status 502,
and for some errors ``e.__cause__ is e``. So the whole cause chain is walked (with cycle detection)
and the most specific evidence wins: the SDK's own exception class and HTTP status, then Agno's
classification, then the body's error code.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import groq
import httpx
import openai
from agno.exceptions import (
    ContextWindowExceededError,
    ModelAuthenticationError,
    ModelProviderError,
    ModelRateLimitError,
)

from llm_ledger.events import Scrubber
from llm_ledger.events.storable import MAX_MESSAGE_CHARS, provider_seconds, provider_text
from llm_ledger.executor.errors import (
    AuthenticationError,
    ContentFilterError,
    ContextLengthError,
    InvalidOutputError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
    TimeoutError,
)
from llm_ledger.executor.routing import ModelRoute

try:  # the anthropic SDK moved to httpx2 in 1.0
    import httpx2

    _HTTP_TIMEOUTS: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
    _HTTP_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover - depends on the installed anthropic SDK
    _HTTP_TIMEOUTS = (httpx.TimeoutException,)
    _HTTP_TRANSPORT_ERRORS = (httpx.TransportError,)

_SDK_STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError, groq.APIStatusError)
_SDK_TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError, groq.APITimeoutError, *_HTTP_TIMEOUTS)
_SDK_CONNECTION_ERRORS = (
    openai.APIConnectionError,
    anthropic.APIConnectionError,
    groq.APIConnectionError,
    *_HTTP_TRANSPORT_ERRORS,
)
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_CONTENT_FILTER_CODES = {"content_filter", "content_policy_violation", "content_filtered"}
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-groq-id", "cf-ray")


@dataclass(slots=True)
class ResponseEvidence:
    """What the HTTP layer saw of the last response of an attempt (filled in by a response hook)."""

    status_code: int | None = None
    request_id: str | None = None
    retry_after: float | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    response_model: str | None = None


def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes and contexts, each once, even when the chain loops back on itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def carries_secret(exc: BaseException, scrubber: Scrubber) -> bool:
    """Whether any exception in the chain of ``exc`` has a credential in its text."""
    return any(scrubber.scrub(str(e)) != str(e) for e in cause_chain(exc))


def request_id_from(headers: Any) -> str | None:
    if not headers:
        return None
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return str(value)
    return None


def retry_after_from(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), as an event can
    hold them: ``inf`` or a year is a day (``MAX_RETRY_AFTER_SECONDS``, longer than any policy waits),
    ``nan`` unknown, a negative value or a past date 0."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            seconds = provider_seconds(float(millis) / 1000.0)
        except ValueError:
            pass
        else:
            if seconds is not None:
                return seconds
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return provider_seconds(float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return provider_seconds(email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def provider_id(value: object, scrubber: Scrubber) -> str | None:
    """An id, model name or finish reason a provider sent, as it may be stored and exported: a string,
    scrubbed (providers echo what they were sent), cut to ``MAX_FIELD_CHARS``, NULs replaced."""
    if value is None:
        return None
    return provider_text(scrubber.scrub(value if isinstance(value, str) else str(value)))


_UNPARSABLE_TOOL_INPUT = "Unable to parse tool parameter JSON from model"


def _is_unparsable_tool_input(error: BaseException) -> bool:
    """The anthropic SDK's failure to parse a streamed tool_use block's input (a ``ValueError`` raised
    while it accumulates ``input_json_delta`` fragments)."""
    return type(error) is ValueError and str(error).startswith(_UNPARSABLE_TOOL_INPUT)


def _body_code(error: Any) -> str | None:
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            for key in ("code", "type"):
                value = inner.get(key)
                if isinstance(value, str):
                    return value
    return None


def _sdk_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(error, "message", None) or error)


def classify(
    exc: BaseException,
    route: ModelRoute,
    evidence: ResponseEvidence | None = None,
    scrubber: Scrubber | None = None,
) -> ProviderError:
    """The taxonomy error for a failure raised by an Agno model call (or the SDK under it).

    ``evidence`` is what the HTTP layer saw: Agno raises 401, 404 and 429 without the SDK exception
    that carried the response, so the status and headers come from there when the chain lacks them.
    """
    if isinstance(exc, ProviderError):
        return exc
    chain = list(cause_chain(exc))
    status_error = next((e for e in chain if isinstance(e, _SDK_STATUS_ERRORS)), None)
    agno_error = next((e for e in chain if isinstance(e, ModelProviderError)), None)
    if agno_error is not None:
        # A model's own ainvoke raises its error unclassified (Agno's retry wrapper, which the executor
        # does not use, is what turns 429s and "context window" wordings into subclasses): same reading.
        agno_error = ModelProviderError.classify(agno_error)
    unparsable_arguments = any(_is_unparsable_tool_input(e) for e in chain)
    timed_out = any(isinstance(e, _SDK_TIMEOUTS) for e in chain)
    unreachable = any(isinstance(e, _SDK_CONNECTION_ERRORS) for e in chain)

    evidence = evidence or ResponseEvidence()
    headers = status_error.response.headers if status_error is not None else None
    status = status_error.status_code if status_error is not None else None
    if status is None and evidence.status_code is not None and evidence.status_code >= 400:
        status = evidence.status_code
    code = _body_code(status_error) if status_error is not None else None
    message = _sdk_message(status_error) if status_error is not None else str(agno_error or exc)
    retry_after = retry_after_from(headers) if headers is not None else evidence.retry_after
    # Providers echo the key they were sent ("Incorrect API key provided: sk-..."): never pass it on. A
    # provider's HTML error page is cut: the message goes into an event and a span.
    scrubber = scrubber or Scrubber()
    message = provider_text(scrubber.scrub(message), MAX_MESSAGE_CHARS)
    kwargs: dict[str, Any] = {
        "model": route.model,
        "provider": route.provider.name,
        "status_code": status,
        "request_id": provider_id(request_id_from(headers) or evidence.request_id, scrubber),
    }

    if status is None and unparsable_arguments:
        # The model's answer arrived but its tool call cannot be read: its output is at fault, not the
        # provider (the SDK's own text carries the arguments, which only the capture policy may store).
        return InvalidOutputError(
            "the model's tool call arguments are not valid JSON (the streamed tool input could not be parsed)",
            **kwargs,
        )
    if status is None and timed_out:
        return TimeoutError(message or "the request timed out", **kwargs)
    if status is None and unreachable:
        return ProviderConnectionError(message or "the provider could not be reached", **kwargs)
    if isinstance(agno_error, ModelRateLimitError) or status in (429, 529):
        kwargs["status_code"] = status or (agno_error.status_code if agno_error else None)
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    if isinstance(agno_error, ContextWindowExceededError) or code in _CONTEXT_CODES or status == 413:
        return ContextLengthError(message, **kwargs)
    if isinstance(agno_error, ModelAuthenticationError) or status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if code in _CONTENT_FILTER_CODES:
        return ContentFilterError(message, **kwargs)
    if status == 404:
        return ModelNotFoundError(message, **kwargs)
    if status is not None and 400 <= status < 500:
        return InvalidRequestError(message, **kwargs)
    if status is not None and status >= 500:
        return ServerError(message, **kwargs)
    return ProviderError(message or type(exc).__name__, **kwargs)
