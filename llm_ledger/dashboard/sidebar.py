"""The sidebar's choices (tenant, window, page, filters) and the URL that keeps them.

The URL seeds the widgets once per browser session; from then on the widgets hold the choice and the
app writes it back to the URL after each run, so that the address bar can always be shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime

import streamlit as st

from llm_ledger.dashboard.shaping import literal, time_ago, unmatched_filters
from llm_ledger.dashboard.source import DEMO_COMMAND
from llm_ledger.dashboard.state import (
    FILTER_FIELDS,
    FILTERS,
    FIRST_DATE,
    LAST_DATE,
    PAGES,
    WINDOWS,
    ViewState,
    shown,
)
from llm_ledger.dashboard.views.common import applied_filters
from llm_ledger.dashboard.views.execution import EXECUTION_KEY
from llm_ledger.dashboard.views.sessions import SESSION_KEY
from llm_ledger.projections import CatchUpResult
from llm_ledger.projections.queries import Filters, Freshness

TENANT_KEY = "tenant"
PAGE_KEY = "page"
WINDOW_KEY = "window"
START_KEY = "start"
END_KEY = "end"
FILTER_KEYS = {name: f"filter_{name}" for name in FILTERS}
_SEEDED_KEY = "_seeded_from_url"
_KEPT_FILTERS_KEY = "_filters_kept"
"""The filters last drawn, outside the widgets' keys: Streamlit deletes a widget's state after a run that
did not draw it (one whose database did not answer before the filters), and this puts them back."""


def choose_view(tenants: Sequence[str], *, is_bound: bool, today: date) -> ViewState:
    """Draw the selectors and return the view they pick. The first run of a browser session takes the
    view from the URL and says, above the page, what of it could not be used. A tenant the link names
    but this dashboard does not show is never swapped for another: the view has no tenant (``None``) until
    one is chosen; a bound viewer sees its own."""
    state = st.session_state
    if _SEEDED_KEY not in state:
        initial, ignored = ViewState.read_query({name: st.query_params.get_all(name) for name in st.query_params})
        initial = initial.with_custom_dates(today)
        asked = initial.tenant or tenants[0]
        tenant: str | None = asked
        if asked not in tenants:
            # The same words whether the tenant exists or not: a bound viewer learns nothing of others.
            instead = f"showing {tenants[0]}" if is_bound else "choose a tenant in the sidebar"
            ignored.append(
                f"tenant={shown(asked)} has no executions in this ledger (or you may not see it); {instead}."
            )
            tenant = tenants[0] if is_bound else None
        for message in ignored:
            st.warning(f"This link's {literal(message)}")
        state[TENANT_KEY] = tenant
        state[PAGE_KEY] = initial.page
        state[WINDOW_KEY] = initial.window
        state[START_KEY] = initial.start
        state[END_KEY] = initial.end
        for name, key in FILTER_KEYS.items():
            state[key] = list(getattr(initial.filters, FILTER_FIELDS[name]))
        if initial.session:
            state[SESSION_KEY] = initial.session
        if initial.execution:
            state[EXECUTION_KEY] = initial.execution
        state[_SEEDED_KEY] = True
    for key, kept in state.get(_KEPT_FILTERS_KEY, {}).items():
        if key not in state:
            state[key] = kept
    if state.get(TENANT_KEY) not in tenants and (is_bound or state.get(TENANT_KEY) is not None):
        state[TENANT_KEY] = tenants[0]

    sidebar = st.sidebar
    sidebar.title("llm-ledger")
    tenant = sidebar.selectbox(
        "Tenant",
        list(tenants),
        key=TENANT_KEY,
        placeholder="Choose a tenant",
        disabled=is_bound,
        help="Bound to one tenant: the one your identity names, or LLM_LEDGER_DASHBOARD_TENANT." if is_bound else None,
    )
    window = sidebar.selectbox("Time window", list(WINDOWS), format_func=WINDOWS.__getitem__, key=WINDOW_KEY)
    start = end = None
    if window == "custom":
        # Without bounds the calendars would offer ten years either side of today only.
        start = _day(sidebar.date_input("From (UTC)", key=START_KEY, min_value=FIRST_DATE, max_value=LAST_DATE))
        end = _day(sidebar.date_input("Through (UTC)", key=END_KEY, min_value=FIRST_DATE, max_value=LAST_DATE))
    page = sidebar.radio("Page", list(PAGES), format_func=PAGES.__getitem__, key=PAGE_KEY)
    chosen = Filters(**{FILTER_FIELDS[name]: tuple(state.get(key) or ()) for name, key in FILTER_KEYS.items()})
    view = ViewState(
        None if tenant is None else str(tenant),
        str(window),
        start,
        end,
        str(page),
        state.get(SESSION_KEY),
        state.get(EXECUTION_KEY),
        chosen,
    )
    return view.with_custom_dates(today) if view.window == "custom" else view


def choose_filters(view: ViewState, choices: Filters) -> ViewState:
    """Draw the filters, offering the values ``choices`` holds (those of the tenant's window) and those
    already chosen, and return the view with what they choose. A chosen value with nothing in the window
    (from a link, or left from another tenant or window) stays chosen and is said so above the page, so
    that the figures are never silently of something else."""
    state = st.session_state
    sidebar = st.sidebar
    sidebar.subheader("Filters")
    chosen: dict[str, tuple[str, ...]] = {}
    for name, key in FILTER_KEYS.items():
        field = FILTER_FIELDS[name]
        selected = [str(value) for value in state.get(key) or ()]
        offered = sorted({*getattr(choices, field), *selected})
        values = sidebar.multiselect(FILTERS[name], offered, key=key, placeholder="All")
        chosen[field] = tuple(str(value) for value in values)
    state[_KEPT_FILTERS_KEY] = {key: list(state[key]) for key in FILTER_KEYS.values()}
    filtered = replace(view, filters=Filters(**chosen))
    # A page that does not apply a filter says so (views.common.filter_notice); whether its values match is moot.
    applied = applied_filters(view.page, filtered.filters)
    for message in unmatched_filters(applied, choices, str(view.tenant)):
        st.warning(literal(message))
    return filtered


def keep_in_url(view: ViewState) -> None:
    """Write the view to the address bar (after the page ran: the session and execution pages may have
    changed it)."""
    chosen = replace(
        view,
        session=st.session_state.get(SESSION_KEY) or view.session,
        execution=st.session_state.get(EXECUTION_KEY) or view.execution,
    )
    query = {name: value if isinstance(value, list) else [value] for name, value in chosen.to_query().items()}
    if {name: st.query_params.get_all(name) for name in st.query_params} != query:
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
