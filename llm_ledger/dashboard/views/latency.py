"""Latency: execution latency percentiles over time by step and by model, and the steps x models table."""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import latency_rows, milliseconds, step_model_rows
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, nothing_in_window
from llm_ledger.projections.queries import Dimension


def render(page: PageContext) -> None:
    heading(page, "Latency", "Execution latency (every attempt included), p50 / p95 / p99")
    totals = page.view.totals(page.tenant, page.window, page.filters)
    if not totals.executions:
        nothing_in_window(page)
        return
    p50, p95, p99 = totals.latency_percentiles()
    st.caption(f"Whole window: p50 {milliseconds(p50)} · p95 {milliseconds(p95)} · p99 {milliseconds(p99)}")
    by_step, by_model = st.tabs(["By step", "By model"])
    splits: tuple[tuple[DeltaGenerator, Dimension], ...] = ((by_step, "step"), (by_model, "model"))
    series_per_split = page.view.series_by(
        page.tenant, page.window, [dimension for _, dimension in splits], page.filters
    )
    for (tab, dimension), series in zip(splits, series_per_split, strict=True):
        with tab:
            rows = latency_rows(series, page.buckets)
            st.altair_chart(charts.latency(rows, dimension), width="stretch")
    st.subheader("Steps x models")
    groups = page.view.breakdown(page.tenant, page.window, ("step", "model"), page.filters)
    st.dataframe(step_model_rows(groups), hide_index=True, width="stretch")
