"""Tools: the tool executions the tenant's models asked for, by tool, outcome and step, over time."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import percent, tool_call_rows, tool_series_rows
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, nothing_in_window


def render(page: PageContext) -> None:
    heading(page, "Tools", "Tool executions (run by the application or by an Agno Agent) that ended in the window")
    # NOT_FILTERED says on the page that a model or provider filter is not applied here.
    filters = page.filters.without_models()
    groups = page.view.tool_calls(page.tenant, page.window, filters=filters)
    calls = sum(group.calls for group in groups)
    if not calls:
        nothing_in_window(page, "tool calls")
        return
    failed = sum(group.failed for group in groups)
    left, middle, right = st.columns(3)
    left.metric("Tool calls", f"{calls:,}")
    middle.metric("Failed", f"{failed:,}")
    right.metric("Failure rate", percent(failed / calls))
    rows = tool_call_rows(groups)
    st.subheader("By tool and outcome")
    st.altair_chart(charts.tool_calls(rows), width="stretch")
    st.subheader("Over time")
    series = page.view.tool_call_series(page.tenant, page.window, by="outcome", filters=filters)
    st.altair_chart(charts.tool_calls_over_time(tool_series_rows(series, page.buckets)), width="stretch")
    st.subheader("By tool, outcome and step")
    st.caption(
        "A tool execution still running, or whose process died, has no outcome yet and is not counted here: "
        "the audit view audit_tool_calls lists it as incomplete."
    )
    st.dataframe(rows, hide_index=True, width="stretch")
