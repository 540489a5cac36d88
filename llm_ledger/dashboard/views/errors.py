"""Errors: attempt failure rate over time by error type, provider and model; counts; latest failures, each
linked to its session and execution."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import error_count_rows, error_rate_rows, failed_attempt_rows, percent
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, links, nothing_in_window
from llm_ledger.projections.queries import Dimension, ErrorDimension

_SPLITS: tuple[tuple[str, ErrorDimension, Dimension | None], ...] = (
    ("By error type", "error_type", None),
    ("By provider", "provider", "provider"),
    ("By model", "model", "model"),
)


def render(page: PageContext) -> None:
    heading(page, "Errors", "Failed attempts (each retry and fallback counts) and failed executions")
    totals = page.view.totals(page.tenant, page.window, page.filters)
    if not totals.attempts:
        nothing_in_window(page, "attempts")
        return
    left, middle, right = st.columns(3)
    left.metric("Attempt failure rate", percent(totals.attempt_failure_rate))
    middle.metric("Failed attempts", f"{totals.attempt_failures:,}")
    right.metric("Failed executions", f"{totals.failed:,}")
    if not totals.attempt_failures:
        st.success("No attempt failed in this window.")
        return
    st.subheader("Failure rate over time")
    tabs = st.tabs([title for title, _, _ in _SPLITS])
    # Each figure read once for the three splits.
    failures_per_split = page.view.error_series_by(
        page.tenant, page.window, [dimension for _, dimension, _ in _SPLITS], filters=page.filters
    )
    attempts_per_split = page.view.series_by(page.tenant, page.window, [by for _, _, by in _SPLITS], page.filters)
    splits = zip(tabs, _SPLITS, failures_per_split, attempts_per_split, strict=True)
    for tab, (_, dimension, _), failures, attempts in splits:
        with tab:
            rows = error_rate_rows(failures, attempts, page.buckets)
            st.altair_chart(charts.error_rate(rows, dimension), width="stretch")
    st.subheader("Failures by error type, provider and model")
    counts = page.view.error_counts(page.tenant, page.window, filters=page.filters)
    st.dataframe(error_count_rows(counts, totals.attempts), hide_index=True, width="stretch")
    st.subheader("Latest failed attempts")
    st.caption("Messages as recorded: secrets were scrubbed before the events were written.")
    failed = page.view.failed_attempts(page.tenant, page.window, limit=50, filters=page.filters)
    st.dataframe(
        failed_attempt_rows(failed, links(page)),
        hide_index=True,
        width="stretch",
        column_config={
            "session": st.column_config.LinkColumn("session", display_text="open session"),
            "execution": st.column_config.LinkColumn("execution", display_text="open execution"),
        },
    )
