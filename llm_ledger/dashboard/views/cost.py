"""Cost: tokens and cost over time by model, agent or step against the previous window, and the
time to first chunk of streamed executions per step and model."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.cost_shaping import cost_metrics, first_chunk_rows, priced_rows, usage_rows, usage_table
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, metrics_row, nothing_in_window
from llm_ledger.projections.queries import Dimension

SPLITS: dict[str, Dimension] = {"By model": "model", "By agent": "agent_id", "By step": "step"}
UNPRICED = (
    "No cost: no model of this window has a known price (neither reported by its provider, nor in the price "
    "table `LLM_LEDGER_PRICES`, nor in genai-prices; the demo's mock models have none)."
)


def render(page: PageContext) -> None:
    heading(page, "Cost", "Tokens, cost and time to first chunk, against the previous window")
    current = metrics_row(page, cost_metrics)
    if not current.attempts:
        nothing_in_window(page, "attempts")
        return
    bys: list[tuple[Dimension, ...]] = [*((dimension,) for dimension in SPLITS.values()), ("step", "model")]
    *tables, streamed_groups = page.view.breakdowns(page.tenant, page.window, bys, page.filters)
    earlier_tables = page.view.breakdowns(page.tenant, page.window.previous(), bys[:-1], page.filters)
    series_per_split = page.view.series_by(page.tenant, page.window, list(SPLITS.values()), page.filters)
    tabs = zip(st.tabs(list(SPLITS)), SPLITS.items(), tables, earlier_tables, series_per_split, strict=True)
    for tab, (label, _), table, earlier, series in tabs:
        with tab:
            rows = usage_rows(series, page.buckets)
            title, groups = label.removeprefix("By "), sorted({row["group"] for row in rows})
            st.altair_chart(charts.tokens_over_time(rows, title, groups), width="stretch")
            if current.cost_usd is None:
                st.caption(UNPRICED)
            else:
                st.altair_chart(charts.cost_over_time(priced_rows(rows), title, groups), width="stretch")
            st.dataframe(usage_table(table, earlier), hide_index=True, width="stretch")
    st.subheader("Time to first chunk (streamed executions)")
    streamed = first_chunk_rows(streamed_groups)
    if streamed:
        st.dataframe(streamed, hide_index=True, width="stretch")
    else:
        st.caption("No streamed attempts answered in this window.")
