"""The error taxonomy. Provider failures are classified once, at the edge, into these classes;
retry and fallback policy is decided from the class, never from message text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from llm_ledger.errors import LedgerError


class ConfigurationError(LedgerError, ValueError):
    """Raised at construction or load time for a bad model string, option or pipeline file."""


class ProviderError(LedgerError):
    """Base of every error an LLM call can end with. Messages never contain secrets."""

    error_type: ClassVar[str] = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.model}: " if self.model else ""
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{where}{self.message}{status}"


class RateLimitError(ProviderError):
    """The provider throttled the call (HTTP 429, Anthropic 529 overloaded)."""

    error_type = "rate_limit"


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (HTTP 401/403), or none are configured."""

    error_type = "authentication"


class TimeoutError(ProviderError):
    """An attempt took longer than its timeout."""

    error_type = "timeout"


class DeadlineExceededError(TimeoutError):
    """The execution's total deadline (``timeout_seconds``) ran out before any model answered."""

    error_type = "deadline_exceeded"


class ProviderConnectionError(ProviderError):
    """The provider could not be reached (refused, reset, DNS, broken stream)."""

    error_type = "connection"


class ServerError(ProviderError):
    """The provider failed on its side (HTTP 5xx)."""

    error_type = "server_error"


class ContextLengthError(ProviderError):
    """The prompt does not fit the model's context window."""

    error_type = "context_length"


class ContentFilterError(ProviderError):
    """The provider refused or filtered the content."""

    error_type = "content_filter"


class InvalidRequestError(ProviderError):
    """The provider rejected the request as malformed (HTTP 400/422 other than context length)."""

    error_type = "invalid_request"


class InvalidInputError(InvalidRequestError, ValueError):
    """The call's input cannot be recorded in the ledger (a lone surrogate, a NUL character where it would
    be stored, text over what an event holds, a non-finite number): refused before any event exists or any
    provider is called. ``field`` names the input (``messages[2].content``, ``stop_sequences[0]``, ...)."""

    error_type = "invalid_input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


class ModelNotFoundError(ProviderError):
    """The provider does not know the model id (HTTP 404)."""

    error_type = "model_not_found"


class InvalidOutputError(ProviderError):
    """The response did not validate against the requested schema."""

    error_type = "invalid_output"


class StreamInterruptedError(ProviderError):
    """A stream failed after chunks had reached the caller, so it could not fall back."""

    error_type = "stream_interrupted"

    def __init__(self, message: str, *, cause: ProviderError, chunks_delivered: int) -> None:
        super().__init__(
            message,
            model=cause.model,
            provider=cause.provider,
            status_code=cause.status_code,
            request_id=cause.request_id,
        )
        self.cause = cause
        self.chunks_delivered = chunks_delivered


class AllModelsFailedError(ProviderError):
    """Every model of the chain failed; ``errors`` holds each attempt's error, in order."""

    error_type = "all_models_failed"

    def __init__(self, message: str, *, errors: Sequence[ProviderError]) -> None:
        last = errors[-1] if errors else None
        super().__init__(
            message,
            model=last.model if last else None,
            provider=last.provider if last else None,
            status_code=last.status_code if last else None,
        )
        self.errors: tuple[ProviderError, ...] = tuple(errors)

    @property
    def last_error(self) -> ProviderError | None:
        return self.errors[-1] if self.errors else None


CANCELLED = "cancelled"
"""The error type recorded when the caller cancels an execution (no exception class: the caller's
``asyncio.CancelledError`` propagates unchanged)."""
