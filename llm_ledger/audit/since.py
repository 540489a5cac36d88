"""``--since``: an ISO date or date-time (UTC unless it says otherwise), or a span back from now."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.store import as_utc

_SPAN = re.compile(r"(\d+)\s*([wdhm])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-01``, ``2026-11-01T12:00``, ``2026-11-01T12:00:00+02:00``, or ``7d`` / ``24h`` / ``30m`` /
    ``2w`` before ``now``; always an aware UTC datetime."""
    value = text.strip()
    span = _SPAN.fullmatch(value)
    if span:
        try:
            moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
        except OverflowError:
            raise AuditConfigurationError(f"--since {text!r}: reaches back before the year 1") from None
        return moment.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise AuditConfigurationError(
                f"--since {text!r}: expected an ISO date or date-time (2026-11-01, 2026-11-01T12:00Z) or a span"
                " back from now (30m, 24h, 7d, 2w)"
            ) from None
        moment = datetime(day.year, day.month, day.day)
    try:
        return as_utc(moment)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC, 9999-12-31T23:00-02:00 in year 10000
        raise AuditConfigurationError(f"--since {text!r}: in UTC it falls outside the years 1 to 9999") from None
