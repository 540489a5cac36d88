"""With a price table, the read models' costs equal the tokens of the successful attempts priced by SQL
over the raw events; models without a price have no cost at all (NULL, never 0)."""

from __future__ import annotations

import math

from sqlalchemy import text

from llm_ledger.events import Event
from llm_ledger.projections import Price, PriceTable
from llm_ledger.projections.grains import DAY
from llm_ledger.store import create_store_engine
from tests.projections.conftest import store_events
from tests.projections.projecting import project_url

MINI = "mock/openai-like-mini?p50_ms=2&p99_ms=20&rate_limit=0.3&seed=11"
PRICES = PriceTable(
    exact={MINI: Price(input_per_million=0.15, output_per_million=0.60)},
    prefixes={"mock/anthropic-like-": Price(input_per_million=3.0, output_per_million=15.0)},
)


def _priced(model: str) -> Price | None:
    return PRICES.price_of(model)


def test_costs_equal_the_priced_tokens_of_the_raw_events(ledger_url: str, recorded_events: list[Event]) -> None:
    store_events(ledger_url, recorded_events)
    project_url(ledger_url, prices=PRICES)

    expected: dict[str, float] = {}
    for event in recorded_events:
        if event.event_type != "AttemptSucceeded":
            continue
        payload = event.payload.model_dump()
        price = _priced(payload["model"])
        usage = payload.get("usage") or {}
        if price is not None:
            cost = usage.get("prompt_tokens", 0) * price.input_per_million
            cost += usage.get("completion_tokens", 0) * price.output_per_million
            expected[payload["model"]] = expected.get(payload["model"], 0.0) + cost / 1_000_000
    engine = create_store_engine(ledger_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT model, SUM(cost_usd) AS cost, COUNT(cost_usd) AS priced_rows FROM llm_ledger_step_stats"
                    " WHERE grain_seconds = :grain GROUP BY model"
                ),
                {"grain": DAY},
            ).all()
    finally:
        engine.dispose()
    stored = {row.model: row.cost for row in rows}

    assert expected, "the workload has priced models"
    for model, cost in expected.items():
        assert math.isclose(stored[model], cost, rel_tol=1e-9), model
    unpriced = [row for row in rows if _priced(row.model) is None]
    assert unpriced, "the workload has models without a price"
    assert all(row.cost is None and row.priced_rows == 0 for row in unpriced)
