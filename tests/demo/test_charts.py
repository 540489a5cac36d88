"""The demo's charts, as the dashboard first shows them (its first tenant, the last 7 days): every time
chart has points on most days of the week, and the incident hour stands out of the Errors and Fallbacks
charts. The figures are read from the rows each chart sends the browser."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from llm_ledger.cli import main
from llm_ledger.demo import plan_workload
from llm_ledger.demo.timeline import Incident
from llm_ledger.projections.grains import HOUR, display_grain
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.chart_data import DrawnChart, drawn_charts
from tests.demo.ledger import latest_anchor_at

SESSIONS = 40
"""Few enough to run in seconds, enough that the first tenant has sessions on six of the days."""
SEED = 7
HISTORY = timedelta(days=6)
"""A day short of the window: the history ends at the anchor, up to a day before now, and the 7-day
window, which ends now, then holds all of it."""
ANCHOR_HOUR = 17
"""The history ends at this hour of the day (the latest before now): the sessions' places relative to it,
and the incident's hour with them, are then the same on every run, whatever the hour the test runs in."""
WINDOW = "7d"
MIN_DAYS = 5
INCIDENT_FACTOR = 2
TIME_CHART_PAGES = ("overview", "latency", "errors", "fallbacks", "cost")


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    """The demo run once into a SQLite ledger the dashboard reads (the demo catches its read models up),
    and the incident it laid out."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'ledger.db'}"
    anchor = latest_anchor_at(ANCHOR_HOUR)
    demo = ["demo", "--sessions", str(SESSIONS), "--seed", str(SEED), "--history", f"{HISTORY.days}d"]
    assert main([*demo, "--anchor", anchor.isoformat(), "--latency-scale", "0", "--database-url", url]) == 0
    laid_out = plan_workload(SESSIONS, SEED, history=HISTORY, anchor=anchor).incident
    assert laid_out is not None, "a history of days has an incident"
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("LLM_LEDGER_DATABASE_URL", url)
        environment.setenv("LLM_LEDGER_DASHBOARD_CATCH_UP", "false")
        yield laid_out


def _time_charts(page: str) -> list[DrawnChart]:
    app = open_dashboard(page=page, window=WINDOW)
    assert not app.exception and not app.error, page
    charts = [chart for chart in drawn_charts(app) if chart.is_over_time]
    assert charts, f"the {page} page draws a chart over time"
    return charts


def _by_hour(chart: DrawnChart, field: str) -> dict[datetime, float]:
    """``field`` summed per bucket over the chart's series (its groups)."""
    totals: defaultdict[datetime, float] = defaultdict(float)
    for moment, value in chart.points(field):
        totals[moment] += value
    return totals


def test_the_seven_day_window_is_drawn_by_the_hour() -> None:
    # The incident is one hour: it stands out of the charts only when a bucket is an hour.
    now = datetime.now(UTC)
    assert display_grain(now - timedelta(days=7), now) == HOUR


@pytest.mark.parametrize("page", TIME_CHART_PAGES)
def test_every_time_chart_has_points_on_most_days_of_the_week(incident: Incident, page: str) -> None:
    for chart in _time_charts(page):
        days = {moment.date() for moment, _ in chart.points()}
        assert len(days) >= MIN_DAYS, f"{page}: {chart.value_field} on {sorted(days)}"


@pytest.mark.parametrize(("page", "field"), [("fallbacks", "fell back"), ("errors", "failures")])
def test_the_incident_hour_stands_out(incident: Incident, page: str, field: str) -> None:
    # Counts, not the rates drawn: a quiet night hour whose one execution fell back has a rate of 100%.
    for chart in _time_charts(page):
        by_hour = _by_hour(chart, field)
        during = by_hour.pop(incident.starts_at, 0.0)
        busiest_other = max(by_hour.values(), default=0.0)
        assert during >= INCIDENT_FACTOR * busiest_other > 0, (
            f"{page}: {field} {during} in the incident hour {incident.starts_at:%Y-%m-%d %H:%M}, "
            f"{busiest_other} at most in any other"
        )
