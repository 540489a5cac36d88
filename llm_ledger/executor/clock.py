"""The clock that stamps each event's ``occurred_at``: the system's, unless an executor is given another."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime. It must not go backwards: a stream's events are
stamped in the order they happen (the demo's simulated clocks, ``llm_ledger.demo.timeline``, are one)."""


def system_clock() -> datetime:
    """The system's time, in UTC."""
    return datetime.now(UTC)
