"""The Execution page's tool calls: a tool call the answer asked for that no tool execution answers (the
tool never ran, or ran without recording) is listed, not left out."""

from __future__ import annotations

from datetime import UTC, datetime

from llm_ledger.audit.timeline import ExecutionRecord, ExecutionView, ToolCallRequest, ToolCallView
from llm_ledger.dashboard.stream_rows import tool_call_rows

T0 = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)


def test_a_tool_call_asked_for_and_never_recorded_as_run_is_listed() -> None:
    asking = ExecutionView(
        "e-1", "answer", "agent", "turn-1", T0, "succeeded", "mock/a", 5.0, False, None, [],
        tool_calls=(ToolCallRequest("call-ran", "lookup_order"), ToolCallRequest("call-lost", "check_policy")),
    )  # fmt: skip
    ran = ToolCallView(
        "t-1", "lookup_order", "call-ran", "e-1", "answer", "agent", "turn-1", T0, T0, "succeeded", 1.0,
        None, None, None, None, None,
    )  # fmt: skip
    record = ExecutionRecord(asking, "s-1", [], [ran])

    rows = tool_call_rows(record, lambda trace: None)

    assert [(row["tool call"], row["outcome"]) for row in rows] == [
        ("call-ran", "succeeded"),
        ("call-lost", "not recorded as run"),
    ]
