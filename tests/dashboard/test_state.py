"""The view kept in the URL: what a shared link restores, and what a bad one falls back to."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs

from llm_ledger.dashboard import ViewState
from llm_ledger.dashboard.state import FIRST_DATE, LAST_DATE
from llm_ledger.projections.queries import Filters

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def test_a_view_survives_the_round_trip_through_the_url() -> None:
    view = ViewState(tenant="acme", window="custom", start=date(2026, 3, 1), end=date(2026, 3, 7), page="errors")

    assert ViewState.from_query(view.to_query()) == view


def test_unknown_pages_and_windows_fall_back_to_the_defaults() -> None:
    view = ViewState.from_query({"page": "admin", "window": "forever", "start": "yesterday"})

    assert (view.page, view.window, view.start) == ("overview", "7d", None)


def test_dates_are_left_out_of_the_url_unless_the_window_is_custom() -> None:
    view = ViewState(tenant="acme", window="7d", start=date(2026, 3, 1), session="s-1")

    assert view.to_query() == {"page": "overview", "window": "7d", "tenant": "acme", "session": "s-1"}


def test_a_span_window_ends_with_the_current_minute() -> None:
    window = ViewState(window="1h").time_window(NOW)

    assert (window.start, window.end) == (
        datetime(2026, 3, 14, 14, 10, tzinfo=UTC),
        datetime(2026, 3, 14, 15, 10, tzinfo=UTC),
    )


def test_a_custom_window_runs_from_the_start_of_its_first_day_through_its_last() -> None:
    window = ViewState(window="custom", start=date(2026, 3, 1), end=date(2026, 3, 2)).time_window(NOW)

    assert (window.start, window.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


def test_a_custom_window_without_dates_is_the_last_seven_days() -> None:
    window = ViewState(window="custom").time_window(NOW)

    assert window.end == datetime(2026, 3, 15, tzinfo=UTC)
    assert window.span == timedelta(days=7)


def test_custom_dates_given_backwards_are_put_in_order() -> None:
    view = ViewState(window="custom", start=date(2026, 3, 9), end=date(2026, 3, 2)).with_custom_dates(NOW.date())

    assert (view.start, view.end) == (date(2026, 3, 2), date(2026, 3, 9))


def test_a_link_parameter_that_cannot_be_used_is_named_and_falls_back() -> None:
    view, ignored = ViewState.read_query(
        {"window": "custom", "start": "9999-12-31", "end": "0001-01-03", "session": "s-1\x00", "page": "admin"}
    )

    assert (view.start, view.end, view.session, view.page) == (None, None, None, "overview")
    assert set(ignored) == {
        "start=9999-12-31 is outside the dates shown (1970-01-01 to 9999-12-30): ignored.",
        "end=0001-01-03 is outside the dates shown (1970-01-01 to 9999-12-30): ignored.",
        (
            "page=admin is not one of overview, latency, errors, fallbacks, tools, sessions, execution, audit: "
            "showing Overview."
        ),
        "session=s-1\\x00 cannot be a session id (it holds a control character): ignored.",
    }
    assert len(ignored) == 4


def test_an_execution_is_kept_in_the_url_and_one_with_a_control_character_is_named() -> None:
    shared = ViewState(tenant="acme", page="execution", session="s-1", execution="e-1").to_query()
    view, ignored = ViewState.read_query({"page": "execution", "execution": "e-1\x07"})

    assert ViewState.from_query(shared).execution == "e-1"
    assert view.execution is None
    assert ignored == ["execution=e-1\\x07 cannot be an execution id (it holds a control character): ignored."]


def test_the_widest_custom_window_has_a_previous_window() -> None:
    window = ViewState(window="custom", start=FIRST_DATE, end=LAST_DATE).time_window(NOW)

    previous = window.previous()

    assert window.end == datetime(9999, 12, 31, tzinfo=UTC)
    assert previous.end == window.start and previous.start == datetime.min.replace(tzinfo=UTC)


def test_filters_survive_the_round_trip_through_the_url() -> None:
    view = ViewState(tenant="acme", filters=Filters(agents=("support",), models=("mock/a?x=1&y=2", "mock/b")))

    query = view.to_query()

    assert query == {
        "page": "overview",
        "window": "7d",
        "tenant": "acme",
        "agent": "support",
        "model": ["mock/a?x=1&y=2", "mock/b"],
    }
    assert ViewState.from_query(query) == view
    assert ViewState.from_query(parse_qs(view.link().removeprefix("?"))) == view


def test_a_filter_value_given_twice_or_blank_is_kept_once_or_dropped() -> None:
    view = ViewState.from_query({"step": ["answer", " ", "classify", "answer "]})

    assert view.filters == Filters(steps=("answer", "classify"))


def test_a_filter_value_with_a_control_character_is_named_and_ignored() -> None:
    view, ignored = ViewState.read_query({"provider": ["mock", "open\x00ai"]})

    assert view.filters == Filters(providers=("mock",))
    assert ignored == ["provider=open\\x00ai cannot be a provider (it holds a control character): ignored."]
