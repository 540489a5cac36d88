"""What a view shows (tenant, window, page, session), as it is kept in the URL so that it can be shared."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from llm_ledger.projections.queries import Window

PAGES: Final = {
    "overview": "Overview",
    "latency": "Latency",
    "errors": "Errors",
    "fallbacks": "Fallbacks",
    "sessions": "Sessions",
    "audit": "Audit",
}
WINDOWS: Final = {
    "1h": "Last hour",
    "1d": "Last day",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "custom": "Custom dates",
}
_SPANS: Final = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_PAGE: Final = "overview"
DEFAULT_WINDOW: Final = "1d"
CUSTOM_DEFAULT_DAYS: Final = 7


@dataclass(frozen=True, slots=True)
class ViewState:
    """One view of the dashboard. Built from URL query parameters, it never fails: a value it does not
    know falls back to the default, so that a stale or hand-edited link still opens."""

    tenant: str | None = None
    window: str = DEFAULT_WINDOW
    start: date | None = None
    end: date | None = None
    page: str = DEFAULT_PAGE
    session: str | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str | list[str]]) -> ViewState:
        def value(name: str) -> str | None:
            raw = params.get(name)
            if isinstance(raw, list):
                raw = raw[-1] if raw else None
            return raw.strip() or None if raw is not None else None

        window = value("window") or DEFAULT_WINDOW
        page = value("page") or DEFAULT_PAGE
        return cls(
            tenant=value("tenant"),
            window=window if window in WINDOWS else DEFAULT_WINDOW,
            start=_parse_date(value("start")),
            end=_parse_date(value("end")),
            page=page if page in PAGES else DEFAULT_PAGE,
            session=value("session"),
        )

    def to_query(self) -> dict[str, str]:
        """The query parameters that restore this view (nothing for what is unset)."""
        query = {"page": self.page, "window": self.window}
        if self.tenant:
            query["tenant"] = self.tenant
        if self.window == "custom":
            if self.start:
                query["start"] = self.start.isoformat()
            if self.end:
                query["end"] = self.end.isoformat()
        if self.session:
            query["session"] = self.session
        return query

    def with_custom_dates(self, today: date) -> ViewState:
        """The custom window's dates, defaulted (the last week) and put in order."""
        end = self.end or today
        start = self.start or end - timedelta(days=CUSTOM_DEFAULT_DAYS - 1)
        if end < start:
            start, end = end, start
        return replace(self, start=start, end=end)

    def time_window(self, now: datetime) -> Window:
        """The window to query: the chosen span up to now, or whole UTC days from ``start`` through ``end``."""
        if self.window in _SPANS:
            return Window.last(_SPANS[self.window], now)
        dates = self.with_custom_dates(now.astimezone(UTC).date())
        assert dates.start is not None and dates.end is not None
        return Window(
            datetime.combine(dates.start, time(), tzinfo=UTC),
            datetime.combine(dates.end + timedelta(days=1), time(), tzinfo=UTC),
        )


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
