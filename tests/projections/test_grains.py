"""Grains: a window is answered from the coarsest stored rows that tile it exactly."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from llm_ledger.projections.grains import DAY, GRAINS, HOUR, MINUTE, Segment, ceil, display_grain, floor, plan

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


def assert_tiles(segments: list[Segment], start: datetime, end: datetime) -> None:
    """Segments in order, each aligned to its grain, touching end to start, from start to end."""
    assert segments[0].start == start and segments[-1].end == end
    for segment in segments:
        assert segment.start < segment.end
        assert floor(segment.start, segment.grain) == segment.start
        assert floor(segment.end, segment.grain) == segment.end
    for before, after in itertools.pairwise(segments):
        assert before.end == after.start


def test_floor_and_ceil_align_to_the_grain() -> None:
    moment = datetime(2025, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
    assert floor(moment, MINUTE) == datetime(2025, 3, 4, 5, 6, tzinfo=UTC)
    assert floor(moment, HOUR) == datetime(2025, 3, 4, 5, tzinfo=UTC)
    assert floor(moment, DAY) == datetime(2025, 3, 4, tzinfo=UTC)
    assert ceil(moment, HOUR) == datetime(2025, 3, 4, 6, tzinfo=UTC)
    assert ceil(datetime(2025, 3, 4, tzinfo=UTC), DAY) == datetime(2025, 3, 4, tzinfo=UTC)


def test_a_thirty_day_window_reads_days_with_hours_and_minutes_at_its_edges() -> None:
    start = datetime(2025, 1, 1, 10, 17, 30, tzinfo=UTC)
    end = start + timedelta(days=30)
    segments = plan(start, end)

    assert [s.grain for s in segments] == [MINUTE, HOUR, DAY, HOUR, MINUTE]
    assert segments[2] == Segment(DAY, datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 31, tzinfo=UTC))
    assert_tiles(segments, datetime(2025, 1, 1, 10, 17, tzinfo=UTC), datetime(2025, 1, 31, 10, 18, tzinfo=UTC))


def test_a_window_of_whole_days_is_one_segment_of_days() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert plan(start, start + timedelta(days=7)) == [Segment(DAY, start, start + timedelta(days=7))]


def test_a_window_within_one_hour_reads_minutes() -> None:
    start = datetime(2025, 1, 1, 10, 5, tzinfo=UTC)
    assert plan(start, start + timedelta(minutes=20)) == [Segment(MINUTE, start, start + timedelta(minutes=20))]


def test_an_empty_window_reads_nothing() -> None:
    moment = datetime(2025, 1, 1, 10, 5, tzinfo=UTC)
    assert plan(moment, moment) == []


@given(moments, st.integers(min_value=1, max_value=90 * DAY))
def test_segments_tile_the_minute_rounded_window_with_the_coarsest_grains(start: datetime, seconds: int) -> None:
    end = start + timedelta(seconds=seconds)
    segments = plan(start, end)

    assert_tiles(segments, floor(start, MINUTE), ceil(end, MINUTE))
    # Coarsest: no segment holds a whole bucket of the next coarser grain.
    for segment in segments:
        for grain in [g for g in GRAINS if g > segment.grain][:1]:
            assert ceil(segment.start, grain) + timedelta(seconds=grain) > segment.end, segment
    # Grains rise then fall: at most two segments of each grain below the coarsest used.
    grains = [s.grain for s in segments]
    assert grains.count(max(grains)) == 1
    for grain in GRAINS:
        assert grains.count(grain) <= 2


def test_time_series_are_drawn_in_minutes_hours_or_days_by_window_length() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert display_grain(start, start + timedelta(hours=1)) == MINUTE
    assert display_grain(start, start + timedelta(days=1)) == HOUR
    assert display_grain(start, start + timedelta(days=7)) == HOUR
    assert display_grain(start, start + timedelta(days=30)) == DAY
