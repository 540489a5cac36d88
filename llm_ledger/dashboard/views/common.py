"""Pieces every page uses: its heading, what of the filters it applies, the message for a window without
data, the window's headline metrics against the previous window's, the links its tables hold (to traces,
and to the Sessions and Execution pages), and the table of a session's or an execution's tool calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final

import streamlit as st

from llm_ledger.dashboard.shaping import FILTER_NOUNS, Links, Metric, Row, filter_summary, literal
from llm_ledger.dashboard.state import ViewState
from llm_ledger.dashboard.views import PageContext
from llm_ledger.projections.queries import Dimension, Figures, Filters

_EVERY_FILTER: Final[tuple[Dimension, ...]] = ("agent_id", "step", "model", "provider")
NOT_FILTERED: Final[dict[str, tuple[tuple[Dimension, ...], str]]] = {
    "tools": (("model", "provider"), "tool calls are recorded per agent and step, not per model"),
    "sessions": (_EVERY_FILTER, "a session is shown whole, every execution of it"),
    "execution": (_EVERY_FILTER, "an execution is shown whole, every event of it"),
    "audit": (_EVERY_FILTER, "the audit checks every event of the tenant"),
}
"""The filters a page cannot apply, and why (it says so rather than show unfiltered figures as filtered)."""
MODEL_FILTER_RULE: Final = (
    "a model or provider filter counts an execution under the model that answered it (or, failed, the model "
    "tried last), so a model that was only ever fallen back from counts none"
)


def applied_filters(page_name: str, filters: Filters) -> Filters:
    """The filters the page ``page_name`` (a key of ``state.PAGES``) applies: ``NOT_FILTERED`` taken out."""
    return filters.without(NOT_FILTERED.get(page_name, ((), ""))[0])


def heading(page: PageContext, title: str, what: str) -> None:
    st.header(title)
    window = page.window
    st.caption(f"{what} · tenant **{page.tenant}** · {window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC")
    filter_notice(page)


def filter_notice(page: PageContext) -> None:
    """The filters the page's figures are kept to, and those it cannot apply."""
    summary = filter_summary(page.filters)
    if summary is None:
        return
    unfiltered, reason = NOT_FILTERED.get(page.state.page, ((), ""))
    chosen = page.filters.chosen()
    skipped = [FILTER_NOUNS[dimension][0] for dimension in chosen if dimension in unfiltered]
    if len(skipped) == len(chosen):
        st.info(f"The filters ({literal(summary)}) are not applied on this page: {reason}.")
        return
    st.caption(f"Filtered to {literal(summary)}")
    if skipped:
        st.info(f"The {' and '.join(skipped)} filters are not applied on this page: {reason}.")


def nothing_in_window(page: PageContext, what: str = "executions") -> None:
    """The message for a page with nothing to draw, from what its filters (those it applies) can explain."""
    applied = applied_filters(page.state.page, page.filters)
    nothing = f"No {what} for tenant {page.tenant}"
    if not applied.chosen():
        st.info(f"{nothing} in this window. Pick a longer window in the sidebar.")
    elif applied.names_a_model:
        st.info(f"{nothing} matching the filters in this window: {MODEL_FILTER_RULE}.")
    else:
        st.info(f"{nothing} matching the filters in this window. Pick a longer window or fewer filters in the sidebar.")


def metrics_row(page: PageContext, metrics: Callable[[Figures, Figures], list[Metric]]) -> Figures:
    """Shows ``metrics`` of the window's figures against the previous window's side by side; returns the
    window's figures."""
    current = page.view.totals(page.tenant, page.window, page.filters)
    previous = page.view.totals(page.tenant, page.window.previous(), page.filters)
    metrics_shown = metrics(current, previous)
    for column, metric in zip(st.columns(len(metrics_shown)), metrics_shown, strict=True):
        column.metric(metric.label, metric.value, metric.delta, delta_color=metric.delta_color, help=metric.help)
    return current


def links(page: PageContext) -> Links:
    """The links of this view's tables: to traces, and to session and execution pages of its tenant."""
    return Links(
        trace=page.settings.trace_url,
        session=lambda session_id: session_link(page, session_id),
        execution=lambda execution_id, session_id: execution_link(page, execution_id, session_id),
    )


def tool_calls_table(rows: list[Row]) -> None:
    """The tool calls of a session or an execution, each linked to its trace."""
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"trace": st.column_config.LinkColumn("trace", display_text="open trace")},
    )


def session_link(page: PageContext, session_id: str) -> str:
    """The Sessions page of ``session_id``, keeping this view's tenant and window."""
    return _link(replace(page.state, page="sessions", session=session_id, execution=None), page.tenant)


def execution_link(page: PageContext, execution_id: str, session_id: str | None) -> str:
    """The Execution page of ``execution_id`` of ``session_id`` (``None``: of no session, never the session
    this view last showed), keeping this view's tenant and window."""
    return _link(replace(page.state, page="execution", session=session_id, execution=execution_id), page.tenant)


def _link(state: ViewState, tenant: str) -> str:
    # Opens in a new tab, whose first run takes the view from the URL.
    return replace(state, tenant=tenant).link()
