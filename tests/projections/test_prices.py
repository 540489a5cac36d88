"""Price tables: exact and prefix matches; a table that cannot be used says which file and entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_ledger.projections import Price, PriceTable, PriceTableError


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def table(tmp_path: Path) -> PriceTable:
    return PriceTable.load(
        write(
            tmp_path,
            """
            [models."openai/gpt-4o-mini"]
            input_per_million = 0.15
            output_per_million = 0.60

            [models."anthropic/*"]
            input_per_million = 3
            output_per_million = 15.0

            [models."anthropic/claude-3-haiku*"]
            input_per_million = 0.25
            output_per_million = 1.25
            """,
        )
    )


def test_an_exact_model_has_its_price(table: PriceTable) -> None:
    assert table.price_of("openai/gpt-4o-mini") == Price(0.15, 0.60)


def test_a_prefix_matches_the_models_it_starts(table: PriceTable) -> None:
    assert table.price_of("anthropic/claude-3-5-sonnet") == Price(3.0, 15.0)


def test_the_longest_prefix_wins(table: PriceTable) -> None:
    assert table.price_of("anthropic/claude-3-haiku-20240307") == Price(0.25, 1.25)


def test_a_model_without_a_price_has_no_cost_not_a_cost_of_zero(table: PriceTable) -> None:
    assert table.price_of("openai/gpt-4o") is None
    assert table.cost("openai/gpt-4o", 1_000, 1_000) is None


def test_cost_is_tokens_times_price_per_million(table: PriceTable) -> None:
    assert table.cost("openai/gpt-4o-mini", 2_000_000, 1_000_000) == pytest.approx(0.30 + 0.60)


def test_no_table_configured_prices_nothing() -> None:
    assert PriceTable.from_env({}).price_of("openai/gpt-4o-mini") is None


def test_the_table_is_read_from_llm_ledger_prices(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."x/y"]\ninput_per_million = 1\noutput_per_million = 2\n')
    assert PriceTable.from_env({"LLM_LEDGER_PRICES": str(path)}).price_of("x/y") == Price(1.0, 2.0)


@pytest.mark.parametrize(
    ("content", "entry"),
    [
        ('[models."x/y"]\ninput_per_million = "cheap"\noutput_per_million = 1\n', "input_per_million"),
        ('[models."x/y"]\ninput_per_million = -1\noutput_per_million = 1\n', "input_per_million"),
        ('[models."x/y"]\ninput_per_million = 1\n', "output_per_million"),
        ('[models."x/y"]\ninput_per_million = true\noutput_per_million = 1\n', "input_per_million"),
        ('[models."x/y"]\ninput_per_million = 1\noutput_per_million = 1\ncurrency = "EUR"\n', "currency"),
        ('[models]\n"x/y" = 3\n', "must be a table"),
    ],
)
def test_a_bad_entry_raises_naming_the_file_and_the_entry(tmp_path: Path, content: str, entry: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(PriceTableError) as error:
        PriceTable.load(path)
    assert str(path) in str(error.value)
    assert "x/y" in str(error.value)
    assert entry in str(error.value)


def test_a_table_that_is_not_toml_raises_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[models\n")
    with pytest.raises(PriceTableError, match=re.escape(str(path))):
        PriceTable.load(path)


def test_a_missing_file_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match=r"absent\.toml"):
        PriceTable.load(tmp_path / "absent.toml")
