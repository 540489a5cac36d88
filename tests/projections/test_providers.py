"""The provider a read model counts a model under: its routing prefix, or for a ``mock/`` model named
after a provider, that provider (the model string, which the read models keep too, still says mock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, Text, insert, select

from llm_ledger.executor import PROVIDERS
from llm_ledger.projections import MOCKED_PROVIDERS, provider_is_one_of, provider_of

MODEL_STRINGS = (
    "openrouter/anthropic/claude-3-haiku",
    "openai/gpt-4.1",
    "OpenAI/gpt-4.1",
    "openai",
    "openaiish/model",
    "mock/openai-gpt-4.1",
    "mock/openai",
    "mock/openai/gpt",
    "mock/OpenAI-gpt",
    "mock/groq-like-llama?p50_ms=1&seed=12",
    "mock/openrouter-claude-3.5-sonnet",
    "mock/flaky",
    "mock/openaiish-model",
    "mock",
    "mock-like/openai-x",
    "/leading-slash",
    "",
    "100%/x",
    "a_b/x",
    None,
)
"""Model strings at the edges of ``provider_of``'s rule: case, a missing slash or dash, LIKE's wildcards."""


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


@pytest.fixture
def model_strings(ledger_url: str, engine_of: Callable[[str], Engine]) -> tuple[Engine, Table]:
    """``MODEL_STRINGS`` in a table of their own, in a real database of each dialect."""
    table = Table("provider_rule_models", MetaData(), Column("id", Integer, primary_key=True), Column("model", Text))
    engine = engine_of(ledger_url)
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(insert(table), [{"id": i, "model": model} for i, model in enumerate(MODEL_STRINGS)])
    return engine, table


@pytest.mark.parametrize(
    "providers",
    [(p,) for p in sorted({provider_of(m) for m in MODEL_STRINGS} | {"anthropic", "100%", "a_b", "nobody"})]
    + [("openai", "mock"), ("groq", "openrouter", "")],
)
def test_the_sql_provider_rule_agrees_with_provider_of(
    model_strings: tuple[Engine, Table], providers: tuple[str, ...]
) -> None:
    engine, table = model_strings
    expected = {i for i, model in enumerate(MODEL_STRINGS) if provider_of(model) in providers}

    with engine.connect() as connection:
        found = set(
            connection.execute(select(table.c.id).where(provider_is_one_of(table.c.model, providers))).scalars()
        )

    assert found == expected
