"""The dashboard script under Streamlit's AppTest: every page for a tenant of a known ledger, for an
empty, an unmigrated and an unreachable database; the figures equal what the raw events say; a viewer
bound to a tenant sees nothing of the others; the URL keeps the view; read models an older projector
built are named with the command that rebuilds them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from llm_ledger.cli import main
from llm_ledger.dashboard import PAGES as PAGE_TITLES
from llm_ledger.store import migrate
from tests.dashboard.apptest import PAGES, deltas, metrics, open_dashboard, rendered_text
from tests.dashboard.conftest import UNREACHABLE_URL, PopulatedLedger
from tests.projections.projecting import as_an_older_projector_left_them

Configure = Callable[..., None]


@pytest.mark.parametrize("page", PAGES)
def test_each_page_renders_for_a_tenant(page: str, populated_ledger: PopulatedLedger, dashboard_env: Configure) -> None:
    dashboard_env(populated_ledger.url)
    app = open_dashboard(page=page, tenant=populated_ledger.ledger.tenant, window="1d")

    assert not app.exception
    assert not app.error
    assert app.main.header[0].value == PAGE_TITLES[page]
    assert not app.main.info, [info.value for info in app.main.info]


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_database_says_how_to_get_data(page: str, empty_ledger_url: str, dashboard_env: Configure) -> None:
    dashboard_env(empty_ledger_url)
    app = open_dashboard(page=page)

    assert not app.exception
    assert not app.error
    assert "has no executions" in app.info[0].value
    assert "llm-ledger demo" in rendered_text(app)


@pytest.mark.parametrize("page", PAGES)
def test_an_unreachable_database_is_said_plainly(page: str, dashboard_env: Configure) -> None:
    dashboard_env(UNREACHABLE_URL)
    app = open_dashboard(page=page)

    assert not app.exception
    [error] = app.error
    assert error.value == "The ledger database cannot be reached: postgresql+psycopg://postgres:***@127.0.0.1:1/ledger"
    assert "not-shown-anywhere" not in rendered_text(app)


def test_a_database_without_a_ledger_names_the_commands_that_make_one(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    dashboard_env(sqlite_url)
    app = open_dashboard()

    assert not app.exception
    [error] = app.error
    assert "There is no ledger at" in error.value
    assert "`llm-ledger demo`" in error.value
    assert "`llm-ledger db upgrade`" in error.value


def test_a_database_behind_the_schema_names_the_command_that_migrates_it(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    migrate.upgrade(sqlite_url, "0001")
    dashboard_env(sqlite_url)
    app = open_dashboard()

    assert not app.exception
    [error] = app.error
    assert "is at schema revision 0001" in error.value
    assert "`llm-ledger db upgrade`" in error.value


def test_the_overview_shows_the_figures_the_raw_events_imply(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger
    app = open_dashboard(page="overview", tenant=ledger.tenant, window="1h")

    expected = ledger.figures(ledger.tenant, ledger.last_hour())
    # The fixture as designed (one of the executions asked for the two tools, whose runs are no executions).
    assert (expected.executions, expected.failed, expected.fell_back) == (14, 2, 3)
    shown = metrics(app)
    assert shown["Executions"] == str(expected.executions)
    assert shown["Error rate"] == expected.error_rate_text
    assert shown["Fallback rate"] == expected.fallback_rate_text


def test_the_overview_compares_with_the_previous_window(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger
    app = open_dashboard(page="overview", tenant=ledger.tenant, window="1h")

    now, before = (
        ledger.figures(ledger.tenant, ledger.last_hour()),
        ledger.figures(ledger.tenant, ledger.last_hour().previous()),
    )
    error_rate_change = 100 * (now.failed / now.executions - before.failed / before.executions)
    assert deltas(app)["Executions"] == f"{now.executions - before.executions:+d}"
    assert deltas(app)["Error rate"] == f"{error_rate_change:+.1f} pp"


def test_a_bound_viewer_sees_only_its_own_tenant(populated_ledger: PopulatedLedger, dashboard_env: Configure) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url, tenant=ledger.tenant)

    for page in PAGES:
        # Even a URL naming the other tenant shows the bound tenant only.
        app = open_dashboard(page=page, tenant=ledger.other_tenant, window="1d")

        assert not app.exception
        tenant = app.sidebar.selectbox(key="tenant")
        assert (tenant.value, tenant.options, tenant.disabled) == (ledger.tenant, [ledger.tenant], True)
        text = rendered_text(app)
        assert ledger.other_tenant not in text.replace(f"tenant={ledger.other_tenant}", "")
        for private in ("globex-private-model", "globex-private-step", "globex-private-agent"):
            assert private not in text, f"{page} shows {private}"
    assert metrics(open_dashboard(page="overview", window="1h"))["Executions"] == "14"


def test_a_bound_viewer_never_shows_another_tenants_session(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url, tenant=ledger.tenant)

    app = open_dashboard(page="sessions", session=ledger.other_session, window="1d")

    assert not app.exception
    assert app.main.info[0].value == (
        f"Session {ledger.other_session!r} has no recorded executions for tenant {ledger.tenant}."
    )


def test_the_url_restores_the_view(populated_ledger: PopulatedLedger, dashboard_env: Configure) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="errors", tenant=ledger.other_tenant, window="7d")

    assert app.sidebar.selectbox(key="tenant").value == ledger.other_tenant
    assert app.sidebar.selectbox(key="window").value == "7d"
    assert app.sidebar.radio(key="page").value == "errors"
    assert app.main.header[0].value == "Errors"


def test_a_custom_window_covers_whole_days_from_the_url(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=2)

    app = open_dashboard(
        page="overview", tenant=populated_ledger.ledger.tenant, window="custom", start=start.isoformat()
    )

    assert app.sidebar.date_input(key="start").value == start
    assert app.sidebar.date_input(key="end").value == today
    assert f"{start:%Y-%m-%d} 00:00 to {today + timedelta(days=1):%Y-%m-%d} 00:00 UTC" in app.main.caption[0].value
    assert metrics(app)["Executions"] == str(
        len(
            {
                str(e.stream_id)
                for e in populated_ledger.ledger.events
                if e.tenant_id == populated_ledger.ledger.tenant and e.event_type == "ExecutionStarted"
            }
        )
    )


def test_choices_made_in_the_sidebar_are_written_to_the_url(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    app = open_dashboard(tenant=populated_ledger.ledger.tenant)

    app.sidebar.radio(key="page").set_value("fallbacks")
    app.sidebar.selectbox(key="window").set_value("30d")
    app.run()

    assert app.query_params == {"page": "fallbacks", "window": "30d", "tenant": populated_ledger.ledger.tenant}


def test_the_sessions_page_links_each_execution_to_its_trace_as_the_template_says(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url, trace_url="http://phoenix.internal:6006/redirects/traces/{trace_id}")

    app = open_dashboard(page="sessions", tenant=ledger.tenant, session=ledger.traced_session, window="1d")

    [executions] = [frame.value for frame in app.main.dataframe if "trace" in frame.value.columns]
    expected = {
        f"http://phoenix.internal:6006/redirects/traces/{trace_id}"
        for trace_id in ledger.trace_ids(ledger.traced_session)
    }
    assert len(expected) == 7
    assert set(executions["trace"]) == expected


def test_a_trace_link_template_that_cannot_work_is_an_error_naming_its_variable(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url, trace_url="http://jaeger.internal:16686/trace/")

    app = open_dashboard(page="sessions", tenant=populated_ledger.ledger.tenant, window="1d")

    [error] = [element.value for element in app.error]
    assert error.startswith("LLM_LEDGER_TRACE_URL='http://jaeger.internal:16686/trace/' has no {trace_id}")
    assert not app.main.dataframe, "nothing else is drawn"


def test_the_sessions_page_links_each_execution_to_its_jaeger_trace_by_the_deprecated_variable(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url, jaeger="http://jaeger.internal:16686/")

    app = open_dashboard(page="sessions", tenant=ledger.tenant, session=ledger.traced_session, window="1d")

    [executions] = [frame.value for frame in app.main.dataframe if "trace" in frame.value.columns]
    expected = {
        f"http://jaeger.internal:16686/trace/{trace_id}" for trace_id in ledger.trace_ids(ledger.traced_session)
    }
    assert len(expected) == 7
    assert set(executions["trace"]) == expected


def test_the_sessions_page_says_when_traces_were_not_recorded(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(page="sessions", tenant=populated_ledger.ledger.tenant, session="acme-session-2", window="1d")

    assert any("Traces were not recorded" in caption.value for caption in app.main.caption)


def test_read_models_built_by_an_older_projector_get_a_warning_naming_the_rebuild(
    sqlite_url: str, dashboard_env: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = ["demo", "--sessions", "4", "--history", "0", "--latency-scale", "0", "--database-url", sqlite_url]
    assert main(demo) == 0
    capsys.readouterr()
    as_an_older_projector_left_them(sqlite_url)
    dashboard_env(sqlite_url)

    app = open_dashboard(page="errors", window="1d")
    assert not app.exception and not app.error
    [warning] = app.main.warning
    assert "built by an older projector" in warning.value
    assert "`llm-ledger project --rebuild`" in warning.value

    assert main(["project", "--rebuild", "--database-url", sqlite_url]) == 0
    rebuilt = open_dashboard(page="errors", window="1d")
    assert not rebuilt.exception and not rebuilt.error
    assert not rebuilt.main.warning
