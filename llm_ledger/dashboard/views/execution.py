"""Execution: the page a person opens to understand one execution: whether its stream's hash chain
verifies, what it did (its attempts on a timeline, why it failed), every event of its stream in order with
its payload on demand, and the tools its answer asked for. Opened from the Sessions and Errors pages
(``?page=execution&execution=<id>``), or by pasting an id."""

from __future__ import annotations

import streamlit as st

from llm_ledger.audit.timeline import ExecutionRecord, ExecutionView
from llm_ledger.dashboard import charts
from llm_ledger.dashboard.shaping import NONE, literal, milliseconds, timeline_rows
from llm_ledger.dashboard.source import VERIFY_COMMAND
from llm_ledger.dashboard.state import is_plain_text, shown
from llm_ledger.dashboard.stream_rows import event_rows, tool_call_rows
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import heading, session_link

EXECUTION_KEY = "execution"


def render(page: PageContext) -> None:
    heading(page, "Execution", "One execution's events as recorded, checked")
    if not st.session_state.get(EXECUTION_KEY) and page.state.session:
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
    _events(record)
    _tool_calls(page, record)


def _default_to_session(page: PageContext, session_id: str) -> None:
    """Without an id, the session's first failed execution (else its first) is shown."""
    executions = page.view.session_timeline(page.tenant, session_id)
    failed = [execution for execution in executions if execution.outcome == "failed"]
    if executions:
        st.session_state[EXECUTION_KEY] = (failed or executions)[0].execution_id
        st.caption(f"Session {literal(session_id)}'s first {'failed ' if failed else ''}execution:")


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
    else:
        st.success(f"Integrity: intact. Every event of this execution is as it was recorded ({check.summary}).")


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


def _events(record: ExecutionRecord) -> None:
    st.subheader("Events")
    st.caption(f"{len(record.events):,} events of stream `{record.execution.execution_id}`, in stream order.")
    st.dataframe(event_rows(record), hide_index=True, width="stretch")
    with st.expander("Payloads", expanded=False):
        for event in record.events:
            st.markdown(f"**{event.position}** · {event.event_type} · {event.occurred_at:%H:%M:%S.%f} UTC")
            st.json(event.payload, expanded=False)


def _tool_calls(page: PageContext, record: ExecutionRecord) -> None:
    """The tools its answer asked for; each tool execution is a stream of its own, checked as this one."""
    rows = tool_call_rows(record, page.settings.trace_url)
    if not rows:
        return
    st.subheader("Tool calls")
    broken = [run for run in record.tool_calls if run.integrity.status == "broken"]
    if broken:
        st.error(
            f"{len(broken)} of {len(record.tool_calls)} tool executions of this execution are not as they were "
            "recorded (their hash chain or a seal says so). They are marked **broken** in the table."
        )
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"trace": st.column_config.LinkColumn("trace", display_text="open trace")},
    )
