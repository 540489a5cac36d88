"""The clock that stamps each event's ``occurred_at``: the system's, unless an executor is given another.

Another clock is a simulation seam (the demo's sessions run days in the past): it moves ``occurred_at``
only. The tracing spans, the attempts' latencies, the UUIDv7 stream ids and the store's ``recorded_at``
stay on the system's time, the record of when an event was really written."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from llm_ledger.executor.errors import ConfigurationError

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime (stamped in UTC). A stream's events never go back in time:
a reading earlier than the stream's previous event is stamped with the previous event's time."""

log = logging.getLogger("llm_ledger.executor")


def system_clock() -> datetime:
    """The system's time, in UTC."""
    return datetime.now(UTC)


def checked_clock(clock: Clock) -> Clock:
    """``clock``, read once: a clock that returns no aware datetime is refused here, when the executor is
    built, rather than at every call it records."""
    if clock is system_clock:
        return clock
    if not callable(clock):
        raise ConfigurationError(f"clock= must be a function returning the current time, got {clock!r}")
    reading = clock()
    if not isinstance(reading, datetime) or reading.utcoffset() is None:
        raise ConfigurationError(
            f"clock= must return an aware datetime (datetime.now(UTC), not datetime.now()), got {reading!r}"
        )
    return clock


class StreamClock:
    """A stream's timestamps: ``clock``'s readings in UTC, never before the stream's previous event's.
    A reading that is not an aware datetime (a clock that changed after it was checked) is replaced by the
    system's time, said once in the log: the call it stamps must not fail for it."""

    __slots__ = ("_clock", "_last")

    _bad_readings = 0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: datetime | None = None

    def __call__(self) -> datetime:
        moment = self._reading()
        if self._last is not None and moment < self._last:
            moment = self._last
        self._last = moment
        return moment

    def _reading(self) -> datetime:
        reading = self._clock()
        if isinstance(reading, datetime) and reading.utcoffset() is not None:
            return reading.astimezone(UTC)
        if StreamClock._bad_readings == 0:
            log.error("llm-ledger: the executor's clock returned %r, not an aware datetime: system time used", reading)
        StreamClock._bad_readings += 1
        return system_clock()
