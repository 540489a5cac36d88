"""Tools' executions are streams of their own, verified like executions: chained, sealed, an unfinished
one reported incomplete (not a failure), one edited or holding another kind's events broken; and the
session timeline shows each between the round trips of its session, linked to the execution that asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, update

from llm_ledger.audit.timeline import ExecutionView, ToolCallView, session_activity, session_timeline
from llm_ledger.cli import main
from llm_ledger.events import Event, Scrubber, StreamHeader, StreamSealer, parse_event, uuid7
from llm_ledger.events import values as builders
from llm_ledger.events.values import JsonPayload
from llm_ledger.store.schema import events
from tests.audit.conftest import TENANTS, Ledger, store_events
from tests.audit.test_tampering import findings_of, named
from tests.events.tool_streams import Context, tool_stream


def _tool_rows(ledger: Ledger, tenant_id: str = TENANTS[0]) -> dict[str, list[Any]]:
    streams: dict[str, list[Any]] = {}
    for row in ledger.rows(events.c.tenant_id == tenant_id):
        streams.setdefault(row.stream_id, []).append(row)
    return {stream: rows for stream, rows in streams.items() if rows[0].event_type == "ToolCallStarted"}


def test_the_sealed_tool_executions_verify_clean(ledger: Ledger) -> None:
    tool_streams = _tool_rows(ledger)
    assert len(tool_streams) > 5
    assert {rows[-1].event_type for rows in tool_streams.values()} == {"ToolCallSucceeded", "ToolCallFailed"}
    report = ledger.verify()
    assert report.ok and report.incomplete_streams == 0 and not report.findings
    assert report.streams == len({row.stream_id for row in ledger.rows()})


def test_an_unfinished_tool_execution_is_incomplete_and_does_not_fail(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    context = Context(TENANTS[1], "support", "s-tools", "u", "generation")
    started = tool_stream(
        context, tool_name="lookup_order", started_at=datetime.now(UTC) - timedelta(hours=2), outcome="incomplete"
    )
    store_events(ledger.url, started)

    status = main(["audit", "verify", "--database-url", ledger.auditor_url])

    out = capsys.readouterr().out
    assert status == 0, out
    line = next(line for line in out.splitlines() if line.startswith("INCOMPLETE"))
    assert str(started[0].stream_id) in line and "ToolCallStarted" in line and "tool execution" in line
    assert "2.0h ago" in line
    report = ledger.verify()
    assert report.ok and report.incomplete_streams == 1


def test_an_edited_tool_result_is_broken(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    rows = next(rows for rows in _tool_rows(ledger).values() if rows[-1].event_type == "ToolCallFailed")
    failed = rows[-1]
    # Someone hides that the tool failed: the terminal event's error type is rewritten.
    payload = {**failed.payload, "error_type": "cancelled"}

    def edit(connection: Connection) -> None:
        connection.execute(update(events).where(events.c.event_id == failed.event_id).values(payload=payload))

    ledger.tamper(edit)

    finding = named(findings_of(ledger, capsys), "hash_mismatch", event_id=str(failed.event_id))
    assert finding["stream_id"] == str(failed.stream_id)


def _execution_started(recorded: list[Event]) -> Any:
    started = next(event for event in recorded if event.event_type == "ExecutionStarted")
    return started.payload


def test_a_tool_event_in_an_executions_stream_is_broken(
    ledger: Ledger, recorded: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    """A stream is of one kind: an execution ended by a ``ToolCallSucceeded`` has no outcome and holds an
    event of another kind (a correct chain: a writer's bug, not tampering, still fails the run)."""
    sealer = StreamSealer(StreamHeader(stream_id=uuid7(), tenant_id=TENANTS[0], session_id="mixed"))
    now = datetime.now(UTC)
    ended = JsonPayload(
        builders.tool_call_succeeded,
        tool_name="lookup_order",
        latency_ms=3.0,
        result=builders.output_values("x", "hash", Scrubber([])),
    )
    mixed = [
        sealer.seal("ExecutionStarted", _execution_started(recorded), occurred_at=now),
        sealer.draft("ToolCallSucceeded", ended, occurred_at=now + timedelta(milliseconds=5)).event,
    ]
    store_events(ledger.url, [parse_event(event.to_record()) for event in mixed])

    found = findings_of(ledger, capsys)

    wrong = named(found, "wrong_kind", stream_id=str(mixed[0].stream_id))
    assert wrong["stream_position"] == 1 and "ToolCallSucceeded" in wrong["detail"]


# --- the session timeline ---------------------------------------------------------------------------------


def _busiest_tool_session(ledger: Ledger) -> tuple[str, str]:
    tenant = TENANTS[0]
    sessions = [rows[0].session_id for rows in _tool_rows(ledger, tenant).values()]
    return tenant, max(set(sessions), key=sessions.count)


def test_the_timeline_shows_each_tool_execution_after_the_execution_that_asked(ledger: Ledger) -> None:
    tenant, session = _busiest_tool_session(ledger)
    with ledger.engine.connect() as connection:
        items = session_activity(connection, tenant, session)
        executions = session_timeline(connection, tenant, session)

    tools = [item for item in items if isinstance(item, ToolCallView)]
    assert tools and executions == [item for item in items if isinstance(item, ExecutionView)]
    assert [item.started_at for item in items] == sorted(item.started_at for item in items)
    stored = _tool_rows(ledger, tenant)
    by_id = {item.execution_id: (index, item) for index, item in enumerate(items) if isinstance(item, ExecutionView)}
    for tool in tools:
        rows = stored[tool.tool_execution_id]
        started, ended = rows[0], rows[-1]
        assert tool.kind == "tool_call" and tool.integrity.status == "intact"
        assert (tool.tool_name, tool.tool_call_id, tool.execution_id) == (
            started.payload["tool_name"],
            started.payload["tool_call_id"],
            started.payload["execution_id"],
        )
        assert tool.outcome == ("succeeded" if ended.event_type == "ToolCallSucceeded" else "failed")
        assert tool.latency_ms == ended.payload["latency_ms"]
        assert (tool.error_type is None) == (tool.outcome == "succeeded")
        # After the round trip that asked for it, in the same step and turn.
        assert tool.execution_id is not None
        index, asking = by_id[tool.execution_id]
        assert items.index(tool) > index and tool.started_at >= asking.started_at
        assert (tool.step, tool.turn_id) == (asking.step, asking.turn_id)


def test_the_timeline_flags_an_unfinished_and_an_edited_tool_execution(ledger: Ledger) -> None:
    tenant, session = _busiest_tool_session(ledger)
    rows = next(rows for rows in _tool_rows(ledger, tenant).values() if rows[0].session_id == session)
    context = Context(tenant, rows[0].agent_id, session, rows[0].turn_id, rows[0].step)
    unfinished = tool_stream(context, tool_name="weather", started_at=datetime.now(UTC), outcome="incomplete")
    store_events(ledger.url, unfinished)
    ended = rows[-1]

    def edit(connection: Connection) -> None:
        payload = {**ended.payload, "latency_ms": 0.001}
        connection.execute(update(events).where(events.c.event_id == ended.event_id).values(payload=payload))

    ledger.tamper(edit)
    with ledger.engine.connect() as connection:
        tools = {
            i.tool_execution_id: i for i in session_activity(connection, tenant, session) if isinstance(i, ToolCallView)
        }

    assert tools[str(unfinished[0].stream_id)].outcome == "incomplete"
    assert tools[str(unfinished[0].stream_id)].integrity.status == "incomplete"
    assert tools[str(ended.stream_id)].integrity.status == "broken"


def test_verify_json_names_the_incomplete_tool_execution(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    unfinished = tool_stream(
        Context(TENANTS[0]), tool_name="weather", started_at=datetime.now(UTC), outcome="incomplete"
    )
    store_events(ledger.url, unfinished)
    capsys.readouterr()
    assert main(["audit", "verify", "--database-url", ledger.auditor_url, "--json", "--no-record"]) == 0
    (finding,) = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["severity"] == "incomplete"]
    assert finding["stream_id"] == str(unfinished[0].stream_id) and finding["event_type"] == "ToolCallStarted"
