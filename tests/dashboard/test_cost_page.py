"""The Cost page under AppTest: its tokens, cost and change against the previous window equal what
the raw events say, priced by the fixture's price table; its time to first chunk is that of the streamed
executions, within the histogram's precision."""

from __future__ import annotations

import math
from collections.abc import Callable

from llm_ledger.events import Event
from llm_ledger.projections import histogram
from llm_ledger.projections.queries import Window
from tests.dashboard.apptest import deltas, metrics, open_dashboard
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.ledger import PRICES, KnownLedger

Configure = Callable[..., None]


def _answered(ledger: KnownLedger, window: Window) -> list[Event]:
    return [
        e
        for e in ledger.events
        if e.tenant_id == ledger.tenant
        and e.event_type == "AttemptSucceeded"
        and window.start <= e.occurred_at < window.end
    ]


def _tokens(answered: list[Event]) -> tuple[int, int]:
    usages = [e.payload.usage for e in answered if e.payload.usage]  # type: ignore[union-attr]
    return sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages)


def _cost(answered: list[Event]) -> float:
    total = 0.0
    for event in answered:
        payload = event.payload
        cost = PRICES.cost(payload.model, payload.usage.prompt_tokens, payload.usage.completion_tokens)  # type: ignore[union-attr]
        total += cost or 0.0
    return total


def test_the_cost_page_shows_the_tokens_and_cost_the_raw_events_imply(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger
    app = open_dashboard(page="cost", tenant=ledger.tenant, window="1h")

    now, before = _answered(ledger, ledger.last_hour()), _answered(ledger, ledger.last_hour().previous())
    (tokens_in, tokens_out), (before_in, _) = _tokens(now), _tokens(before)
    assert tokens_in and before_in, "the fixture has answered attempts in both hours"
    shown, changes = metrics(app), deltas(app)
    assert shown["Input tokens"] == f"{tokens_in:,}"
    assert shown["Output tokens"] == f"{tokens_out:,}"
    assert changes["Input tokens"] == f"{tokens_in - before_in:+d}"
    assert shown["Cost"] == f"${_cost(now):,.4f}"
    change = _cost(now) - _cost(before)
    assert changes["Cost"] == f"{'-' if change < 0 else '+'}${abs(change):,.4f}"
    assert not app.exception and not app.error


def test_a_model_without_a_price_shows_no_cost_rather_than_zero(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger
    app = open_dashboard(page="cost", tenant=ledger.other_tenant, window="1h")

    assert metrics(app)["Cost"] == "—"
    assert any("no model of this window has a known price" in caption.value for caption in app.main.caption)


def test_the_cost_page_shows_the_time_to_first_chunk_of_streamed_executions(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger
    app = open_dashboard(page="cost", tenant=ledger.tenant, window="1d")

    first_chunks = sorted(
        e.payload.time_to_first_chunk_ms
        for e in ledger.events
        if e.tenant_id == ledger.tenant and e.event_type == "AttemptSucceeded" and e.payload.time_to_first_chunk_ms
    )
    assert len(first_chunks) == 3, "the fixture streams three executions"
    [table] = [frame.value for frame in app.main.dataframe if "streamed attempts" in frame.value.columns]
    [row] = table.to_dict("records")
    assert (row["step"], row["streamed attempts"]) == ("summarize", 3)
    exact_p50 = first_chunks[1]
    assert math.isclose(row["p50 ms"], exact_p50, rel_tol=histogram.RELATIVE_ERROR, abs_tol=0.05)
