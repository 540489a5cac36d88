"""Pieces every page uses: its heading and the message for a window without data."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard.views import PageContext


def heading(page: PageContext, title: str, what: str) -> None:
    st.header(title)
    window = page.window
    st.caption(f"{what} · tenant **{page.tenant}** · {window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC")


def nothing_in_window(page: PageContext, what: str = "executions") -> None:
    st.info(f"No {what} for tenant {page.tenant} in this window. Pick a longer window in the sidebar.")
