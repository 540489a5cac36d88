"""Pieces every page uses: its heading, the message for a window without data, and the links its tables
hold (to traces, and to the Sessions and Execution pages)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import streamlit as st

from llm_ledger.dashboard.shaping import Links
from llm_ledger.dashboard.state import ViewState
from llm_ledger.dashboard.views import PageContext


def heading(page: PageContext, title: str, what: str) -> None:
    st.header(title)
    window = page.window
    st.caption(f"{what} · tenant **{page.tenant}** · {window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC")


def nothing_in_window(page: PageContext, what: str = "executions") -> None:
    st.info(f"No {what} for tenant {page.tenant} in this window. Pick a longer window in the sidebar.")


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
    return "?" + urlencode(replace(state, tenant=tenant).to_query())
