"""When a history demo's sessions happen (``llm_ledger.demo.timeline``): the span ``--history`` takes,
the anchor, the layout of the sessions and its incident, and a session's simulated clock."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from llm_ledger.demo import plan_workload
from llm_ledger.demo.timeline import (
    HOURLY_TRAFFIC,
    SESSION_ROOM,
    SimulatedClock,
    anchor_at,
    incident_sessions,
    lay_out,
    parse_anchor,
    parse_history,
)

ANCHOR = datetime(2026, 3, 11, 17, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "history"),
    [("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), (" 2D ", timedelta(days=2)), ("0", timedelta(0))],
)
def test_history_is_days_or_hours_or_0(text: str, history: timedelta) -> None:
    assert parse_history(text) == history


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7w", "history must be a number of days or hours like 7d or 36h, or 0; got '7w'"),
        ("1.5d", "history must be a number of days or hours like 7d or 36h, or 0; got '1.5d'"),
        ("-1d", "history must be a number of days or hours like 7d or 36h, or 0; got '-1d'"),
        ("", "history must be a number of days or hours like 7d or 36h, or 0; got ''"),
        ("721h", "history must be at most 30d (the dashboard's longest window), got '721h'"),
    ],
)
def test_a_history_it_cannot_take_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_history(text)


def test_the_anchor_is_the_start_of_the_hour_in_utc() -> None:
    assert anchor_at(datetime(2026, 3, 11, 17, 59, 59, 999_999, tzinfo=UTC)) == ANCHOR
    in_new_york = datetime(2026, 3, 11, 12, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=-4)))
    assert anchor_at(in_new_york + timedelta(hours=5)) == ANCHOR


def test_the_sessions_lie_in_order_within_the_history_and_the_same_seed_lays_them_out_again() -> None:
    timeline = lay_out(200, seed=7, history=timedelta(days=7), anchor=ANCHOR)
    assert timeline == lay_out(200, seed=7, history=timedelta(days=7), anchor=ANCHOR)
    assert timeline.starts != lay_out(200, seed=8, history=timedelta(days=7), anchor=ANCHOR).starts
    assert list(timeline.starts) == sorted(timeline.starts) and len(timeline.starts) == 200
    # Each leaves a session the minutes it needs to end before the anchor, which may be now; none starts
    # in the first hour, which the dashboard's 7-day window, ending up to an hour past the anchor, cuts.
    assert all(ANCHOR - timedelta(days=7, hours=-1) <= start < ANCHOR - SESSION_ROOM for start in timeline.starts)


@pytest.mark.parametrize("sessions", [8, 30, 100])
@pytest.mark.parametrize("hour", range(24))
def test_at_any_anchor_hour_the_incident_is_a_busy_hour_holding_more_sessions_than_any_other(
    hour: int, sessions: int
) -> None:
    anchor = ANCHOR.replace(hour=hour)
    timeline = lay_out(sessions, seed=7, history=timedelta(days=7), anchor=anchor)
    incident = timeline.incident
    assert incident is not None and HOURLY_TRAFFIC[incident.starts_at.hour] == max(HOURLY_TRAFFIC)
    assert anchor - timedelta(days=7) + timedelta(hours=1) <= incident.starts_at <= anchor - timedelta(hours=1)
    by_hour = Counter(anchor_at(start) for start in timeline.starts)
    # Placed there, and maybe some drawn by traffic too.
    assert by_hour.pop(incident.starts_at) >= incident_sessions(sessions) >= 2
    if sessions >= 30:  # a small run holds a quarter of its sessions there, at most
        assert incident_sessions(sessions) > max(by_hour.values())
    assert all(anchor - timedelta(days=7, hours=-1) <= start < anchor - SESSION_ROOM for start in timeline.starts)


def test_the_incident_is_a_whole_busy_hour_of_the_history_with_sessions_in_it() -> None:
    timeline = lay_out(100, seed=7, history=timedelta(hours=36), anchor=ANCHOR)
    incident = timeline.incident
    assert incident is not None and incident.provider == "openai"
    assert incident.starts_at.minute == 0 and HOURLY_TRAFFIC[incident.starts_at.hour] == max(HOURLY_TRAFFIC)
    assert ANCHOR - timedelta(hours=35) <= incident.starts_at <= ANCHOR - timedelta(hours=1)
    assert sum(incident.covers(start) for start in timeline.starts) >= 4


@pytest.mark.parametrize(
    ("text", "anchor"),
    [
        ("2026-03-11T17:00Z", ANCHOR),
        ("2026-03-11T17:42:10+00:00", ANCHOR),
        ("2026-03-11T13:00-04:00", ANCHOR),
    ],
)
def test_an_anchor_is_an_iso_date_time_with_its_offset_floored_to_the_hour(text: str, anchor: datetime) -> None:
    assert parse_anchor(text) == anchor


@pytest.mark.parametrize("text", ["2026-03-11T17:00", "2026-03-11", "5pm", ""])
def test_an_anchor_without_an_offset_is_refused(text: str) -> None:
    message = f"the anchor must be an ISO date-time with its offset like 2026-03-11T17:00Z, got {text!r}"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        parse_anchor(text)


def test_an_hour_of_history_has_no_incident() -> None:
    assert lay_out(10, seed=7, history=timedelta(hours=1), anchor=ANCHOR).incident is None


def test_the_plan_refuses_an_anchor_without_a_time_zone() -> None:
    with pytest.raises(ValueError, match="the anchor must be an aware datetime"):
        plan_workload(3, history=timedelta(days=1), anchor=datetime(2026, 3, 11, 17))


def test_without_history_the_sessions_run_now() -> None:
    plan = plan_workload(3, history=timedelta(0))
    assert plan.timeline is None and all(session.starts_at is None for session in plan.sessions)


def test_a_session_clock_starts_at_its_planned_time_and_never_goes_back() -> None:
    clock = SimulatedClock(ANCHOR - timedelta(days=3))
    readings = [clock() for _ in range(1_000)]
    assert ANCHOR - timedelta(days=3) <= readings[0] < ANCHOR - timedelta(days=3) + timedelta(seconds=5)
    assert readings == sorted(readings)
