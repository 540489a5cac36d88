"""The sidebar's filters under Streamlit's AppTest: every page draws with them and says which it cannot
apply; the figures are those of the raw events the filters keep; the URL keeps them; a value or a tenant
the ledger does not hold is named, never silently swapped for something else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from llm_ledger.dashboard import PAGES as PAGE_TITLES
from llm_ledger.events import Event
from llm_ledger.projections.queries import Window
from tests.dashboard.apptest import PAGES, metrics, open_dashboard, rendered_text
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.ledger import BACKUP, BROKEN, EXECUTION_ENDS, FAST

Configure = Callable[..., None]
UNFILTERED_PAGES = {"sessions", "execution", "audit"}
"""Pages that apply no filter: they say so."""


def last_day() -> Window:
    return Window.last(timedelta(days=1), datetime.now(UTC))


def answered_by(event: Event) -> str:
    """The model an execution's figures count under: the one that answered, or the last one tried."""
    payload = event.payload
    return str(payload.model if event.event_type == "ExecutionSucceeded" else payload.last_model)  # type: ignore[union-attr]


def ended(ledger: PopulatedLedger, keep: Callable[[Event], bool]) -> list[Event]:
    """The tenant's executions that ended in the last day and that ``keep`` keeps, as their terminal events."""
    window, known = last_day(), ledger.ledger
    return [
        e
        for e in known.events
        if e.tenant_id == known.tenant
        and e.event_type in EXECUTION_ENDS
        and window.start <= e.occurred_at < window.end
        and keep(e)
    ]


@pytest.mark.parametrize("page", PAGES)
def test_each_page_draws_with_a_filter_and_says_what_it_applies(
    page: str, populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(page=page, tenant=populated_ledger.ledger.tenant, window="1d", step="answer")

    assert not app.exception
    assert not app.error
    assert not app.main.warning, [warning.value for warning in app.main.warning]
    assert app.main.header[0].value == PAGE_TITLES[page]
    assert app.sidebar.multiselect(key="filter_step").value == ["answer"]
    notes = [info.value for info in app.main.info]
    if page in UNFILTERED_PAGES:
        assert notes == [f"The filters (step answer) are not applied on this page: {_reason(page)}."]
    else:
        assert not notes
        assert "Filtered to step answer" in [caption.value for caption in app.main.caption]


def _reason(page: str) -> str:
    return {
        "sessions": "a session is shown whole, every execution of it",
        "execution": "an execution is shown whole, every event of it",
        "audit": "the audit checks every event of the tenant",
    }[page]


def test_the_overview_counts_the_executions_of_the_chosen_step(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="overview", tenant=ledger.tenant, window="1d", step="answer")

    kept = ended(populated_ledger, lambda e: e.step == "answer")
    failed = sum(e.event_type == "ExecutionFailed" for e in kept)
    everything = ended(populated_ledger, lambda e: True)
    # The fixture as designed: the answer step's executions are the broken, the fallen back and the tool one.
    assert (len(kept), failed, len(everything)) == (7, 3, 20)
    shown = metrics(app)
    assert shown["Executions"] == str(len(kept))
    assert shown["Error rate"] == f"{100 * failed / len(kept):.1f}%"


def test_the_errors_page_counts_the_failures_of_the_chosen_model(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="errors", tenant=ledger.tenant, window="1d", model=BROKEN)

    failed = ended(populated_ledger, lambda e: answered_by(e) == BROKEN)
    attempts = [e for e in ledger.events if e.tenant_id == ledger.tenant and e.event_type == "AttemptFailed"]
    broken_attempts = [e for e in attempts if e.payload.model == BROKEN]
    assert len(broken_attempts) < len(attempts), "other models failed too: the filter leaves them out"
    shown = metrics(app)
    assert shown["Failed executions"] == str(len(failed)) == "3"
    assert shown["Failed attempts"] == str(len(broken_attempts))
    assert shown["Attempt failure rate"] == "100.0%"


def test_the_fallbacks_page_counts_a_chain_fallen_back_to_the_chosen_model(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="fallbacks", tenant=ledger.tenant, window="1d", model=BACKUP)

    into_backup = [
        e
        for e in ledger.events
        if e.tenant_id == ledger.tenant
        and e.event_type == "FallbackTriggered"
        and BACKUP in (e.payload.from_model, e.payload.to_model)
    ]
    assert metrics(app)["Fallbacks"] == str(len(into_backup))
    assert len(into_backup) >= 3
    assert any("a chain counts when it falls back from or to a chosen model" in c.value for c in app.main.caption)


def test_the_latency_table_holds_only_the_chosen_models(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(page="latency", tenant=populated_ledger.ledger.tenant, window="1d", model=[FAST, BACKUP])

    [table] = [frame.value for frame in app.main.dataframe]
    assert set(table["model"]) == {FAST, BACKUP}


def test_the_tools_page_applies_the_agent_and_says_it_cannot_apply_the_model(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="tools", tenant=ledger.tenant, window="1d", agent="support-agent", model=FAST)

    assert metrics(app)["Tool calls"] == "2"
    assert [info.value for info in app.main.info] == [
        "The model filters are not applied on this page: tool calls are recorded per agent and step, not per model."
    ]
    other = open_dashboard(page="tools", tenant=ledger.tenant, window="1d", agent="another-agent")
    assert "No tool calls for tenant acme matching the filters in this window" in other.main.info[0].value


def test_filters_chosen_in_the_sidebar_are_written_to_the_url(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger
    app = open_dashboard(tenant=ledger.tenant, window="1d")

    assert set(app.sidebar.multiselect(key="filter_model").options) >= {FAST, BACKUP, BROKEN}
    app.sidebar.multiselect(key="filter_model").set_value([FAST, BACKUP])
    app.sidebar.multiselect(key="filter_step").set_value(["classify"])
    app.run()

    assert app.query_params == {
        "page": "overview",
        "window": "1d",
        "tenant": ledger.tenant,
        "step": "classify",
        "model": [FAST, BACKUP],
    }
    kept = ended(populated_ledger, lambda e: e.step == "classify" and answered_by(e) in (FAST, BACKUP))
    assert metrics(app)["Executions"] == str(len(kept))


def test_a_filter_value_with_nothing_in_the_window_is_named_and_kept(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="overview", tenant=ledger.tenant, window="1d", model=[FAST, "mock/nobody-has-it"])

    [warning] = app.main.warning
    assert warning.value == (
        "The model filter holds mock/nobody-has-it, but tenant acme has no executions of that model in this "
        "window\\: nothing is counted for it."
    )
    assert app.sidebar.multiselect(key="filter_model").value == [FAST, "mock/nobody-has-it"]
    assert metrics(app)["Executions"] == str(len(ended(populated_ledger, lambda e: answered_by(e) == FAST)))


def test_a_link_to_a_tenant_without_executions_shows_no_other_tenants_figures(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    ledger = populated_ledger.ledger

    app = open_dashboard(page="overview", tenant="nope", window="1d")

    assert not app.exception
    assert [warning.value for warning in app.main.warning] == [
        "This link's tenant=nope has no executions in this ledger \\(or you may not see it\\); choose a tenant in "
        "the sidebar."
    ]
    assert [info.value for info in app.main.info] == ["Choose a tenant in the sidebar."]
    assert not app.main.metric and not app.main.dataframe
    assert app.sidebar.selectbox(key="tenant").value is None
    assert app.query_params["tenant"] == "nope", "the link is left as it was until a tenant is chosen"

    app.sidebar.selectbox(key="tenant").set_value(ledger.tenant).run()

    assert metrics(app)["Executions"] == str(len(ended(populated_ledger, lambda e: True)))
    assert app.query_params["tenant"] == ledger.tenant


def test_a_bound_viewer_filtering_by_another_tenants_model_learns_nothing_of_it(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    ledger = populated_ledger.ledger
    dashboard_env(populated_ledger.url, tenant=ledger.tenant)
    private, unknown = "mock/globex-private-model?p50_ms=5", "mock/nobody-has-it"

    known = open_dashboard(page="overview", window="1d", model=private)
    nobody = open_dashboard(page="overview", window="1d", model=unknown)

    def said(app: object) -> list[str]:
        return [warning.value for warning in app.main.warning]  # type: ignore[attr-defined]

    assert [w.replace("globex-private-model?p50\\_ms=5", "X") for w in said(known)] == [
        w.replace("nobody-has-it", "X") for w in said(nobody)
    ]
    assert metrics(known)["Executions"] == metrics(nobody)["Executions"] == "0"
    options = known.sidebar.multiselect(key="filter_model").options
    assert [option for option in options if "globex" in option] == [private], "only what the link itself named"
    assert "globex-private-step" not in rendered_text(known)
