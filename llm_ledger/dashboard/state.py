"""What a view shows (tenant, window, filters, page, session, execution), as it is kept in the URL so that it
can be shared."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from urllib.parse import urlencode

from llm_ledger.projections.queries import Filters, Window

PAGES: Final = {
    "overview": "Overview",
    "latency": "Latency",
    "errors": "Errors",
    "fallbacks": "Fallbacks",
    "tools": "Tools",
    "sessions": "Sessions",
    "execution": "Execution",
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
FILTERS: Final = {"agent": "Agents", "step": "Steps", "model": "Models", "provider": "Providers"}
"""The filters' URL parameters (each may be repeated: ``?model=a&model=b``) and their labels."""
FILTER_FIELDS: Final = {"agent": "agents", "step": "steps", "model": "models", "provider": "providers"}
"""The field of ``Filters`` each parameter sets."""
DEFAULT_PAGE: Final = "overview"
DEFAULT_WINDOW: Final = "7d"
CUSTOM_DEFAULT_DAYS: Final = 7
FIRST_DATE: Final = date(1970, 1, 1)
"""The earliest custom date: the ledger's time buckets count from the epoch, and nothing is recorded
before it."""
LAST_DATE: Final = date(9999, 12, 30)
"""The latest custom date: the window ends at the next midnight, the last one a datetime can hold."""
_SHOWN_CHARACTERS: Final = 80


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
    execution: str | None = None
    filters: Filters = field(default_factory=Filters)

    @classmethod
    def from_query(cls, params: Mapping[str, str | list[str]]) -> ViewState:
        return cls.read_query(params)[0]

    @classmethod
    def read_query(cls, params: Mapping[str, str | list[str]]) -> tuple[ViewState, list[str]]:
        """The view a link asks for, and a message (plain text) for each parameter it could not use."""
        ignored: list[str] = []

        def value(name: str) -> str | None:
            raw = params.get(name)
            if isinstance(raw, list):
                raw = raw[-1] if raw else None
            return raw.strip() or None if raw is not None else None

        def values(name: str) -> tuple[str, ...]:
            raw = params.get(name)
            given = [raw] if isinstance(raw, str) else raw or []
            kept: dict[str, None] = {}  # in the link's order, once each
            for text in (text.strip() for text in given):
                if not is_plain_text(text):
                    ignored.append(f"{name}={shown(text)} cannot be a {name} (it holds a control character): ignored.")
                elif text:
                    kept[text] = None
            return tuple(kept)

        def choice(name: str, known: Mapping[str, str], default: str) -> str:
            given = value(name)
            if given is None or given in known:
                return given or default
            ignored.append(f"{name}={shown(given)} is not one of {', '.join(known)}: showing {known[default]}.")
            return default

        def day(name: str) -> date | None:
            given = value(name)
            if given is None:
                return None
            parsed = _parse_date(given)
            if parsed is None:
                ignored.append(f"{name}={shown(given)} is not a date (YYYY-MM-DD): ignored.")
            elif not FIRST_DATE <= parsed <= LAST_DATE:
                ignored.append(
                    f"{name}={shown(given)} is outside the dates shown ({FIRST_DATE} to {LAST_DATE}): ignored."
                )
                return None
            return parsed

        def identifier(name: str, what: str) -> str | None:
            given = value(name)
            if given is not None and not is_plain_text(given):
                ignored.append(f"{name}={shown(given)} cannot be {what} (it holds a control character): ignored.")
                return None
            return given

        session = identifier("session", "a session id")
        execution = identifier("execution", "an execution id")
        view = cls(
            tenant=value("tenant"),
            window=choice("window", WINDOWS, DEFAULT_WINDOW),
            start=day("start"),
            end=day("end"),
            page=choice("page", PAGES, DEFAULT_PAGE),
            session=session,
            execution=execution,
            filters=Filters(**{FILTER_FIELDS[name]: values(name) for name in FILTERS}),
        )
        return view, ignored

    def to_query(self) -> dict[str, str | list[str]]:
        """The query parameters that restore this view (nothing for what is unset); a filter of several
        values is a list (a parameter repeated), of one a string, as ``st.query_params`` holds them."""
        query: dict[str, str | list[str]] = {"page": self.page, "window": self.window}
        if self.tenant:
            query["tenant"] = self.tenant
        if self.window == "custom":
            if self.start:
                query["start"] = self.start.isoformat()
            if self.end:
                query["end"] = self.end.isoformat()
        if self.session:
            query["session"] = self.session
        if self.execution:
            query["execution"] = self.execution
        for name in FILTERS:
            chosen: tuple[str, ...] = getattr(self.filters, FILTER_FIELDS[name])
            if chosen:
                query[name] = chosen[0] if len(chosen) == 1 else list(chosen)
        return query

    def link(self) -> str:
        """The relative link (``?page=...``) that opens this view."""
        return "?" + urlencode(self.to_query(), doseq=True)

    def with_custom_dates(self, today: date) -> ViewState:
        """The custom window's dates, defaulted (the last week) and put in order."""
        end = self.end or today
        start = self.start or max(FIRST_DATE, end - timedelta(days=CUSTOM_DEFAULT_DAYS - 1))
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


def is_plain_text(text: str) -> bool:
    """Whether ``text`` could be an id the ledger holds: no control character (NUL among them, which
    PostgreSQL cannot store in text)."""
    return not any(unicodedata.category(character) == "Cc" for character in text)


def shown(text: str) -> str:
    """A value from outside (a link, a search box) as a message may quote it: unprintable characters
    escaped, cut to a readable length."""
    quoted = text if text.isprintable() else repr(text)[1:-1]
    return quoted if len(quoted) <= _SHOWN_CHARACTERS else f"{quoted[:_SHOWN_CHARACTERS]}..."


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
