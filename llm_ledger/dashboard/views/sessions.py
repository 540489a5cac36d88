"""Sessions: find one by id or pick a recent one (those with failed executions marked, or only those); its
executions and attempts on a timeline, each execution linked to its trace (in Jaeger, Phoenix, ...) and to its
own page, why each failed and every message in full, and the tool executions between its round trips."""

from __future__ import annotations

import streamlit as st

from llm_ledger.audit.timeline import ExecutionView
from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import (
    NONE,
    attempt_rows,
    execution_rows,
    literal,
    session_choices,
    session_labels,
    session_rows,
    session_tool_rows,
    timeline_rows,
)
from llm_ledger.dashboard.source import VERIFY_COMMAND
from llm_ledger.dashboard.state import is_plain_text, shown
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, links, session_link, tool_calls_table
from llm_ledger.dashboard.views.integrity import tool_integrity

SESSION_KEY = "session"
SEARCH_KEY = "session_search"
FAILED_ONLY_KEY = "session_failed_only"


def render(page: PageContext) -> None:
    heading(page, "Sessions", "Executions and attempts of one session")
    search = st.text_input("Search by session id", key=SEARCH_KEY, placeholder="part of a session id").strip()
    if not is_plain_text(search):
        st.warning(f"No session id holds a control character: {literal(shown(search))} is not searched for.")
        return
    failed_only = st.checkbox("Failed sessions only", key=FAILED_ONLY_KEY, help="Sessions with a failed execution")
    # A search looks at every session of the tenant; without one, the window's most recent are offered.
    recent = page.view.sessions(
        page.tenant, window=None if search else page.window, search=search or None, failed_only=failed_only
    )
    chosen = st.session_state.get(SESSION_KEY) or page.state.session
    choices = session_choices(recent, None if search or failed_only else chosen)
    if not choices:
        what = "failed session" if failed_only else "session"
        st.info(
            f"No {what} matches {literal(repr(search))}."
            if search
            else f"No {what} of tenant {literal(page.tenant)} in this window."
        )
        return
    if st.session_state.get(SESSION_KEY) not in choices:
        st.session_state[SESSION_KEY] = chosen if chosen in choices else choices[0]
    session_id = str(st.session_state[SESSION_KEY])
    executions = page.view.session_timeline(page.tenant, session_id)
    st.selectbox("Session", choices, key=SESSION_KEY, format_func=session_labels(recent, session_id, executions))
    _timeline(page, session_id, executions)
    with st.expander("Recent sessions", expanded=False):
        st.dataframe(
            session_rows(recent, lambda session: session_link(page, session)),
            hide_index=True,
            width="stretch",
            column_config={"link": st.column_config.LinkColumn("link", display_text="open session")},
        )


def _timeline(page: PageContext, session_id: str, executions: list[ExecutionView]) -> None:
    if not executions:
        st.info(f"Session {literal(repr(session_id))} has no recorded executions for tenant {literal(page.tenant)}.")
        return
    _integrity(executions)
    failed = sum(execution.outcome == "failed" for execution in executions)
    fell_back = sum(execution.fallback_used for execution in executions)
    attempts = sum(len(execution.attempts) for execution in executions)
    for column, (label, value) in zip(
        st.columns(4),
        (("Executions", len(executions)), ("Failed", failed), ("Fell back", fell_back), ("Attempts", attempts)),
        strict=True,
    ):
        column.metric(label, f"{value:,}")
    st.subheader("Timeline")
    st.altair_chart(
        charts.session_timeline(timeline_rows(executions)),
        width="stretch",
        height=charts.session_timeline_height(len(executions)),
    )
    st.subheader("Executions")
    if all(execution.trace_id is None for execution in executions):
        st.caption(
            "Traces were not recorded for these executions (no OpenTelemetry exporter was configured when "
            "they ran), so there is no trace link."
        )
    st.dataframe(
        execution_rows(executions, session_id, links(page)),
        hide_index=True,
        width="stretch",
        column_config={
            "trace": st.column_config.LinkColumn("trace", display_text="open trace"),
            "events": st.column_config.LinkColumn("events", display_text="open execution"),
        },
    )
    st.subheader("Attempts")
    st.caption("*#* and *execution*: the execution's in the table above.")
    st.dataframe(attempt_rows(executions), hide_index=True, width="stretch")
    _messages(executions)
    _tool_calls(page, session_id)


def _messages(executions: list[ExecutionView]) -> None:
    """Every failure's message whole (a table cell cuts it): each failed attempt's, then the execution's."""
    failing = [
        (number, execution)
        for number, execution in enumerate(executions, start=1)
        if execution.message or any(attempt.message for attempt in execution.attempts)
    ]
    if not failing:
        return
    with st.expander("Messages in full", expanded=False):
        for number, execution in failing:
            for attempt in execution.attempts:
                if attempt.message:
                    st.markdown(
                        f"**#{number} attempt {attempt.attempt}** · {literal(attempt.model)} · "
                        f"{literal(attempt.error_type or NONE)} → next: {literal(attempt.next_action or NONE)}"
                    )
                    st.code(attempt.message, language=None, wrap_lines=True)
            if execution.message:
                st.markdown(f"**#{number} execution failed** · {literal(execution.error_type or NONE)}")
                st.code(execution.message, language=None, wrap_lines=True)


def _tool_calls(page: PageContext, session_id: str) -> None:
    """The tools run between the round trips, each linked to the execution (numbered as in the timeline)
    whose answer asked for it."""
    activity = page.view.session_activity(page.tenant, session_id)
    errors = page.view.opened_tool_errors(page.tenant, activity)
    rows = session_tool_rows(activity, page.settings.trace_url, errors)
    if not rows:
        return
    st.subheader("Tool calls")
    tool_integrity(rows, "of this session")
    failed = sum(row["outcome"] == "failed" for row in rows)
    st.caption(
        f"{len(rows):,} tool executions, {failed:,} failed. *asked by*: the execution of the timeline (its "
        "number) whose answer asked for the call."
    )
    tool_calls_table(rows)


def _integrity(executions: list[ExecutionView]) -> None:
    """Above the figures: which executions are not as recorded, and which have no outcome yet."""
    broken = [execution for execution in executions if execution.integrity.status == "broken"]
    incomplete = [execution for execution in executions if execution.integrity.status == "incomplete"]
    if broken:
        st.error(
            f"{len(broken)} of {len(executions)} executions of this session are not as they were recorded "
            "(their hash chain or a seal says so): what they show below cannot be trusted. "
            f"They are marked **broken** in the table; `{VERIFY_COMMAND}` names every event, and the Audit "
            "page shows what the last verify found."
        )
    if incomplete:
        st.warning(
            f"{len(incomplete)} of {len(executions)} executions have no outcome recorded (no terminal event): "
            "their process died mid-call, or the call is still running. They are marked **incomplete**."
        )
