"""Fallbacks: how often executions fell back over time, and the chains from -> to with what followed, each
linked to the latest session that took it."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import fallback_edge_rows, fallback_outcome_rows, fallback_rate_rows, percent
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, nothing_in_window, session_link


def render(page: PageContext) -> None:
    heading(page, "Fallbacks", "Executions answered by a model other than the first of their chain")
    totals = page.view.totals(page.tenant, page.window, page.filters)
    if not totals.executions:
        nothing_in_window(page)
        return
    edges = page.view.fallback_edges(page.tenant, page.window, page.filters)
    fallbacks = sum(edge.fallbacks for edge in edges)
    succeeded = sum(edge.succeeded_after for edge in edges)
    if page.filters.names_a_model:
        st.caption(
            "With a model or provider filter: the fallback rate is of the executions the chosen models answered "
            "(or, failed, tried last); a chain counts when it falls back from or to a chosen model."
        )
    left, middle, right = st.columns(3)
    left.metric("Fallback rate", percent(totals.fallback_rate))
    middle.metric("Fallbacks", f"{fallbacks:,}")
    right.metric("Succeeded after fallback", percent(succeeded / fallbacks if fallbacks else None))
    st.subheader("Fallback rate over time")
    rates = fallback_rate_rows(page.view.series(page.tenant, page.window, filters=page.filters), page.buckets)
    st.altair_chart(charts.fallback_rate(rates), width="stretch")
    st.subheader("Chains")
    if not edges:
        st.success("No execution fell back in this window.")
        return
    st.altair_chart(charts.fallback_chains(fallback_outcome_rows(edges)), width="stretch")
    examples = page.view.fallback_sessions(page.tenant, page.window, edges)
    st.caption("*example*: the latest session of the window in which an execution took the chain.")
    st.dataframe(
        fallback_edge_rows(edges, {edge: session_link(page, session) for edge, session in examples.items()}),
        hide_index=True,
        width="stretch",
        column_config={"example": st.column_config.LinkColumn("example", display_text="open session")},
    )
