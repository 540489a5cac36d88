"""What the pages draw, shaped from query results without Streamlit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llm_ledger.audit.integrity import StreamCheck
from llm_ledger.audit.results import AuditFinding, TenantAudit
from llm_ledger.audit.timeline import AttemptView, ExecutionView
from llm_ledger.dashboard.shaping import (
    Links,
    activity_rows,
    audit_run_summary,
    duration,
    error_rate_rows,
    execution_rows,
    fallback_outcome_rows,
    fallback_rate_rows,
    filter_summary,
    finding_rows,
    latency_rows,
    literal,
    overview_metrics,
    session_choices,
    time_ago,
    timeline_rows,
    tool_series_rows,
    unmatched_filters,
)
from llm_ledger.projections import histogram
from llm_ledger.projections.queries import (
    ErrorPoint,
    FallbackEdge,
    Figures,
    Filters,
    Point,
    SessionSummary,
    ToolCallPoint,
    Window,
    display_buckets,
)

T0 = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
NO_LINKS = Links(trace=lambda trace: None, session=str, execution=lambda execution, session: execution)
T1 = T0 + timedelta(minutes=1)


def _attempts(bucket: datetime, group: str, attempts: int) -> Point:
    return Point(bucket, group, Figures(attempts=attempts))


def test_overview_changes_are_counts_and_percentage_points() -> None:
    metrics = {m.label: m for m in overview_metrics(Figures(executions=20, failed=5), Figures(executions=10, failed=1))}

    assert (metrics["Executions"].value, metrics["Executions"].delta) == ("20", "+10")
    assert (metrics["Error rate"].value, metrics["Error rate"].delta) == ("25.0%", "+15.0 pp")
    assert metrics["Error rate"].delta_color == "inverse"


def test_overview_shows_no_change_when_the_previous_window_had_no_executions() -> None:
    metrics = {m.label: m for m in overview_metrics(Figures(executions=4, failed=1), Figures())}

    assert metrics["Error rate"].delta is None
    assert (metrics["p95 latency"].value, metrics["p95 latency"].delta) == ("—", None)


def test_an_error_types_rate_is_over_every_attempt_of_the_bucket() -> None:
    failures = [ErrorPoint(T0, "rate_limit", 2), ErrorPoint(T0, "timeout", 1)]
    attempts = [_attempts(T0, "", 8)]

    rates = {row["group"]: row["rate"] for row in error_rate_rows(failures, attempts, [T0])}

    assert rates == {"rate_limit": 0.25, "timeout": 0.125}


def test_a_models_rate_is_over_that_models_own_attempts() -> None:
    failures = [ErrorPoint(T0, "mock/a", 1), ErrorPoint(T1, "mock/b", 3)]
    attempts = [_attempts(T0, "mock/a", 4), _attempts(T0, "mock/b", 6), _attempts(T1, "mock/b", 3)]

    rates = [(row["time"], row["group"], row["rate"]) for row in error_rate_rows(failures, attempts, [T0, T1])]

    assert rates == [
        (T0.isoformat(), "mock/a", 0.25),
        (T1.isoformat(), "mock/a", None),  # mock/a had no attempt then: a gap
        (T0.isoformat(), "mock/b", 0.0),  # attempts and none failed: a zero
        (T1.isoformat(), "mock/b", 1.0),
    ]


# An hour of traffic, an idle hour, and another: what a chart must show as a zero or a gap, never a line
# drawn straight from the first to the third.
H0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
H1, H2 = H0 + timedelta(hours=1), H0 + timedelta(hours=2)
BUCKETS = [H0, H1, H2]


def _ran(bucket: datetime, group: str = "") -> Point:
    figures = Figures(executions=4, failed=1, fallback_executions=2, attempts=5)
    histogram.add(figures.execution_latency, 120.0, 4)
    return Point(bucket, group, figures)


def test_an_idle_bucket_is_a_zero_in_the_activity_counts() -> None:
    rows = activity_rows([_ran(H0), _ran(H2)], BUCKETS)

    executions = [(row["time"], row["count"]) for row in rows if row["series"] == "executions"]
    assert executions == [(H0.isoformat(), 4), (H1.isoformat(), 0), (H2.isoformat(), 4)]


def test_an_idle_bucket_is_a_gap_in_rates_and_latency() -> None:
    rates = [row["rate"] for row in fallback_rate_rows([_ran(H0), _ran(H2)], BUCKETS)]
    assert rates == [0.5, None, 0.5]
    latency = latency_rows([_ran(H0, "generation"), _ran(H2, "generation")], BUCKETS)
    assert {row["time"] for row in latency if row["latency_ms"] is None} == {H1.isoformat()}
    assert {row["time"] for row in latency if row["latency_ms"] is not None} == {H0.isoformat(), H2.isoformat()}
    assert {row["percentile"] for row in latency if row["time"] == H1.isoformat()} == {"p50", "p95", "p99"}


def test_tool_calls_over_time_count_an_idle_bucket_as_zero_for_each_outcome() -> None:
    points = [ToolCallPoint(H0, "succeeded", 3, 0), ToolCallPoint(H2, "failed", 1, 1)]

    rows = [(row["outcome"], row["time"], row["calls"]) for row in tool_series_rows(points, BUCKETS)]

    assert rows == [
        ("failed", H0.isoformat(), 0),
        ("failed", H1.isoformat(), 0),
        ("failed", H2.isoformat(), 1),
        ("succeeded", H0.isoformat(), 3),
        ("succeeded", H1.isoformat(), 0),
        ("succeeded", H2.isoformat(), 0),
    ]


def test_the_buckets_of_a_window_are_every_one_its_series_is_drawn_in() -> None:
    day = Window(H0, H0 + timedelta(hours=24))
    assert display_buckets(day) == [H0 + timedelta(hours=i) for i in range(24)]
    short = Window(H0 + timedelta(seconds=30), H0 + timedelta(minutes=3))
    assert display_buckets(short) == [H0, H0 + timedelta(minutes=1), H0 + timedelta(minutes=2)]


def test_each_fallback_edge_is_split_into_succeeded_after_and_not() -> None:
    rows = fallback_outcome_rows([FallbackEdge("mock/a", "mock/b", "rate_limit", fallbacks=5, succeeded_after=3)])

    assert [(row["edge"], row["outcome"], row["executions"]) for row in rows] == [
        ("mock/a → mock/b", "succeeded after", 3),
        ("mock/a → mock/b", "did not succeed", 2),
    ]


def test_the_session_in_the_url_is_offered_even_when_it_is_not_recent() -> None:
    recent = [SessionSummary("s-2", "agent", T0, T1, 1, 1, 0, 0, 1, 0)]

    assert session_choices(recent, "s-old") == ["s-old", "s-2"]
    assert session_choices(recent, "s-2") == ["s-2"]


def test_a_timeline_lane_per_execution_with_attempts_at_their_offsets() -> None:
    execution = ExecutionView(
        execution_id="e-1",
        step="answer",
        agent_id="agent",
        turn_id=None,
        started_at=T0,
        outcome="succeeded",
        model="mock/b",
        latency_ms=90.0,
        fallback_used=True,
        trace_id=None,
        attempts=[
            AttemptView(1, "mock/a", "mock", T0, "failed", 20.0, "rate_limit", "slow down", None),
            AttemptView(2, "mock/b", "mock", T0 + timedelta(milliseconds=25), "succeeded", 60.0, None, None, None),
        ],
    )

    rows = timeline_rows([execution])

    assert [(r["lane"], r["what"], r["start_ms"], r["end_ms"], r["outcome"]) for r in rows] == [
        ("15:00:00 #1 answer", "execution", 0.0, 90.0, "succeeded"),
        ("15:00:00 #1 answer", "attempt 1 (rate_limit)", 0.0, 20.0, "failed"),
        ("15:00:00 #1 answer", "attempt 2", 25.0, 85.0, "succeeded"),
    ]


def test_an_execution_whose_stream_does_not_verify_is_marked_in_its_row_and_its_lane() -> None:
    broken = StreamCheck(broken=("hash_mismatch at position 2: content does not match its hash",), sealed=True)
    executions = [
        ExecutionView("e-1", "answer", "agent", None, T0, "succeeded", "mock/a", 1.0, False, None, [], broken),
        ExecutionView(
            "e-2",
            "answer",
            "agent",
            None,
            T1,
            "incomplete",
            None,
            None,
            False,
            None,
            [],
            StreamCheck(incomplete="incomplete: no terminal event"),
        ),
        ExecutionView(
            "e-3", "answer", "agent", None, T1, "succeeded", "mock/a", 5.0, False, None, [], StreamCheck(sealed=False)
        ),
    ]

    rows = execution_rows(executions, NO_LINKS)
    lanes = [row["lane"] for row in timeline_rows(executions)]

    assert [(r["integrity"], r["checked"]) for r in rows] == [
        ("broken", "hash_mismatch at position 2: content does not match its hash"),
        ("incomplete", "incomplete: no terminal event"),
        ("intact", "chain verified, not sealed yet"),
    ]
    assert lanes == ["15:00:00 #1 answer (BROKEN)", "15:01:00 #2 answer (INCOMPLETE)", "15:01:00 #3 answer"]


def test_literal_text_shows_markdown_as_written() -> None:
    assert literal("**x** [a](b) :red[y] $z$ a_b") == "\\*\\*x\\*\\* \\[a\\]\\(b\\) \\:red\\[y\\] \\$z\\$ a\\_b"
    assert literal("acme-session-1") == "acme-session-1"


@pytest.mark.parametrize(
    ("before", "said"),
    [
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=59, seconds=59), "59 min ago"),
        (timedelta(hours=5, minutes=30), "5 h ago"),
        (timedelta(days=6, hours=23), "6 d ago"),
        (timedelta(days=8), "on 2026-03-06 15:00 UTC"),
    ],
)
def test_how_long_ago_reads_in_the_largest_unit_that_fits(before: timedelta, said: str) -> None:
    assert time_ago(T0 - before, T0) == said


def test_a_durations_unit_follows_its_size() -> None:
    assert [duration(timedelta(seconds=s)) for s in (0.0204, 3.25, 754)] == ["20 ms", "3.2 s", "12 min 34 s"]


def _audit(**changes: object) -> TenantAudit:
    fields: dict[str, object] = {
        "run_id": "run-1",
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=2),
        "scope_tenant": None,
        "since": None,
        "ok": True,
        "streams": 3,
        "events": 12,
        "seals": 1,
        "broken_streams": 0,
        "incomplete_streams": 0,
        "unsealed_events": 0,
        "findings": 0,
        "last_seal_hash": None,
        "last_sealed_at": None,
    }
    return TenantAudit(**(fields | changes))  # type: ignore[arg-type]


def test_the_run_summary_says_when_how_long_and_over_what() -> None:
    now = T0 + timedelta(minutes=5)

    assert audit_run_summary(_audit(), now) == (
        "Verified 4 min ago (2026-03-14 15:00:02 UTC, took 2.0 s) over every tenant · run `run-1`"
    )
    scoped = audit_run_summary(_audit(scope_tenant="acme", since=T0 - timedelta(days=7)), now)
    assert "over tenant acme only, streams with events since 2026-03-07 15:00 UTC" in scoped


def test_a_finding_links_to_its_session_only_while_its_stream_has_one() -> None:
    kept = AuditFinding("broken", "position_gap", "stream-1", 2, "event-1", None, "positions 1..1 missing", "s-1")
    gone = AuditFinding("broken", "sealed_stream_gone", "stream-2", None, None, 1, "stream is gone", None)

    rows = finding_rows([kept, gone], lambda session: f"?page=sessions&session={session}")

    assert [row["session"] for row in rows] == ["?page=sessions&session=s-1", None]
    assert [(row["stream"], row["event"], row["seal"]) for row in rows] == [
        ("stream-1", "event-1", None),
        ("stream-2", "—", 1),
    ]


def test_a_window_over_centuries_is_drawn_from_the_buckets_with_data() -> None:
    centuries = Window(datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))
    assert display_buckets(centuries) == []

    rows = activity_rows([_ran(H0), _ran(H2)], display_buckets(centuries))

    assert sorted({row["time"] for row in rows}) == [H0.isoformat(), H2.isoformat()]


def test_the_chosen_filters_read_as_one_line() -> None:
    filters = Filters(agents=("support",), steps=("answer", "classify"), providers=("openai",))

    assert filter_summary(filters) == "agent support · steps answer, classify · provider openai"
    assert filter_summary(Filters()) is None


def test_each_chosen_value_without_figures_in_the_window_is_named() -> None:
    present = Filters(agents=("support",), models=("mock/fast",))
    chosen = Filters(agents=("support",), models=("mock/fast", "mock/gone\x1b"))

    assert unmatched_filters(chosen, present, "acme") == [
        "The model filter holds mock/gone\\x1b, but tenant acme has no executions of that model in this window: "
        "nothing is counted for it."
    ]
