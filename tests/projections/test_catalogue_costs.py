"""Costs of real calls to the fake providers, projected: the provider's reported cost when it billed one,
else the TOML table's price when it names the model, else the ``genai-prices`` catalogue's price at the time
of the call (tokens read from and written to the prompt cache at their own rates, whichever way the provider
counts them); a model none knows has no cost (NULL). The catalogue is the package's bundled one, whatever
snapshot another library set."""

from __future__ import annotations

import math
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import data_snapshot
from sqlalchemy import text

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, execution_context
from llm_ledger.events import Event
from llm_ledger.executor import ProviderSettings
from llm_ledger.projections import Price, PriceTable
from llm_ledger.projections.grains import DAY
from llm_ledger.store import create_store_engine
from tests.fakes import FakeProviderServer, Reply
from tests.projections.conftest import store_events
from tests.projections.projecting import project_url

HELLO = [LLMMessage(role="user", content="hello")]
TENANT = "tenant-costs"
CACHED_CALL = Reply(text="cached answer", input_tokens=12_000, output_tokens=800, cached_tokens=10_000)
CLAUDE_CACHED_CALL = Reply(
    text="cached answer", input_tokens=12_000, output_tokens=800, cached_tokens=10_000, cache_write_tokens=1_000
)
"""Anthropic sends 1,000 new input tokens: fewer than the cached ones, which the catalogue refused when they
were taken for a part of them."""


async def _call(model: str, providers: dict[str, ProviderSettings], *, stream: bool = False) -> list[Event]:
    sink = InMemorySink()
    executor = LLMExecutor(model, sink=sink, providers=providers)
    with execution_context(tenant_id=TENANT, agent_id="support", step="answer"):
        if stream:
            [chunk async for chunk in executor.generate_stream(HELLO)]
        else:
            await executor.generate(HELLO)
    return sink.events


def projected_cost(url: str, events: list[Event], prices: PriceTable | None = None) -> float | None:
    store_events(url, events)
    project_url(url, prices=prices or PriceTable())
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            cost: float | None = connection.execute(
                text("SELECT cost_usd FROM llm_ledger_step_stats WHERE grain_seconds = :grain"), {"grain": DAY}
            ).scalar_one()
    finally:
        engine.dispose()
    return cost


def _answered(events: list[Event]) -> Event:
    (answered,) = (event for event in events if event.event_type == "AttemptSucceeded")
    return answered


async def test_a_known_models_cost_is_genai_prices_own_with_cached_tokens(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str
) -> None:
    server.default("gpt-4o-mini", CACHED_CALL)
    events = await _call("openai/gpt-4o-mini", providers)
    answered = _answered(events)
    usage = answered.payload.usage  # type: ignore[union-attr]
    assert usage is not None and usage.cached_tokens == 10_000 and usage.cost_usd is None

    catalogue = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12_000, cache_read_tokens=10_000, output_tokens=800),
        "gpt-4o-mini",
        provider_id="openai",
        genai_request_timestamp=answered.occurred_at,
    ).total_price
    uncached = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12_000, output_tokens=800), "gpt-4o-mini", provider_id="openai"
    ).total_price
    assert catalogue < uncached, "the cached tokens are billed at their own, lower rate"
    cost = projected_cost(ledger_url, events)
    assert cost is not None and math.isclose(cost, float(catalogue), rel_tol=1e-12)


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
async def test_claudes_cache_reads_and_writes_are_priced_as_the_catalogue_prices_anthropics_usage(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str, stream: bool
) -> None:
    server.default("claude-haiku-4-5", CLAUDE_CACHED_CALL)
    events = await _call("anthropic/claude-haiku-4-5", providers, stream=stream)
    usage = _answered(events).payload.usage  # type: ignore[union-attr]
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (12_000, 10_000, 1_000)
    assert usage.total_tokens == 12_800

    wire_usage = {
        "input_tokens": 1_000,
        "cache_read_input_tokens": 10_000,
        "cache_creation_input_tokens": 1_000,
        "output_tokens": 800,
    }
    extracted = genai_prices.extract_usage({"model": "claude-haiku-4-5", "usage": wire_usage}, provider_id="anthropic")
    catalogue = extracted.calc_price().total_price
    cost = projected_cost(ledger_url, events)
    assert cost is not None and math.isclose(cost, float(catalogue), rel_tol=1e-12)


async def test_a_custom_snapshot_set_in_the_process_changes_no_cost(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str
) -> None:
    server.default("gpt-4o-mini", CACHED_CALL)
    events = await _call("openai/gpt-4o-mini", providers)
    bundled = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12_000, cache_read_tokens=10_000, output_tokens=800),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    # What UpdatePrices does with the prices it fetched: here, a catalogue that knows no model at all.
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=[], from_auto_update=True))
    try:
        cost = projected_cost(ledger_url, events)
    finally:
        data_snapshot.set_custom_snapshot(None)

    assert cost is not None and math.isclose(cost, float(bundled), rel_tol=1e-12)


async def test_the_toml_table_overrides_the_catalogue(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str
) -> None:
    server.default("gpt-4o-mini", CACHED_CALL)
    events = await _call("openai/gpt-4o-mini", providers)
    override = PriceTable(exact={"openai/gpt-4o-mini": Price(input_per_million=1.0, output_per_million=2.0)})

    cost = projected_cost(ledger_url, events, override)

    assert cost is not None and math.isclose(cost, (12_000 * 1.0 + 800 * 2.0) / 1_000_000, rel_tol=1e-12)


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
async def test_openrouters_reported_cost_is_recorded_and_preferred(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str, stream: bool
) -> None:
    server.default("anthropic/claude-3.5-haiku", Reply(input_tokens=5_000, output_tokens=300, cost=0.0123))
    events = await _call("openrouter/anthropic/claude-3.5-haiku", providers, stream=stream)
    override = PriceTable(prefixes={"openrouter/": Price(input_per_million=100.0, output_per_million=100.0)})

    answered = _answered(events).payload.usage  # type: ignore[union-attr]
    (succeeded,) = (event for event in events if event.event_type == "ExecutionSucceeded")
    assert answered is not None and answered.cost_usd == 0.0123
    assert succeeded.payload.usage.cost_usd == 0.0123  # type: ignore[union-attr]
    usage = genai_prices.Usage(input_tokens=5_000, output_tokens=300)
    catalogue = genai_prices.calc_price(usage, "anthropic/claude-3.5-haiku", provider_id="openrouter").total_price
    assert catalogue != Decimal("0.0123"), "the catalogue knows the model, at another price"
    assert projected_cost(ledger_url, events, override) == 0.0123


async def test_a_model_no_price_knows_has_no_cost_not_zero(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str
) -> None:
    server.default("no-such-model-anywhere", CACHED_CALL)
    events = await _call("openai/no-such-model-anywhere", providers)

    assert projected_cost(ledger_url, events) is None
