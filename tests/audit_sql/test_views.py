"""Each audit view holds what the events say, computed independently in Python from the events read
through ``EventStore``: on PostgreSQL and on SQLite, with the same columns and meaning."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from tests.audit_sql import truth
from tests.audit_sql.conftest import AuditedLedger
from tests.projections.ground_truth import moment

TIMES = ("started_at", "ended_at", "occurred_at", "last_event_at")
TERMINAL_OUTCOMES = (("ExecutionSucceeded", "succeeded"), ("ExecutionFailed", "failed"))


def view_rows(engine: Engine, view: str) -> list[dict[str, Any]]:
    """A view's rows, with each dialect's representation made the same: times as aware UTC datetimes, the
    chain as a list, booleans as booleans (SQLite's 1/0)."""
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(text(f"SELECT * FROM {view}"))]
    for row in rows:
        for column in TIMES:
            if row.get(column) is not None:
                row[column] = moment(row[column])
        if isinstance(row.get("chain"), str):
            row["chain"] = json.loads(row["chain"])
        if "succeeded_after" in row:
            row["succeeded_after"] = bool(row["succeeded_after"])
    return rows


def project(row: dict[str, Any], columns: Any) -> dict[str, Any]:
    return {column: row[column] for column in columns}


def test_audit_tool_calls_has_one_row_per_tool_execution_as_its_events_say(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    expected = truth.tool_calls(audited.events)
    rows = view_rows(engine_of(audited.url), "audit_tool_calls")

    assert Counter(row["outcome"] for row in rows) == Counter(row["outcome"] for row in expected.values())
    assert {"succeeded", "failed", "incomplete"} <= {row["outcome"] for row in rows}
    assert Counter(row["tool_execution_id"] for row in rows) == Counter(list(expected))
    for row in rows:
        wanted = expected[row["tool_execution_id"]]
        assert project(row, wanted) == wanted, row["tool_execution_id"]
    assert list(rows[0])[:12] == [
        "tenant_id", "agent_id", "session_id", "turn_id", "step", "execution_id", "tool_call_id", "tool_name",
        "outcome", "latency_ms", "error_type", "started_at",
    ]  # fmt: skip


def test_audit_tool_calls_joins_the_executions_that_asked(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    statement = text(
        "SELECT c.tool_execution_id, e.execution_id, e.outcome FROM audit_tool_calls c"
        " JOIN audit_executions e ON e.tenant_id = c.tenant_id AND e.execution_id = c.execution_id"
    )
    with engine_of(audited.url).connect() as connection:
        joined = {row.tool_execution_id: row.execution_id for row in connection.execute(statement)}
    asked = {stream: row["execution_id"] for stream, row in truth.tool_calls(audited.events).items()}
    assert joined == {stream: execution for stream, execution in asked.items() if execution is not None}
    assert len(joined) == len(asked) - 1  # all but the tool run nobody asked for


def test_the_dataset_has_every_kind_of_execution(audited: AuditedLedger) -> None:
    executions = truth.executions(audited.events).values()
    outcomes = Counter(row["outcome"] for row in executions)
    assert outcomes["succeeded"] and outcomes["failed"] and outcomes["incomplete"] == len(audited.extras.incomplete)
    fallbacks = truth.fallbacks(audited.events)
    assert {row["succeeded_after"] for row in fallbacks} == {True, False}
    assert any(row["error_type"] == "rate_limit" for row in truth.attempts(audited.events).values())


def test_audit_executions_has_one_row_per_execution_as_its_events_say(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    expected = truth.executions(audited.events)
    rows = view_rows(engine_of(audited.url), "audit_executions")

    assert Counter(row["execution_id"] for row in rows) == Counter(list(expected))
    for row in rows:
        wanted = expected[row["execution_id"]]
        assert project(row, wanted) == wanted, row["execution_id"]


def test_audit_executions_counts_outcomes_attempts_and_fallbacks_per_tenant(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    statement = text(
        "SELECT tenant_id, outcome, count(*) AS executions, sum(attempts) AS attempts, sum(fallbacks) AS fallbacks"
        " FROM audit_executions GROUP BY tenant_id, outcome"
    )
    with engine_of(audited.url).connect() as connection:
        counted = {
            (r.tenant_id, r.outcome): (r.executions, r.attempts, r.fallbacks) for r in connection.execute(statement)
        }

    expected: dict[tuple[str, str], list[int]] = {}
    for stream in truth.streams(audited.events, kind="execution").values():
        types = [event.event_type for event in stream]
        outcome = next((name for kind, name in TERMINAL_OUTCOMES if kind in types), "incomplete")
        figures = expected.setdefault((stream[0].tenant_id, outcome), [0, 0, 0])
        figures[0] += 1
        figures[1] += types.count("AttemptStarted")
        figures[2] += types.count("FallbackTriggered")
    assert counted == {key: tuple(figures) for key, figures in expected.items()}


def test_audit_attempts_has_one_row_per_attempt_as_its_events_say(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    expected = truth.attempts(audited.events)
    rows = view_rows(engine_of(audited.url), "audit_attempts")

    assert Counter((row["execution_id"], row["attempt"]) for row in rows) == Counter(list(expected))
    for row in rows:
        wanted = expected[(row["execution_id"], row["attempt"])]
        assert project(row, wanted) == wanted, (row["execution_id"], row["attempt"])


def test_audit_fallbacks_has_one_row_per_fallback_with_what_became_of_its_execution(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    expected = truth.fallbacks(audited.events)
    rows = view_rows(engine_of(audited.url), "audit_fallbacks")

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(sorted(project(row, expected[0]).items()))

    assert sorted(map(key, rows)) == sorted(map(key, expected))


def test_audit_incomplete_lists_the_executions_and_tool_executions_with_no_terminal_event(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    expected = truth.incomplete(audited.events)
    rows = view_rows(engine_of(audited.url), "audit_incomplete")

    unfinished = {str(stream) for stream in (*audited.extras.incomplete, *audited.extras.incomplete_tool_calls)}
    assert set(expected) == unfinished
    assert {row["execution_id"]: row["kind"] for row in rows} == {
        **{str(stream): "execution" for stream in audited.extras.incomplete},
        **{str(stream): "tool_call" for stream in audited.extras.incomplete_tool_calls},
    }
    assert sorted(row["execution_id"] for row in rows) == sorted(expected)
    for row in rows:
        wanted = expected[row["execution_id"]]
        assert project(row, wanted) == wanted
        assert row["age_seconds"] >= 0


def test_audit_attempts_shows_the_time_to_first_chunk_of_the_streamed_attempts(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    rows = view_rows(engine_of(audited.url), "audit_attempts")
    streamed = {
        (str(e.stream_id), e.payload.attempt): e.payload.time_to_first_chunk_ms
        for e in audited.events
        if e.event_type == "AttemptSucceeded" and e.payload.time_to_first_chunk_ms is not None
    }

    assert streamed, "the dataset streams"
    shown = {(str(row["execution_id"]), row["attempt"]): row["time_to_first_chunk_ms"] for row in rows}
    assert {key: shown[key] for key in streamed} == streamed
    assert all(ms is None for key, ms in shown.items() if key not in streamed)
