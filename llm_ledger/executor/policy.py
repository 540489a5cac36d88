"""The retry and fallback policy: what to do after a failed attempt, decided from the error class."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

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

# Transient: the same model may well answer if asked again after a pause.
_RETRYABLE: tuple[type[ProviderError], ...] = (RateLimitError, ServerError, TimeoutError, ProviderConnectionError)
# Permanent for this model: asking it again gives the same answer, but the next provider may not
# (other credentials, a larger context window, another filter, another schema adherence).
_FALL_BACK_AT_ONCE: tuple[type[ProviderError], ...] = (
    ContextLengthError,
    ContentFilterError,
    AuthenticationError,
    InvalidRequestError,
    ModelNotFoundError,
    InvalidOutputError,
)

Action = Literal["retry", "fall_back", "fail"]


def is_retryable(error: ProviderError) -> bool:
    """Whether the same model may be asked again after this error."""
    return isinstance(error, _RETRYABLE)


def should_fall_back(error: ProviderError) -> bool:
    """Whether this error lets the execution move on to the next model of the chain."""
    return isinstance(error, _RETRYABLE + _FALL_BACK_AT_ONCE) or type(error) is ProviderError


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0
    """Seconds to wait before the retry (``retry`` only)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

    The n-th retry waits ``min(max_delay, base_delay * multiplier**n)``, scaled by a random factor in
    ``[1 - jitter, 1]`` so that many callers throttled together do not retry together. A provider's
    ``Retry-After`` is a floor. When the wait would exceed ``max_retry_after`` or the time left before
    the deadline, the executor falls back at once instead of sleeping: another provider is likely to
    answer sooner than a throttled one.
    """

    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 20.0
    jitter: float = 0.5
    max_retry_after: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        # NaN passes every comparison below, then becomes a backoff no event can hold (a broken stream).
        numbers = {"base_delay": self.base_delay, "multiplier": self.multiplier, "max_delay": self.max_delay,
                   "jitter": self.jitter, "max_retry_after": self.max_retry_after}  # fmt: skip
        for name, value in numbers.items():
            if math.isnan(value):
                raise ValueError(f"RetryPolicy.{name} must be a number, not NaN")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")
        if self.multiplier < 1:
            raise ValueError("RetryPolicy.multiplier must be at least 1")

    def backoff(self, retry: int) -> float:
        """The pause before retry number ``retry`` (0 for the first retry), jitter included."""
        ceiling = min(self.max_delay, self.base_delay * self.multiplier**retry)
        return ceiling * (1 - self.jitter * self.rng.random())

    def decide(
        self,
        error: ProviderError,
        *,
        retries_done: int,
        max_retries: int,
        has_next_model: bool,
        time_left: float,
    ) -> Decision:
        """What to do after ``error`` ended an attempt that was retry number ``retries_done`` of its model."""
        if is_retryable(error) and retries_done < max_retries:
            delay = self.backoff(retries_done)
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            waits_too_long = (error.retry_after or 0.0) > self.max_retry_after or delay >= time_left
            if not waits_too_long:
                return Decision("retry", delay)
            if not has_next_model and delay < time_left:
                return Decision("retry", delay)
        if has_next_model and should_fall_back(error):
            return Decision("fall_back")
        return Decision("fail")
