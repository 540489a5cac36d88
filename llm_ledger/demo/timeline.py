"""When the demo's sessions happen: spread over the days before an anchor (the hour the demo is run
in, UTC), busier in working hours than at night, with one incident hour in which a provider is
rate-limited. A session runs on a simulated clock that starts at its planned time, so that a week of
traffic takes the seconds its calls take."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_HISTORY = timedelta(days=7)
MAX_HISTORY = timedelta(days=30)
"""The dashboard's longest window: a longer history could not be seen at once."""
INCIDENT_PROVIDER = "openai"
"""Rate-limited for the incident hour: its models are the primary of the enforcement step and of the
sales agents' generation, so their fallbacks stand out."""
INCIDENT_LENGTH = timedelta(hours=1)
SESSION_ROOM = timedelta(minutes=5)
"""The time left for a session to run after its start, before the hour it starts in ends (the incident's)
or before the anchor."""
FIRST_HOUR_LEFT_OUT = timedelta(hours=1)
"""No session starts in the history's first hour: the dashboard's window as long as the history ends now,
up to an hour past the anchor, and would cut it."""
PEAK_HOUR_SHARE = 12
"""The incident's sessions: one in this many of the run's, at least ``MIN_INCIDENT_SESSIONS``. More than the
busiest hours draw by traffic (a week of 30 sessions put up to 3 in one hour), so that its fallbacks
stand out at any anchor hour (tests/demo/test_timeline.py sweeps them)."""
MIN_INCIDENT_SESSIONS = 4
HOURLY_TRAFFIC = (
    # 00-05 UTC: night; 08-17: working hours (a dip at lunch); then the evening tails off.
    *(0.12,) * 6,
    *(0.3, 0.6),
    *(1.0,) * 4,
    0.75,
    *(1.0,) * 4,
    *(0.7, 0.5, 0.35, 0.3, 0.25, 0.2, 0.15),
)
"""The relative traffic of each hour of the day (UTC): a session starts in an hour with this weight."""
_SPAN = re.compile(r"(\d+)([dh])")
_UNITS = {"d": "days", "h": "hours"}


def parse_history(text: str) -> timedelta:
    """``--history``: ``7d``, ``36h``, or ``0`` for today only; at most ``MAX_HISTORY``."""
    spelled = text.strip().lower()
    if spelled == "0":
        return timedelta(0)
    match = _SPAN.fullmatch(spelled)
    if match is None:
        raise ValueError(f"history must be a number of days or hours like 7d or 36h, or 0; got {text!r}")
    history = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if history > MAX_HISTORY:
        raise ValueError(f"history must be at most {MAX_HISTORY.days}d (the dashboard's longest window), got {text!r}")
    return history


def anchor_at(moment: datetime) -> datetime:
    """The end of a history demo's timeline: ``moment`` (UTC) floored to the hour. Runs started in the
    same hour with the same seed start their sessions at the same seconds."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_anchor(text: str) -> datetime:
    """``--anchor``: an ISO date-time with its offset (``2026-03-11T17:00Z``), floored to the hour (``anchor_at``)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise ValueError(f"the anchor must be an ISO date-time with its offset like 2026-03-11T17:00Z, got {text!r}")
    return anchor_at(moment)


@dataclass(frozen=True, slots=True)
class Incident:
    """An hour in which a provider's models answer almost every call with a rate limit."""

    provider: str
    starts_at: datetime

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + INCIDENT_LENGTH

    def covers(self, moment: datetime) -> bool:
        return self.starts_at <= moment < self.ends_at


@dataclass(frozen=True, slots=True)
class Timeline:
    """The session start times of a history demo, in order, and its incident (None when the history
    holds no whole hour before the anchor's)."""

    anchor: datetime
    history: timedelta
    starts: tuple[datetime, ...]
    incident: Incident | None


def lay_out(sessions: int, *, seed: int, history: timedelta, anchor: datetime) -> Timeline:
    """When each of ``sessions`` starts, within ``history`` before ``anchor`` but its first hour. The incident
    falls in one of the busiest whole hours, and some sessions are placed in it (``incident_sessions``) so
    that it shows however few sessions there are; the others start at times drawn by ``HOURLY_TRAFFIC``."""
    if history <= timedelta(0):
        raise ValueError(f"a timeline needs a history above 0, got {history}")
    if anchor.utcoffset() is None:
        raise ValueError(f"the anchor must be an aware datetime (UTC), got {anchor.isoformat()}")
    anchor = anchor.astimezone(UTC)
    rng = random.Random(f"timeline:{seed}")  # its own stream: the plan's sessions are drawn as without history
    incident = _incident(rng, history, anchor)
    in_incident = 0 if incident is None else incident_sessions(sessions)
    starts = [_during_incident(rng, incident) for _ in range(in_incident)] if incident else []
    # A session runs for seconds: one starting just before the anchor, which may be now, would end after it.
    room = min(SESSION_ROOM, history / 2)
    left_out = min(FIRST_HOUR_LEFT_OUT, (history - room) / 2)
    drawn = history - left_out - room
    starts += [_by_traffic(rng, anchor - history + left_out, drawn) for _ in range(sessions - in_incident)]
    return Timeline(anchor, history, tuple(sorted(starts)), incident)


def incident_sessions(sessions: int) -> int:
    """How many of ``sessions`` are placed in the incident hour: never more than a quarter of them, so
    that a small run still shows the rest of its days."""
    return min(sessions // 4, max(MIN_INCIDENT_SESSIONS, sessions // PEAK_HOUR_SHARE))


def _incident(rng: random.Random, history: timedelta, anchor: datetime) -> Incident | None:
    # The whole hours of the history but its first, which a window ending now (past the anchor) cuts.
    first = anchor - timedelta(hours=history // timedelta(hours=1)) + timedelta(hours=1)
    hours = [first + timedelta(hours=n) for n in range(int((anchor - first) / timedelta(hours=1)))]
    if not hours:
        return None
    busiest = max(HOURLY_TRAFFIC[hour.hour] for hour in hours)
    return Incident(INCIDENT_PROVIDER, rng.choice([hour for hour in hours if HOURLY_TRAFFIC[hour.hour] == busiest]))


def _during_incident(rng: random.Random, incident: Incident) -> datetime:
    latest = INCIDENT_LENGTH - SESSION_ROOM  # each session meets the incident whole
    return incident.starts_at + timedelta(seconds=int(rng.uniform(0, latest.total_seconds())))


def _by_traffic(rng: random.Random, start: datetime, history: timedelta) -> datetime:
    """A moment of ``[start, start + history)``, more likely in busy hours (rejection sampling)."""
    peak = max(HOURLY_TRAFFIC)
    while True:
        moment = start + timedelta(seconds=rng.uniform(0, history.total_seconds()))
        if rng.random() * peak < HOURLY_TRAFFIC[moment.hour]:
            return moment.replace(microsecond=0)


class SimulatedClock:
    """A session's clock (an executor's ``clock=``): its planned start plus the real time elapsed since
    the session began, so its events keep their order and its latencies their real length, days ago."""

    __slots__ = ("_origin", "_starts_at")

    def __init__(self, starts_at: datetime) -> None:
        self._starts_at = starts_at
        self._origin = time.monotonic()

    def __call__(self) -> datetime:
        return self._starts_at + timedelta(seconds=time.monotonic() - self._origin)
