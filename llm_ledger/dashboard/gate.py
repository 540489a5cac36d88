"""The dashboard's door: without a login configured, a note saying so; with one, Streamlit's ``st.login``
for a person not logged in, and for one who is, what their identity lets them see (``access_of``), or an
explanation and nothing else."""

from __future__ import annotations

import time

import streamlit as st

from llm_ledger.dashboard.access import Access, access_of, stale_login
from llm_ledger.dashboard.login import OidcSettings
from llm_ledger.dashboard.server import is_loopback
from llm_ledger.dashboard.shaping import literal
from llm_ledger.environment import LLM_LEDGER_OIDC_ISSUER

UNGUARDED = Access("", every_tenant=True)
"""A dashboard without a login shows every tenant (or the one ``LLM_LEDGER_DASHBOARD_TENANT`` names)."""


def admit(oidc: OidcSettings | None, fixed_tenant: str | None) -> Access | None:
    """What this browser session may see; ``None`` when it may see nothing (the page then says why, or
    asks to log in, and shows no tenant and no figure)."""
    if oidc is None:
        return UNGUARDED.within(fixed_tenant)
    claims = st.user.to_dict()
    stale = stale_login(claims, oidc, time.time()) if st.user.is_logged_in else None
    if not st.user.is_logged_in or stale is not None:
        st.title("llm-ledger")
        st.markdown("This dashboard shows the ledger's figures to the people its identity provider names.")
        if stale is not None:
            st.info(f"Please log in again: {stale}.")
        if st.button("Log in", type="primary"):
            st.login()
        return None
    access = access_of(claims, oidc).within(fixed_tenant)
    if access.sees_anything:
        return access
    st.title("llm-ledger")
    st.warning(f"You are logged in as {literal(access.who)}, but your identity grants you no tenant to see.")
    st.markdown(
        f"The dashboard shows a person the one tenant named by the `{oidc.tenant_claim}` claim of their"
        f" identity, and every tenant to the members of its operators' group (the `{oidc.operators_claim}`"
        " claim). Ask whoever runs your identity provider to give you one, then log in again."
    )
    if st.button("Log out"):
        st.logout()
    return None


def show_who(access: Access) -> None:
    """Say in the sidebar who is looking, or that nobody had to log in and who may therefore reach the page."""
    sidebar = st.sidebar
    sidebar.divider()
    if access.who:
        scope = "operator: every tenant" if access.every_tenant else "one tenant"
        sidebar.caption(f"Logged in as {literal(access.who)} ({scope})")
        if sidebar.button("Log out"):
            st.logout()
        return
    no_login = f"No login ({LLM_LEDGER_OIDC_ISSUER.name} is not set)"
    address = st.get_option("server.address")
    if address and is_loopback(str(address)):
        sidebar.caption(f"{no_login}: served on {address}, to this machine only.")
    else:
        # Served elsewhere (llm-ledger dashboard --insecure-no-login, or Streamlit run by hand on every address).
        shown = "this tenant" if access.tenant is not None else "every tenant"
        sidebar.caption(f"{no_login}: whoever reaches this page sees {shown}.")
