"""The sidebar's choices (tenant, window, page) and the URL that keeps them.

The URL seeds the widgets once per browser session; from then on the widgets hold the choice and the
app writes it back to the URL after each run, so that the address bar can always be shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime

import streamlit as st

from llm_ledger.dashboard.shaping import literal, time_ago
from llm_ledger.dashboard.source import DEMO_COMMAND
from llm_ledger.dashboard.state import FIRST_DATE, LAST_DATE, PAGES, WINDOWS, ViewState, shown
from llm_ledger.dashboard.views.execution import EXECUTION_KEY
from llm_ledger.dashboard.views.sessions import SESSION_KEY
from llm_ledger.projections import CatchUpResult
from llm_ledger.projections.queries import Freshness

TENANT_KEY = "tenant"
PAGE_KEY = "page"
WINDOW_KEY = "window"
START_KEY = "start"
END_KEY = "end"
_SEEDED_KEY = "_seeded_from_url"


def choose_view(tenants: Sequence[str], *, is_bound: bool, today: date) -> ViewState:
    """Draw the selectors and return the view they pick. The first run of a browser session takes the
    view from the URL and says, above the page, what of it could not be used."""
    state = st.session_state
    if _SEEDED_KEY not in state:
        initial, ignored = ViewState.read_query(st.query_params.to_dict())
        initial = initial.with_custom_dates(today)
        if initial.tenant is not None and initial.tenant not in tenants:
            # The same words whether the tenant exists or not: a bound viewer learns nothing of others.
            ignored.append(f"tenant={shown(initial.tenant)} is not a tenant shown here: showing {tenants[0]}.")
        for message in ignored:
            st.warning(f"This link's {literal(message)}")
        state[TENANT_KEY] = initial.tenant
        state[PAGE_KEY] = initial.page
        state[WINDOW_KEY] = initial.window
        state[START_KEY] = initial.start
        state[END_KEY] = initial.end
        if initial.session:
            state[SESSION_KEY] = initial.session
        if initial.execution:
            state[EXECUTION_KEY] = initial.execution
        state[_SEEDED_KEY] = True
    if state.get(TENANT_KEY) not in tenants:
        state[TENANT_KEY] = tenants[0]

    sidebar = st.sidebar
    sidebar.title("llm-ledger")
    tenant = sidebar.selectbox(
        "Tenant",
        list(tenants),
        key=TENANT_KEY,
        disabled=is_bound,
        help="This dashboard is bound to one tenant (LLM_LEDGER_DASHBOARD_TENANT)." if is_bound else None,
    )
    window = sidebar.selectbox("Time window", list(WINDOWS), format_func=WINDOWS.__getitem__, key=WINDOW_KEY)
    start = end = None
    if window == "custom":
        # Without bounds the calendars would offer ten years either side of today only.
        start = _day(sidebar.date_input("From (UTC)", key=START_KEY, min_value=FIRST_DATE, max_value=LAST_DATE))
        end = _day(sidebar.date_input("Through (UTC)", key=END_KEY, min_value=FIRST_DATE, max_value=LAST_DATE))
    page = sidebar.radio("Page", list(PAGES), format_func=PAGES.__getitem__, key=PAGE_KEY)
    view = ViewState(str(tenant), str(window), start, end, str(page), state.get(SESSION_KEY), state.get(EXECUTION_KEY))
    return view.with_custom_dates(today) if view.window == "custom" else view


def keep_in_url(view: ViewState) -> None:
    """Write the view to the address bar (after the page ran: the session and execution pages may have
    changed it)."""
    chosen = replace(
        view,
        session=st.session_state.get(SESSION_KEY) or view.session,
        execution=st.session_state.get(EXECUTION_KEY) or view.execution,
    )
    query = chosen.to_query()
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def show_freshness(freshness: Freshness | None, caught: CatchUpResult | None) -> None:
    sidebar = st.sidebar
    sidebar.divider()
    if freshness is None:
        sidebar.caption(f"The projector has not run yet: record some executions (`{DEMO_COMMAND}`), then reload.")
    else:
        updated = time_ago(freshness.updated_at, datetime.now(UTC)) if freshness.updated_at else "never"
        # A viewer bound to one tenant is not told the platform's count (freshness.events_applied is None).
        projected = "" if freshness.events_applied is None else f"**{freshness.events_applied:,}** events projected · "
        sidebar.caption(f"{projected}last update {updated}")
    if caught is None:
        sidebar.caption(
            "Catch-up is off (LLM_LEDGER_DASHBOARD_CATCH_UP=false, or a login without llm_ledger_projector): "
            "figures are as recent as `llm-ledger project --follow` keeps them."
        )
    elif caught.busy:
        sidebar.caption("Another projector is applying events right now; figures may be a moment behind.")
    elif not caught.caught_up:
        sidebar.caption(f"Applied {caught.events:,} new events; more are waiting: reload to catch up further.")
    elif caught.events:
        sidebar.caption(f"Applied {caught.events:,} new events before this view.")


def _day(value: object) -> date | None:
    return value if isinstance(value, date) else None
