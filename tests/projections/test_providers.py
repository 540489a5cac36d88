"""The provider a read model counts a model under: its routing prefix, or for a ``mock/`` model named
after a provider, that provider (the model string, which the read models keep too, still says mock)."""

from __future__ import annotations

import pytest

from llm_ledger.executor import PROVIDERS
from llm_ledger.projections import MOCKED_PROVIDERS, provider_of


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("openrouter/anthropic/claude-3-haiku", "openrouter"),
        ("openai/gpt-4.1", "openai"),
        ("mock/openai-gpt-4.1", "openai"),
        ("mock/openrouter-claude-3.5-sonnet", "openrouter"),
        ("mock/groq-like-llama?p50_ms=1&seed=12", "groq"),
        ("mock/flaky", "mock"),
        ("mock/openaiish-model", "mock"),
        ("mock/mistral-large", "mock"),
        (None, ""),
    ],
)
def test_a_model_counts_under_its_prefix_or_the_provider_its_mock_is_named_after(
    model: str | None, provider: str
) -> None:
    assert provider_of(model) == provider


def test_a_mock_can_stand_for_every_provider_of_the_executor_but_mock() -> None:
    assert frozenset(PROVIDERS) - {"mock"} == MOCKED_PROVIDERS
