"""One execution as recorded, shaped for the Execution page: its events in stream order and the tool calls
its answer asked for, each with the execution of the tool when it ran. Pure functions, as in ``shaping``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from llm_ledger.audit.timeline import ExecutionRecord
from llm_ledger.dashboard.shaping import NONE, Row, tool_error_text
from llm_ledger.store.content_keys import OpenedText

NOT_RUN = "not recorded as run"
"""The outcome of a tool call the answer asked for that no tool execution answers."""


def event_rows(record: ExecutionRecord) -> list[Row]:
    """Every event of the stream, in order, with what a reader scans for (the payload is shown apart)."""
    return [
        {
            "position": event.position,
            "time": event.occurred_at,
            "event": event.event_type,
            "attempt": event.attempt,
            "model": event.model or NONE,
            "outcome": event.outcome or NONE,
            "span": event.span_id or NONE,
            "event id": event.event_id,
        }
        for event in record.events
    ]


def tool_call_rows(
    record: ExecutionRecord,
    trace_url: Callable[[str | None], str | None],
    error_texts: Mapping[str, OpenedText] | None = None,
) -> list[Row]:
    """The tools' executions that name this execution as the one that asked, in time order, then each
    tool call its answer asked for that no tool execution answers (never run, or run unrecorded); the
    exception texts as ``error_texts`` has them opened (``DashboardView.opened_tool_errors``)."""
    opened = error_texts or {}
    rows: list[Row] = [
        {
            "tool": run.tool_name or NONE,
            "tool call": run.tool_call_id or NONE,
            "started": run.started_at,
            "outcome": run.outcome,
            "integrity": run.integrity.status,
            "latency ms": round(run.latency_ms, 1) if run.latency_ms is not None else None,
            "error": run.error_class,
            "message": run.message,
            "error text": tool_error_text(run, opened.get(run.tool_execution_id)),
            "checked": run.integrity.summary,
            "trace": trace_url(run.trace_id),
            "tool execution": run.tool_execution_id,
        }
        for run in record.tool_calls
    ]
    ran = {run.tool_call_id for run in record.tool_calls}
    rows.extend(
        {"tool": asked.name, "tool call": asked.id, "outcome": NOT_RUN}
        for asked in record.execution.tool_calls
        if asked.id not in ran
    )
    return rows
