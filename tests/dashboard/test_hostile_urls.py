"""Links edited by hand or by an attacker: every page of the dashboard answers a query parameter it cannot
use with a plain message naming it, and shows the view it falls back to; never a traceback or the SQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.apptest import PAGES, open_dashboard, rendered_text
from tests.dashboard.conftest import PopulatedLedger

Configure = Callable[..., None]

HOSTILE = {
    "end in year 1": {"window": "custom", "end": "0001-01-03"},
    "start in year 9999": {"window": "custom", "start": "9999-12-31"},
    "both at the ends of time, reversed": {"window": "custom", "start": "9999-12-31", "end": "0001-01-01"},
    "a date past year 9999": {"window": "custom", "end": "10000-01-01"},
    "not a date": {"window": "custom", "start": "yesterday"},
    "a NUL in the session": {"session": "acme-session-1\x00"},
    "a control character in the session": {"session": "acme\x1bsession"},
    "a NUL in the execution": {"execution": "01a24237-3db1-73e0-90d3-cdb5281e0666\x00"},
    "an unknown tenant": {"tenant": "nobody-has-this-tenant"},
    "a NUL in the tenant": {"tenant": "acme\x00"},
    "markup in the tenant": {"tenant": "**bold** [link](http://evil.example) :red[x]"},
    "an unknown agent": {"agent": "nobody-has-this-agent"},
    "a NUL in a model": {"model": "mock/fast\x00"},
    "a control character in a step": {"step": "answer\x1b[2J"},
    "markup in a provider": {"provider": "**bold** [link](http://evil.example) :red[x]"},
    "an unknown page": {"page": "admin"},
    "an unknown window": {"window": "forever"},
}


def _says_plainly(app: AppTest) -> str:
    """The run's warnings, after checking that nothing failed."""
    assert not app.exception, [exception.value for exception in app.exception]
    text = rendered_text(app)
    for leaked in ("Traceback", "SELECT ", "psycopg", "sqlalchemy", "OverflowError"):
        assert leaked not in text
    return "\n".join(warning.value for warning in app.main.warning)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("query", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_link_gets_a_plain_message_on_every_page(
    page: str, query: dict[str, str], populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    params = {"page": page, "tenant": populated_ledger.ledger.tenant, "window": "1d", **query}

    app = open_dashboard(**params)

    warnings = _says_plainly(app)
    assert warnings, "a parameter the dashboard could not use was ignored without a word"
    assert app.main.header, "the page fell back to a view and drew it"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"window": "custom", "end": "0001-01-03"}, "end=0001-01-03"),
        ({"window": "custom", "start": "9999-12-31"}, "start=9999-12-31"),
        ({"window": "custom", "start": "yesterday"}, "start=yesterday"),
        ({"session": "acme-session-1\x00"}, "session"),
        ({"tenant": "nobody-has-this-tenant"}, "nobody-has-this-tenant"),
        ({"agent": "nobody-has-this-agent"}, "nobody-has-this-agent"),
        ({"model": "mock/fast\x00"}, "model=mock/fast\\\\x00"),
        ({"step": "answer\x1b[2J"}, "step=answer\\\\x1b\\[2J"),
    ],
)
def test_the_message_names_the_parameter(
    query: dict[str, str], named: str, populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(**{"page": "sessions", "tenant": populated_ledger.ledger.tenant, "window": "1d", **query})

    assert named in _says_plainly(app)


def test_markup_in_a_tenant_from_the_link_is_shown_as_text(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(tenant="**bold** [link](http://evil.example)")

    warnings = _says_plainly(app)
    assert "\\*\\*bold\\*\\* \\[link\\]\\(http" in warnings


def test_markup_in_a_filter_from_the_link_is_shown_as_text(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(tenant=populated_ledger.ledger.tenant, provider="**bold** [link](http://evil.example)")

    warnings = _says_plainly(app)
    assert "\\*\\*bold\\*\\* \\[link\\]\\(http" in warnings
    assert "\\*\\*bold\\*\\*" in "\n".join(caption.value for caption in app.main.caption)


def test_a_bound_viewer_asked_for_another_tenant_is_told_nothing_about_it(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url, tenant=ledger.tenant)

    known = _says_plainly(open_dashboard(tenant=ledger.other_tenant))
    unknown = _says_plainly(open_dashboard(tenant="nobody-has-this-tenant"))

    assert known.replace(ledger.other_tenant, "X") == unknown.replace("nobody-has-this-tenant", "X")


def test_reversed_dates_in_range_are_put_in_order_without_a_warning(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(tenant=populated_ledger.ledger.tenant, window="custom", start="2026-03-09", end="2026-03-02")

    assert not _says_plainly(app)
    assert "2026-03-02 00:00 to 2026-03-10 00:00 UTC" in app.main.caption[0].value


def test_the_widest_window_the_dates_allow_is_drawn_on_every_page(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    for page in PAGES:
        app = open_dashboard(
            page=page, tenant=populated_ledger.ledger.tenant, window="custom", start="1970-01-01", end="9999-12-30"
        )

        assert not _says_plainly(app), page
        assert app.main.header[0].value


def test_a_control_character_typed_into_the_session_search_is_refused_plainly(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    app = open_dashboard(page="sessions", tenant=populated_ledger.ledger.tenant, window="1d")

    app.text_input(key="session_search").input("acme\x00").run()

    assert "is not searched for" in _says_plainly(app)
