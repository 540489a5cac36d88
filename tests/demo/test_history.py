"""A demo with history: its sessions happen over the past days on simulated clocks, busier in working
hours, with an incident hour in which one provider is rate-limited; its mock models count under the
provider they stand for; and a seed gives the same workload on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from llm_ledger.audit import seal_ledger, verify_ledger
from llm_ledger.cli import main
from llm_ledger.demo import WorkloadSummary, run_workload
from llm_ledger.demo.timeline import HOURLY_TRAFFIC, INCIDENT_PROVIDER
from llm_ledger.events import Event
from llm_ledger.projections import Projector
from llm_ledger.projections.schema import error_stats, fallback_stats, step_stats
from tests.demo.ledger import read_streams
from tests.projections.ground_truth import assert_read_models_equal_truth
from tests.projections.projecting import project_all

ANCHOR = datetime(2026, 3, 11, 17, tzinfo=UTC)
"""A fixed end of the history, so that the layout, and the incident's hour with it, is the test's own."""
WEEK = timedelta(days=7)
HOUR = 3_600
FAST = ["--latency-scale", "0"]


def _history_demo(url: str, *, sessions: int = 60, seed: int = 7) -> WorkloadSummary:
    return run_workload(url, sessions=sessions, seed=seed, latency_scale=0, history=WEEK, anchor=ANCHOR)


def _events(url: str) -> list[Event]:
    return [event for stream in read_streams(url).values() for event in stream]


def _project(url: str) -> Projector:
    projector = Projector(url)
    project_all(projector)
    return projector


def test_the_sessions_span_the_week_before_the_anchor_busier_in_working_hours_and_so_do_the_seals(
    sqlite_url: str,
) -> None:
    _history_demo(sqlite_url)
    events = _events(sqlite_url)

    assert all(ANCHOR - WEEK <= event.occurred_at < ANCHOR for event in events)
    assert len({event.occurred_at.date() for event in events}) >= 6
    sessions = Counter(event.occurred_at.hour for event in events if event.event_type == "ExecutionStarted")
    working = sum(sessions[hour] for hour in range(8, 17)) / 9
    night = sum(sessions[hour] for hour in range(0, 6)) / 6
    assert HOURLY_TRAFFIC[10] > 4 * HOURLY_TRAFFIC[3]
    assert working > 3 * night, sessions
    # What is derived from the events carries their times: the seals' spans lie in the week too.
    seals = seal_ledger(sqlite_url)
    assert seals and all(ANCHOR - WEEK <= seal.first_occurred_at < seal.last_occurred_at < ANCHOR for seal in seals)


def test_the_incident_hour_shows_a_spike_of_fallbacks_away_from_its_provider_in_the_read_models(
    empty_ledger_url: str,
) -> None:
    summary = _history_demo(empty_ledger_url)
    assert summary.incident is not None
    incident = summary.incident.incident
    assert incident.provider == INCIDENT_PROVIDER == "openai"
    assert ANCHOR - WEEK < incident.starts_at < ANCHOR - timedelta(hours=1)

    projector = _project(empty_ledger_url)
    try:
        by_hour = _fallbacks_from(projector.engine, f"mock/{INCIDENT_PROVIDER}-")
        rate_limits = _rate_limits_of(projector.engine, INCIDENT_PROVIDER)
    finally:
        projector.close()
    during = by_hour.pop(incident.starts_at)
    assert during == summary.incident.fallbacks
    assert during > 2 * max(by_hour.values()), (during, by_hour)
    assert rate_limits.most_common(1)[0][0] == incident.starts_at
    assert rate_limits[incident.starts_at] > 2 * max(n for hour, n in rate_limits.items() if hour != incident.starts_at)


@pytest.mark.parametrize("hour", range(24))
def test_a_small_run_shows_the_incident_at_any_anchor_hour(sqlite_url: str, hour: int) -> None:
    # 30 sessions, as the compose file's demo profile runs: the incident's fallbacks must stand out
    # whichever hour the history ends in.
    anchor = ANCHOR.replace(hour=hour)
    summary = run_workload(sqlite_url, sessions=30, seed=7, latency_scale=0, history=WEEK, anchor=anchor)
    assert summary.incident is not None
    assert summary.incident.fallbacks > 2 * summary.incident.busiest_other_hour, summary.incident


def _fallbacks_from(engine: Engine, model_prefix: str) -> Counter[datetime]:
    query = select(fallback_stats.c.bucket_start, fallback_stats.c.fallbacks).where(
        fallback_stats.c.grain_seconds == HOUR, fallback_stats.c.from_model.startswith(model_prefix)
    )
    counts: Counter[datetime] = Counter()
    with engine.connect() as connection:
        for bucket, fallbacks in connection.execute(query):
            counts[_utc(bucket)] += fallbacks
    return counts


def _rate_limits_of(engine: Engine, provider: str) -> Counter[datetime]:
    query = select(error_stats.c.bucket_start, error_stats.c.count).where(
        error_stats.c.grain_seconds == HOUR,
        error_stats.c.provider == provider,
        error_stats.c.scope == "attempt",
        error_stats.c.error_type == "rate_limit",
    )
    counts: Counter[datetime] = Counter()
    with engine.connect() as connection:
        for bucket, count in connection.execute(query):
            counts[_utc(bucket)] += count
    return counts


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def test_mock_models_count_under_the_provider_they_stand_for_and_stay_marked_as_mock(sqlite_url: str) -> None:
    _history_demo(sqlite_url, sessions=20)
    events = _events(sqlite_url)
    projector = _project(sqlite_url)
    try:
        with projector.engine.connect() as connection:
            rows = set(connection.execute(select(step_stats.c.model, step_stats.c.provider).distinct()))
        assert_read_models_equal_truth(projector.engine, sorted({event.tenant_id for event in events}))
    finally:
        projector.close()

    assert {provider for _, provider in rows} == {"anthropic", "groq", "openai", "openrouter"}
    assert all(model.startswith(f"mock/{provider}-") for model, provider in rows)
    # The ledger itself says what answered: a mock, by its model string and its provider field.
    attempts = [event for event in events if event.event_type == "AttemptStarted"]
    assert {getattr(event.payload, "provider", None) for event in attempts} == {"mock"}


def test_the_same_seed_gives_the_same_workload_on_sqlite_and_postgresql(
    sqlite_url: str, empty_postgres_url: str
) -> None:
    summaries = [_history_demo(url, sessions=30) for url in (sqlite_url, empty_postgres_url)]
    workloads = [_workload(_events(url)) for url in (sqlite_url, empty_postgres_url)]

    assert workloads[0] == workloads[1]
    assert len(workloads[0]) == 30
    for summary in summaries:
        assert summary.timeline is not None and summaries[0].timeline == summary.timeline
    # Each session's events lie within seconds of its planned start (the mock models answer at once here).
    starts = summaries[0].timeline.starts if summaries[0].timeline else ()
    assert [start for start, *_ in workloads[0]] == sorted(starts)
    for url in (sqlite_url, empty_postgres_url):
        report = verify_ledger(url, record=False)
        assert report.ok and report.incomplete_streams == 0, report.to_text()


Signature = tuple[object, ...]


def _workload(events: Sequence[Event]) -> list[Signature]:
    """The sessions, in the order they start: when (to the second), whose, and what each of their
    streams did (event types, models, errors, reasons, tools), without ids, hashes and latencies, which
    differ from run to run. A session's streams as a sorted list: its executions run one at a time, but
    a multiset needs no claim about the order of its tools' streams."""
    sessions: dict[str, list[Event]] = {}
    for event in events:
        sessions.setdefault(event.session_id or "", []).append(event)
    workload = []
    for session in sessions.values():
        first = min(event.occurred_at for event in session)
        last = max(event.occurred_at for event in session)
        assert last - first < timedelta(minutes=1)
        streams: dict[object, list[Event]] = {}
        for event in sorted(session, key=lambda e: (e.stream_id, e.stream_position)):
            streams.setdefault(event.stream_id, []).append(event)
        shapes = sorted(tuple(_what_happened(event) for event in stream) for stream in streams.values())
        head = session[0]
        workload.append((first.replace(microsecond=0), head.tenant_id, head.agent_id, tuple(shapes)))
    return sorted(workload, key=lambda session: (session[0], str(session)))


def _what_happened(event: Event) -> Signature:
    payload = event.payload
    fields = ("model", "from_model", "to_model", "reason", "error_type", "next_action", "tool_name", "operation")
    return (event.turn_id, event.step, event.event_type, *(getattr(payload, name, None) for name in fields))


def test_history_0_keeps_every_event_today(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(UTC)
    assert (
        main(["demo", "--sessions", "6", "--history", "0", "--database-url", sqlite_url, "--latency-scale", "0"]) == 0
    )
    after = datetime.now(UTC)
    out = capsys.readouterr().out

    assert all(before <= event.occurred_at <= after for event in _events(sqlite_url))
    assert "llm-ledger demo: 6 sessions now," in out
    assert "(today: --history 0)" in out and "incident:" not in out
    assert "http://127.0.0.1:8501\n" in out, "the dashboard's default window"


def test_the_report_names_the_timeline_the_incident_and_a_dashboard_window_that_shows_them(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "demo",
                "--sessions",
                "12",
                "--history",
                "36h",
                "--anchor",
                "2026-03-11T17:00Z",
                "--database-url",
                sqlite_url,
                *FAST,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    events = _events(sqlite_url)
    first, last = min(e.occurred_at for e in events), max(e.occurred_at for e in events)

    assert "llm-ledger demo: 12 sessions over the 36 hours before " in out
    assert f"timeline:            {first:%Y-%m-%d %H:%M} UTC to {last:%Y-%m-%d %H:%M} UTC (the 36 hours before" in out
    assert "\nincident:            openai rate-limited " in out
    assert "the dashboard, at http://127.0.0.1:8501/?window=7d" in out
    assert "\n  OK: 3 tenants," in out, "audit verify passes on the history"
    assert last - first > timedelta(hours=12)
