"""Execution: the page a person opens to understand one execution: whether its stream's hash chain
verifies, what it did (its attempts on a timeline, why it failed), every event of its stream in order with
its payload on demand, and the tools its answer asked for. Opened from the Sessions and Errors pages
(``?page=execution&execution=<id>``), or by pasting an id."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from llm_ledger.audit.timeline import TOOL_EXECUTIONS_SHOWN, TOOL_RUN_HORIZON, ExecutionRecord, ExecutionView
from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import CONTENT_STATES, LOUD_STATES, NONE, literal, milliseconds, timeline_rows
from llm_ledger.dashboard.source import VERIFY_COMMAND
from llm_ledger.dashboard.state import is_plain_text, shown
from llm_ledger.dashboard.stream_rows import NOT_RUN, event_rows, tool_call_rows
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, session_link, tool_calls_table
from llm_ledger.dashboard.views.integrity import tool_integrity

EXECUTION_KEY = "execution"
_DEFAULTED_KEY = "execution_defaulted"
"""The session the id box was last offered a default for, and the ``FirstExecution`` it was filled with:
filled once per session, so that a box cleared by hand stays empty."""


def render(page: PageContext) -> None:
    heading(page, "Execution", "One execution's events as recorded, checked")
    if page.state.session:
        _default_to_session(page, page.state.session)
    execution_id = st.text_input("Execution id", key=EXECUTION_KEY, placeholder="an execution's id").strip()
    if not execution_id:
        st.markdown("Open an execution from the Sessions or Errors page, or paste its id above.")
        return
    if not is_plain_text(execution_id):
        st.warning(f"No execution id holds a control character: {literal(shown(execution_id))} is not looked up.")
        return
    record = page.view.execution_record(page.tenant, execution_id)
    if record is None:
        # The same words whether another tenant has it or not: a bound viewer learns nothing of others.
        st.warning(f"Tenant {literal(page.tenant)} has no execution {literal(shown(execution_id))}.")
        return
    _integrity(record.execution)
    _summary(page, record)
    _events(page, record)
    _tool_calls(page, record)


def _default_to_session(page: PageContext, session_id: str) -> None:
    """Opened from a session without an id: the session's first execution to fail (else its first) is
    shown, the first time only (the box may then be cleared, and stays so)."""
    state = st.session_state
    defaulted = state.get(_DEFAULTED_KEY)
    if defaulted is None or defaulted[0] != session_id:
        first = None if state.get(EXECUTION_KEY) else page.view.first_execution(page.tenant, session_id)
        defaulted = state[_DEFAULTED_KEY] = (session_id, first)
        if first is not None:
            state[EXECUTION_KEY] = first.execution_id
    first = defaulted[1]
    if first is not None and state.get(EXECUTION_KEY) == first.execution_id:
        st.caption(f"Session {literal(session_id)}'s first {'failed ' if first.failed else ''}execution:")


def _integrity(execution: ExecutionView) -> None:
    """First, whether what follows can be trusted: the check of this stream's hash chain and seals."""
    check = execution.integrity
    if check.status == "broken":
        st.error(
            f"This execution is not as it was recorded (its hash chain or a seal says so): what it shows below "
            f"cannot be trusted. {literal(check.summary)}. `{VERIFY_COMMAND}` names every event."
        )
    elif check.status == "incomplete":
        st.warning(
            "This execution has no outcome recorded (no terminal event): its process died mid-call, or the "
            f"call is still running. Its hash chain verifies so far ({literal(check.summary)})."
        )
    elif check.sealed:
        st.success(
            f"Integrity: intact. Every event of this execution is as it was recorded ({literal(check.summary)})."
        )
    else:
        st.success(
            "Integrity: intact. Its hash chain verifies, but no seal holds it yet: an event rewritten with every "
            f"hash after it recomputed would not show until the stream is sealed ({literal(check.summary)})."
        )


def _summary(page: PageContext, record: ExecutionRecord) -> None:
    execution = record.execution
    for column, (label, value) in zip(
        st.columns(4),
        (
            ("Outcome", execution.outcome),
            ("Attempts", f"{len(execution.attempts):,}"),
            ("Latency", milliseconds(execution.latency_ms)),
            ("Fell back", "yes" if execution.fallback_used else "no"),
        ),
        strict=True,
    ):
        column.metric(label, value)
    # The model in the text, not a tile: a tile cuts a long model name.
    context = [
        f"{'last model' if execution.outcome == 'failed' else 'model'} **{literal(execution.model or NONE)}**",
        f"started {execution.started_at:%Y-%m-%d %H:%M:%S} UTC",
        f"step **{literal(execution.step or NONE)}**",
        f"agent **{literal(execution.agent_id or NONE)}**",
        f"turn **{literal(execution.turn_id or NONE)}**",
    ]
    if record.session_id:
        context.append(f"[session {literal(record.session_id)}]({session_link(page, record.session_id)})")
    trace = page.settings.trace_url(execution.trace_id)
    context.append(f"[trace]({trace})" if trace else "not traced")
    st.markdown(" · ".join(context))
    if execution.message:
        st.markdown(f"**Failed: {literal(execution.error_type or NONE)}**")
        st.code(execution.message, language=None, wrap_lines=True)
    st.altair_chart(
        charts.session_timeline(timeline_rows([execution])), width="stretch", height=charts.session_timeline_height(1)
    )


def _events(page: PageContext, record: ExecutionRecord) -> None:
    st.subheader("Events")
    st.caption(f"{len(record.events):,} events of stream {literal(record.execution.execution_id)}, in stream order.")
    st.dataframe(event_rows(record), hide_index=True, width="stretch")
    payloads = page.view.opened_payloads(page.tenant, record.execution.execution_id, record.events)
    hidden = {state for _, states in payloads for state in states.values()}
    for state in sorted(hidden):
        shown = st.error if state in LOUD_STATES else st.info
        shown(f"Captured content of this execution: {CONTENT_STATES[state]}.")
    with st.expander("Payloads", expanded=False):
        for event, (values, states) in zip(record.events, payloads, strict=True):
            st.markdown(f"**{event.position}** · {literal(event.event_type)} · {event.occurred_at:%H:%M:%S.%f} UTC")
            for field, state in states.items():
                st.caption(f"{literal(field)}: {CONTENT_STATES[state]}")
            st.json(values, expanded=False)


def _tool_calls(page: PageContext, record: ExecutionRecord) -> None:
    """The tools its answer asked for; each tool execution is a stream of its own, checked as this one."""
    errors = page.view.opened_tool_errors(page.tenant, record.tool_calls)
    rows = tool_call_rows(record, page.settings.trace_url, errors)
    if not rows:
        return
    st.subheader("Tool calls")
    tool_integrity(rows, "of this execution")
    if record.tool_calls_cut:
        st.warning(
            f"More tool executions name this execution than the first {TOOL_EXECUTIONS_SHOWN:,}: only those are shown."
        )
    if any(row["outcome"] == NOT_RUN for row in rows):
        st.caption(
            f"*{NOT_RUN}*: no tool execution naming this execution started within {_horizon()} of the answer "
            "that asked for the call."
        )
    tool_calls_table(rows)


def _horizon() -> str:
    hours = TOOL_RUN_HORIZON / timedelta(hours=1)
    return f"{hours:g} hour{'s' if hours != 1 else ''}"
