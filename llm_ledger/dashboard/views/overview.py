"""Overview: the window's headline figures against the previous window, and activity over time."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import activity_rows, overview_metrics
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, metrics_row, nothing_in_window


def render(page: PageContext) -> None:
    heading(page, "Overview", "Executions, errors, fallbacks and latency")
    current = metrics_row(page, overview_metrics)
    tokens = f"Tokens: {current.input_tokens:,} in, {current.output_tokens:,} out"
    cost = "" if current.cost_usd is None else f" · cost ${current.cost_usd:,.4f}"
    st.caption(f"{tokens}{cost} · {current.attempts:,} attempts, {current.attempt_failures:,} failed")
    if not current.executions:
        nothing_in_window(page)
        return
    st.subheader("Over time")
    activity = activity_rows(page.view.series(page.tenant, page.window, filters=page.filters), page.buckets)
    st.altair_chart(charts.activity(activity), width="stretch")
