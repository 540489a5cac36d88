"""The retry and fallback decision, from the error class alone."""

from __future__ import annotations

import math
import random

import pytest

from llm_ledger.executor import (
    AuthenticationError,
    ContentFilterError,
    ContextLengthError,
    InvalidOutputError,
    ProviderError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TimeoutError,
)
from llm_ledger.executor.errors import ProviderConnectionError

POLICY = RetryPolicy(base_delay=1.0, multiplier=2.0, max_delay=8.0, jitter=0.5, rng=random.Random(3))


@pytest.mark.parametrize(
    "error", [RateLimitError("x"), ServerError("x"), TimeoutError("x"), ProviderConnectionError("x")]
)
def test_transient_errors_retry_then_fall_back(error: ProviderError) -> None:
    decide = POLICY.decide
    assert decide(error, retries_done=0, max_retries=2, has_next_model=True, time_left=60).action == "retry"
    assert decide(error, retries_done=2, max_retries=2, has_next_model=True, time_left=60).action == "fall_back"
    assert decide(error, retries_done=2, max_retries=2, has_next_model=False, time_left=60).action == "fail"


@pytest.mark.parametrize(
    "error", [ContextLengthError("x"), ContentFilterError("x"), AuthenticationError("x"), InvalidOutputError("x")]
)
def test_permanent_errors_fall_back_at_once(error: ProviderError) -> None:
    decision = POLICY.decide(error, retries_done=0, max_retries=5, has_next_model=True, time_left=60)
    assert decision.action == "fall_back"


def test_backoff_grows_exponentially_within_its_jitter_and_cap() -> None:
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [POLICY.backoff(retry) for _ in range(200)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling * 0.3, "jitter spreads the retries"


def test_retry_after_is_a_floor() -> None:
    error = RateLimitError("slow down", retry_after=5.0)
    decision = POLICY.decide(error, retries_done=0, max_retries=2, has_next_model=True, time_left=60)
    assert decision.action == "retry" and decision.delay >= 5.0


def test_a_wait_beyond_the_deadline_or_the_limit_falls_back_instead() -> None:
    error = RateLimitError("slow down", retry_after=45.0)
    assert POLICY.decide(error, retries_done=0, max_retries=2, has_next_model=True, time_left=600).action == "fall_back"
    short = RateLimitError("slow down", retry_after=3.0)
    assert POLICY.decide(short, retries_done=0, max_retries=2, has_next_model=True, time_left=2).action == "fall_back"


def test_bad_policies_are_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


@pytest.mark.parametrize("name", ["base_delay", "multiplier", "max_delay", "max_retry_after", "jitter"])
def test_a_nan_in_a_policy_is_rejected(name: str) -> None:
    """RetryPolicy(max_delay=nan) passed every check, then made a backoff of NaN seconds: its AttemptFailed
    event could not be sealed, and the writer left a hole in the stream."""
    with pytest.raises(ValueError, match=f"RetryPolicy.{name} must be a number, not NaN"):
        RetryPolicy(**{name: math.nan})  # type: ignore[arg-type]
