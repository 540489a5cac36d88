"""An attempt is priced at the moment of its request, not of its answer: a call sent before a price change
and answered after it costs the old price (OpenAI's o3, whose price fell on 2025-06-10)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import genai_prices

from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.events import EventDraft
from llm_ledger.executor import InMemorySink, ProviderSettings
from tests.fakes import FakeProviderServer, Reply
from tests.projections.test_catalogue_costs import projected_cost

PRICE_CHANGE = datetime(2025, 6, 10, tzinfo=UTC)
HELLO = [LLMMessage(role="user", content="hello")]


class AcrossThePriceChange:
    """Holds an execution's drafts, then moves them all by one offset: its answer half its latency after
    the price change, so that its request was half its latency before."""

    def __init__(self, inner: InMemorySink) -> None:
        self._inner = inner
        self._drafts: list[EventDraft] = []

    def emit(self, event: EventDraft) -> None:
        self._drafts.append(event)

    def flush(self) -> None:
        (answered,) = (draft for draft in self._drafts if draft.event_type == "AttemptSucceeded")
        latency = timedelta(milliseconds=float(answered.payload.latency_ms) / 2)  # type: ignore[attr-defined]
        offset = PRICE_CHANGE + latency - answered.occurred_at
        for draft in self._drafts:
            draft.occurred_at += offset
            self._inner.emit(draft)


async def test_a_call_sent_before_a_price_change_costs_the_old_price(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger_url: str
) -> None:
    server.default("o3", Reply(input_tokens=10_000, output_tokens=1_000))
    sink = InMemorySink()
    shifted = AcrossThePriceChange(sink)
    with execution_context(tenant_id="tenant-costs", step="answer"):
        await LLMExecutor("openai/o3", sink=shifted, providers=providers).generate(HELLO)
    shifted.flush()

    usage = genai_prices.Usage(input_tokens=10_000, output_tokens=1_000)
    before, after = (
        float(genai_prices.calc_price(usage, "o3", provider_id="openai", genai_request_timestamp=at).total_price)
        for at in (PRICE_CHANGE - timedelta(seconds=1), PRICE_CHANGE)
    )
    assert before > after, "o3's price fell at the change"
    cost = projected_cost(ledger_url, sink.events)
    assert cost is not None and math.isclose(cost, before, rel_tol=1e-12)
