"""Pieces every page uses: its heading, what of the filters it applies, and the message for a window
without data."""

from __future__ import annotations

from typing import Final

import streamlit as st

from llm_ledger.dashboard.shaping import FILTER_NOUNS, filter_summary, literal
from llm_ledger.dashboard.views import PageContext
from llm_ledger.projections.queries import Dimension

_EVERY_FILTER: Final[tuple[Dimension, ...]] = ("agent_id", "step", "model", "provider")
NOT_FILTERED: Final[dict[str, tuple[tuple[Dimension, ...], str]]] = {
    "tools": (("model", "provider"), "tool calls are recorded per agent and step, not per model"),
    "sessions": (_EVERY_FILTER, "a session is shown whole, every execution of it"),
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
