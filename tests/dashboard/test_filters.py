"""The sidebar's filters under Streamlit's AppTest: every page draws with them and says which it cannot
apply; the figures are those of the raw events the filters keep; the URL keeps them; a value or a tenant
the ledger does not hold is named, never silently swapped for something else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from llm_ledger.dashboard import PAGES as PAGE_TITLES
from llm_ledger.events import Event
from llm_ledger.projections.queries import Window
from llm_ledger.store import EventStore, migrate
from tests.dashboard.apptest import PAGES, deltas, metrics, open_dashboard, rendered_text
from tests.dashboard.conftest import PopulatedLedger, recorded_ledger
from tests.dashboard.ledger import (
    BACKUP,
    BROKEN,
    EXECUTION_ENDS,
    FAST,
    LIMITED,
    answered_by,
    resealed,
    tool_conversation,
)
from tests.projections.projecting import project_url

Configure = Callable[..., None]
UNFILTERED_PAGES = {"sessions", "execution", "audit"}
"""Pages that apply no filter: they say so."""


def last_day() -> Window:
    return Window.last(timedelta(days=1), datetime.now(UTC))


def ended(ledger: PopulatedLedger, keep: Callable[[Event], bool], window: Window | None = None) -> list[Event]:
    """The tenant's executions that ended in the window (the last day) and that ``keep`` keeps, as their
    terminal events."""
    window, known = window or last_day(), ledger.ledger
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
    # The fixture as designed: the answer step's executions are the broken, the fallen back and the tool one;
    # the others include the three streamed ones of the summarize step.
    assert (len(kept), failed, len(everything)) == (7, 3, 23)
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


def fallbacks_from(ledger: PopulatedLedger, model: str) -> list[Event]:
    known = ledger.ledger
    return [
        e
        for e in known.events
        if e.tenant_id == known.tenant and e.event_type == "FallbackTriggered" and e.payload.from_model == model
    ]


def test_the_fallbacks_page_shows_the_chains_of_a_model_that_only_ever_fell_back(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    # The fixture as designed: the rate-limited model answers nothing; each of its executions falls back.
    assert not ended(populated_ledger, lambda e: answered_by(e) == LIMITED)
    fell_back = fallbacks_from(populated_ledger, LIMITED)

    app = open_dashboard(page="fallbacks", tenant=populated_ledger.ledger.tenant, window="1d", model=LIMITED)

    assert not app.exception and not app.main.warning
    shown = metrics(app)
    assert (shown["Fallback rate"], shown["Fallbacks"]) == ("—", str(len(fell_back)))
    assert len(fell_back) == 3
    assert any("No chosen model answered" in caption.value for caption in app.main.caption)
    [table] = [frame.value for frame in app.main.dataframe]
    assert set(table["from"]) == {LIMITED}


@pytest.mark.parametrize("page", ["overview", "latency", "fallbacks"])
def test_a_page_left_empty_by_a_model_filter_explains_how_the_filter_counts(
    page: str, populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    # The broken model answers nothing and falls back to nothing; the rate-limited one only falls back.
    model = LIMITED if page != "fallbacks" else BROKEN

    app = open_dashboard(page=page, tenant=populated_ledger.ledger.tenant, window="1d", model=model, step="classify")

    [note] = [info.value for info in app.main.info]
    assert note.startswith("No executions for tenant acme matching the filters in this window: a model or provider")
    assert "a model that was only ever fallen back from counts none" in note
    assert "longer window" not in note


def test_the_tools_page_with_only_a_model_filter_says_it_found_nothing_in_the_window(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    tenant = populated_ledger.ledger.tenant

    app = open_dashboard(page="tools", tenant=tenant, window="custom", start="2020-01-01", end="2020-01-02", model=FAST)

    assert not app.main.warning, "the page applies no model filter: it does not match the model against the window"
    assert [info.value for info in app.main.info] == [
        "The filters (model mock/fast?p50\\_ms=40&p99\\_ms=120&seed=1) are not applied on this page: tool calls are "
        "recorded per agent and step, not per model.",
        "No tool calls for tenant acme in this window. Pick a longer window in the sidebar.",
    ]


@pytest.mark.parametrize("page", sorted(UNFILTERED_PAGES))
def test_a_page_that_applies_no_filter_does_not_warn_of_its_unmatched_values(
    page: str, populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)

    app = open_dashboard(page=page, tenant=populated_ledger.ledger.tenant, window="1d", model="mock/nobody-has-it")

    assert not app.main.warning, [warning.value for warning in app.main.warning]
    assert [info.value for info in app.main.info][:1] == [
        f"The filters (model mock/nobody-has-it) are not applied on this page: {_reason(page)}."
    ]


def test_the_overview_compares_the_filtered_figures_with_the_previous_window_filtered_alike(
    populated_ledger: PopulatedLedger, dashboard_env: Configure
) -> None:
    dashboard_env(populated_ledger.url)
    window = Window.last(timedelta(hours=1), datetime.now(UTC))

    app = open_dashboard(page="overview", tenant=populated_ledger.ledger.tenant, window="1h", step="answer")

    def answer(e: Event) -> bool:
        return e.step == "answer"

    now, before = ended(populated_ledger, answer, window), ended(populated_ledger, answer, window.previous())
    everything_before = ended(populated_ledger, lambda e: True, window.previous())
    assert 0 < len(before) < len(everything_before), "the previous window holds executions the filter leaves out"
    error_rates = [sum(e.event_type == "ExecutionFailed" for e in ends) / len(ends) for ends in (now, before)]
    assert deltas(app)["Executions"] == f"{len(now) - len(before):+d}"
    assert deltas(app)["Error rate"] == f"{(error_rates[0] - error_rates[1]) * 100:+.1f} pp"


def test_the_tools_page_offers_and_matches_the_agents_and_steps_only_tools_ran_in(
    sqlite_url: str, dashboard_env: Configure
) -> None:
    conversation = tool_conversation(tenant="acme", session="tools-only", step="answer")
    tools = [e for e in conversation if e.event_type.startswith("ToolCall")]
    migrate.upgrade(sqlite_url)
    store = EventStore(sqlite_url)
    store.append(resealed(tools, agent="lookup-agent", step="lookup"))
    store.append([e for e in conversation if not e.event_type.startswith("ToolCall")])
    store.close()
    project_url(sqlite_url)
    dashboard_env(sqlite_url)

    app = open_dashboard(page="tools", tenant="acme", window="1d", agent="lookup-agent", step="lookup")

    assert not app.main.warning, [warning.value for warning in app.main.warning]
    assert metrics(app)["Tool calls"] == str(len([e for e in tools if e.event_type != "ToolCallStarted"]))
    assert "lookup" in app.sidebar.multiselect(key="filter_step").options
    assert "lookup-agent" in app.sidebar.multiselect(key="filter_agent").options


def test_the_filters_outlast_a_run_whose_database_did_not_answer(sqlite_url: str, dashboard_env: Configure) -> None:
    ledger = recorded_ledger(sqlite_url)
    dashboard_env(sqlite_url)
    app = open_dashboard(page="overview", tenant=ledger.tenant, window="1d")
    app.sidebar.multiselect(key="filter_model").set_value([FAST]).run()
    engine = create_engine(sqlite_url)

    # The filters' choices are read after the other selectors are drawn: a table gone for one run stands
    # for a database that stopped answering between the two.
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE llm_ledger_tool_stats RENAME TO llm_ledger_tool_stats_away"))
    app.run()
    assert "The ledger database cannot be reached" in app.error[0].value
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE llm_ledger_tool_stats_away RENAME TO llm_ledger_tool_stats"))
    engine.dispose()
    app.run()

    assert app.sidebar.multiselect(key="filter_model").value == [FAST]
    assert app.query_params["model"] == FAST
    assert "Filtered to model mock/fast" in "\n".join(caption.value for caption in app.main.caption)
