"""Pieces every page uses: its heading, what of the filters it applies, the message for a window without
data, and the links its tables hold (to traces, and to the Sessions and Execution pages)."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import streamlit as st

from llm_ledger.dashboard.shaping import FILTER_NOUNS, Links, filter_summary, literal
from llm_ledger.dashboard.state import ViewState
from llm_ledger.dashboard.views import PageContext
from llm_ledger.projections.queries import Dimension

_EVERY_FILTER: Final[tuple[Dimension, ...]] = ("agent_id", "step", "model", "provider")
NOT_FILTERED: Final[dict[str, tuple[tuple[Dimension, ...], str]]] = {
    "tools": (("model", "provider"), "tool calls are recorded per agent and step, not per model"),
    "sessions": (_EVERY_FILTER, "a session is shown whole, every execution of it"),
    "execution": (_EVERY_FILTER, "an execution is shown whole, every event of it"),
    "audit": (_EVERY_FILTER, "the audit checks every event of the tenant"),
}
"""The filters a page cannot apply, and why (it says so rather than show unfiltered figures as filtered)."""


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
    filtered = " matching the filters" if filter_summary(page.filters) else ""
    st.info(f"No {what} for tenant {page.tenant}{filtered} in this window. Pick a longer window in the sidebar.")


def links(page: PageContext) -> Links:
    """The links of this view's tables: to traces, and to session and execution pages of its tenant."""
    return Links(
        trace=page.settings.trace_url,
        session=lambda session_id: session_link(page, session_id),
        execution=lambda execution_id, session_id: execution_link(page, execution_id, session_id),
    )


def session_link(page: PageContext, session_id: str) -> str:
    """The Sessions page of ``session_id``, keeping this view's tenant and window."""
    return _link(replace(page.state, page="sessions", session=session_id, execution=None), page.tenant)


def execution_link(page: PageContext, execution_id: str, session_id: str | None = None) -> str:
    """The Execution page of ``execution_id`` (of ``session_id``, when known), keeping this view's tenant
    and window."""
    session = session_id or page.state.session
    return _link(replace(page.state, page="execution", session=session, execution=execution_id), page.tenant)


def _link(state: ViewState, tenant: str) -> str:
    # Opens in a new tab, whose first run takes the view from the URL.
    return replace(state, tenant=tenant).link()
