"""Time buckets at several resolutions, and how a window is answered from the coarsest that fit.

Every figure is kept per minute, per hour and per day (UTC). A window is cut into the whole days it
contains, the whole hours around them and the minutes at its edges, so a 30-day question reads about 30
day rows per key instead of 43,200 minute rows, and stays exact to the minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

MINUTE: Final = 60
HOUR: Final = 3_600
DAY: Final = 86_400
GRAINS: Final = (MINUTE, HOUR, DAY)
"""Stored resolutions in seconds, finest first."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def floor(moment: datetime, grain: int) -> datetime:
    """The start of the ``grain``-second bucket holding ``moment`` (UTC)."""
    seconds = int((moment - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=seconds - seconds % grain)


def ceil(moment: datetime, grain: int) -> datetime:
    start = floor(moment, grain)
    return start if start == moment else start + timedelta(seconds=grain)


@dataclass(frozen=True, slots=True)
class Segment:
    """Rows of one grain with ``start <= bucket_start < end``."""

    grain: int
    start: datetime
    end: datetime


def plan(start: datetime, end: datetime) -> list[Segment]:
    """The segments that cover ``[start, end)`` (rounded out to whole minutes) with the fewest rows."""
    return _cover(floor(start, MINUTE), ceil(end, MINUTE), len(GRAINS) - 1)


def _cover(start: datetime, end: datetime, level: int) -> list[Segment]:
    if start >= end:
        return []
    grain = GRAINS[level]
    if level == 0:
        return [Segment(grain, start, end)]
    inner_start, inner_end = ceil(start, grain), floor(end, grain)
    if inner_start >= inner_end:
        return _cover(start, end, level - 1)
    return [
        *_cover(start, inner_start, level - 1),
        Segment(grain, inner_start, inner_end),
        *_cover(inner_end, end, level - 1),
    ]


def display_grain(start: datetime, end: datetime) -> int:
    """The stored grain a time series over the window is drawn in: about 24 to 1,440 points."""
    span = (end - start).total_seconds()
    if span <= 6 * HOUR:
        return MINUTE
    if span <= 8 * DAY:
        return HOUR
    return DAY
