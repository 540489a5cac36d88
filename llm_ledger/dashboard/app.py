"""The llm-ledger dashboard, a Streamlit script: ``llm-ledger dashboard`` serves it.

Every run: find who is looking and what they may see (with a login configured, the tenant their identity
names or every tenant for an operator), check the database can be read (its schema, until it is found at
head), catch the projector up (bounded in time), then draw the sidebar and the chosen page for one tenant
over one window. An unreachable, unmigrated or empty database gets a plain message saying what to do,
never a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

import streamlit as st

from llm_ledger.dashboard.gate import admit, show_who
from llm_ledger.dashboard.login import OidcSettings
from llm_ledger.dashboard.settings import DashboardSettings
from llm_ledger.dashboard.sidebar import choose_filters, choose_view, keep_in_url, show_freshness
from llm_ledger.dashboard.source import (
    DEMO_COMMAND,
    REBUILD_COMMAND,
    LedgerNotReadyError,
    LedgerSource,
    check_schema,
    is_unreachable,
)
from llm_ledger.dashboard.state import PAGES
from llm_ledger.dashboard.trace_links import TraceLinkTemplateError
from llm_ledger.dashboard.views import PageContext, renderer
from llm_ledger.projections import CatchUpResult
from llm_ledger.projections.queries import Freshness

logger = logging.getLogger(__name__)
# What a tenant's person is told when the database fails: its address and the driver's words are the
# operators' (in the server's log). A comment, not a docstring: Streamlit would draw a bare string.
UNAVAILABLE = "The ledger is unavailable just now: please try again later, or tell whoever runs this dashboard."


@st.cache_resource(show_spinner=False)
def _source(database_url: str, shown_url: str, bound_tenant: str | None, catch_up: bool) -> LedgerSource:
    """One view (and projector) per server process and tenant binding: their engines pool the connections,
    and each logged-in person's session is given the one of their tenant (or the unbound one of the
    operators). Opened once the schema is at head; a failed check raises and is not cached, so the next run
    checks again."""
    check_schema(database_url, shown_url)
    return LedgerSource.open(database_url, bound_tenant=bound_tenant, catch_up=catch_up)


def _unavailable(exc: BaseException) -> None:
    logger.error("the dashboard could not read the ledger", exc_info=exc)
    st.error(UNAVAILABLE)


def _unreachable(settings: DashboardSettings, exc: BaseException, *, shows_details: bool) -> None:
    if not shows_details:
        _unavailable(exc)
        return
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    st.error(f"The ledger database cannot be reached: {settings.shown_url}")
    if reason:
        st.caption(f"The database driver said: {reason[0]}")
    st.markdown(
        "Check that the database server is running and that `LLM_LEDGER_DATABASE_URL` points at it, then reload."
    )


def _no_data(settings: DashboardSettings) -> None:
    whose = f"tenant {settings.bound_tenant}" if settings.bound_tenant else "any tenant"
    st.info(f"The ledger at {settings.shown_url} has no executions of {whose} yet.")
    st.markdown(
        "To see the dashboard at work, record some executions into this database, then reload this page:\n\n"
        f"```\nLLM_LEDGER_DATABASE_URL={settings.shown_url} {DEMO_COMMAND}\n```\n\n"
        "Any process that runs `LLMExecutor` with this `LLM_LEDGER_DATABASE_URL` records into it the same way."
    )


def _open(settings: DashboardSettings) -> tuple[LedgerSource, CatchUpResult | None, list[str], Freshness | None]:
    source = _source(settings.database_url, settings.shown_url, settings.bound_tenant, settings.catch_up)
    caught = source.catch_up()
    return source, caught, source.view.tenants(), source.view.freshness()


def _older_projector() -> None:
    st.warning(
        "The read models were built by an older projector: mock models named after a provider "
        "(mock/<provider>-...) are partly counted under provider mock, so figures by provider are mixed. "
        f"Rebuild them with `{REBUILD_COMMAND}` (same LLM_LEDGER_DATABASE_URL), then reload."
    )


def main() -> None:
    st.set_page_config(page_title="llm-ledger", layout="wide")
    try:
        settings = DashboardSettings.from_env()
    except TraceLinkTemplateError as exc:
        st.error(str(exc))
        return
    oidc = OidcSettings.from_env()
    access = admit(oidc, settings.bound_tenant)
    if access is None:
        return
    # Per browser session, never per process: the binding is this person's, and _source is cached by it.
    settings = replace(settings, bound_tenant=access.tenant)
    # Without a login the page is this machine's (or its operator's); with one, operators alone are told
    # the database's address and the driver's words.
    shows_details = oidc is None or access.every_tenant
    try:
        source, caught, tenants, freshness = _open(settings)
    except LedgerNotReadyError as exc:
        if shows_details:
            st.error(str(exc))
        else:
            _unavailable(exc)
        return
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        _unreachable(settings, exc, shows_details=shows_details)
        return
    if not tenants:
        show_freshness(freshness, caught)
        show_who(access)
        _no_data(settings)
        return
    now = datetime.now(UTC)
    state = choose_view(tenants, is_bound=settings.bound_tenant is not None, today=now.date())
    if state.tenant is None:
        # A link's tenant this dashboard does not show (choose_view said so): nothing is drawn in its place.
        show_freshness(freshness, caught)
        show_who(access)
        st.header(PAGES[state.page])
        st.info("Choose a tenant in the sidebar.")
        return
    tenant, window = state.tenant, state.time_window(now)
    try:
        state = choose_filters(state, source.view.filter_choices(tenant, window))
        show_freshness(freshness, caught)
        show_who(access)
        if source.is_built_by_an_older_projector():
            _older_projector()
        renderer(state.page)(PageContext(source.view, tenant, window, state, settings))
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        _unreachable(settings, exc, shows_details=shows_details)
    keep_in_url(state)


main()
