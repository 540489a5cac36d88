"""The dashboard's filters: every figure query kept to some agents, steps, models and providers gives what
SQL over the raw events (``llm_ledger_events``) gives under the same conditions, on PostgreSQL and SQLite.

The ground truth here puts the filters into the SQL over the events (``FilteredEvents``), independently of
the read models and of ``queries._kept``: which model an event counts under is the schema's definition
(``llm_ledger/projections/schema.py``), and a fallback counts under a model filter when it falls back from
or to one of the chosen models.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, text

from llm_ledger.events import Event, EventDraft
from llm_ledger.executor import InMemorySink
from llm_ledger.projections.grains import display_grain
from llm_ledger.projections.queries import EVERYTHING, Filters, LedgerView, Window
from tests.projections import workload
from tests.projections.conftest import everything, part_of_the_workload, projected_database
from tests.projections.ground_truth import _Sql

EXECUTION_MODEL = "CASE WHEN event_type = 'ExecutionSucceeded' THEN {model} ELSE COALESCE({last_model}, '') END"


FALLBACK_CALLS = 200
"""Context extractions of the first tenant added to the workload 37 hours back (inside both windows): the
primary falls back after two rate limits in a row (9%), so some of these fall back to the groq mock whatever
the shared workload's interleaving and spread gave (which may be none in one window)."""


class _Shifted:
    def __init__(self, inner: InMemorySink, by: timedelta) -> None:
        self._inner, self._by = inner, by

    def emit(self, event: EventDraft) -> None:
        event.occurred_at = event.occurred_at - self._by
        self._inner.emit(event)


@pytest.fixture(scope="module")
def filtered_events(recorded_events: list[Event], tenants: tuple[str, ...]) -> list[Event]:
    memory = InMemorySink()
    calls = [
        workload.Call(tenants[0], workload.AGENTS[i % 2], "context_extraction", f"{tenants[0]}-fallbacks", f"fb-{i}")
        for i in range(FALLBACK_CALLS)
    ]
    asyncio.run(workload.run_calls(_Shifted(memory, timedelta(hours=37)), calls))
    return [*recorded_events, *memory.events]


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def projected_url(
    request: pytest.FixtureRequest, filtered_events: list[Event], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database of this module's own holding the workload, projected."""
    return projected_database(request, filtered_events, tmp_path_factory.mktemp("filtered"))


@pytest.fixture
def view(projected_url: str) -> Iterator[LedgerView]:
    ledger = LedgerView(projected_url)
    yield ledger
    ledger.close()


@pytest.fixture
def engine(projected_url: str, engine_of: Callable[[str], Engine]) -> Engine:
    return engine_of(projected_url)


@pytest.fixture
def tenant(tenants: tuple[str, ...]) -> str:
    return tenants[0]


# The chain of context extraction: the primary model (an openai mock) and the one it falls back to (a groq mock).
MINI, LLAMA = workload.CHAINS["context_extraction"]
FILTERS = {
    "one agent": Filters(agents=("support",)),
    "two steps": Filters(steps=("generation", "enforcement")),
    "two models": Filters(models=(MINI, LLAMA)),
    "the model fallen back to": Filters(models=(LLAMA,)),
    "a provider": Filters(providers=("anthropic",)),
    "a provider and a step": Filters(providers=("anthropic",), steps=("rule_filtering",)),
    "the provider fallen back to": Filters(providers=("groq",), steps=("context_extraction",)),
    "a provider nothing is counted under": Filters(providers=("mock",)),
    "every dimension": Filters(agents=("sales",), steps=("context_extraction", "rule_filtering"), models=(MINI,)),
}
"""Every mock of the workload is named after a provider, so nothing is counted under ``mock``."""


class FilteredEvents:
    """Ground truth: the tenant's events in the window that ``filters`` keep, counted by SQL."""

    def __init__(self, engine: Engine, tenant: str, window: Window, filters: Filters) -> None:
        self.engine, self.tenant, self.window, self.filters = engine, tenant, window, filters
        self.sql = _Sql(engine.dialect.name)

    def _kept(self, models: tuple[str, ...] = ("model",)) -> str:
        """The conditions of the window and the filters; ``models`` are the expressions of the event's
        model (several: a fallback has two, either of which may match)."""
        s, filters = self.sql, self.filters
        moment = s.epoch("occurred_at")
        conditions = [
            "tenant_id = :tenant",
            f"{moment} >= {int(self.window.start.timestamp())}",
            f"{moment} < {int(self.window.end.timestamp())}",
        ]
        if filters.agents:
            conditions.append("COALESCE(agent_id, '') IN :agents")
        if filters.steps:
            conditions.append("COALESCE(step, '') IN :steps")
        if filters.models:
            conditions.append("(" + " OR ".join(f"{model} IN :models" for model in models) + ")")
        if filters.providers:
            conditions.append("(" + " OR ".join(f"{s.provider(model)} IN :providers" for model in models) + ")")
        return " AND ".join(conditions)

    def _rows(self, statement: str) -> list[Any]:
        names = ("agents", "steps", "models", "providers")
        query = text(statement).bindparams(
            *(bindparam(name, expanding=True) for name in names if f":{name}" in statement)
        )
        values = {name: list(getattr(self.filters, name)) for name in names}
        with self.engine.connect() as connection:
            return list(connection.execute(query, {"tenant": self.tenant, **values}))

    def executions(self, by: str = "''", grain: int | None = None) -> dict[Any, tuple[int, int, int]]:
        """Executions, failed ones and those that fell back, per value of the expression ``by`` (per
        ``(bucket, value)`` with ``grain``: the start of the ``grain``-second bucket each ended in)."""
        s = self.sql
        model = EXECUTION_MODEL.format(model=s.text("model"), last_model=s.text("last_model"))
        statement = f"""
            SELECT {by.format(model=model)} AS key, {self._bucket(grain)} AS bucket, COUNT(*) AS executions,
                   SUM(CASE WHEN event_type = 'ExecutionFailed' THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN stream_id IN (
                       SELECT stream_id FROM llm_ledger_events WHERE event_type = 'FallbackTriggered'
                   ) THEN 1 ELSE 0 END) AS fell_back
            FROM llm_ledger_events
            WHERE event_type IN ('ExecutionSucceeded', 'ExecutionFailed') AND {self._kept((model,))}
            GROUP BY 1, 2
        """
        return {
            self._keyed(grain, r.bucket, r.key): (int(r.executions), int(r.failed), int(r.fell_back))
            for r in self._rows(statement)
        }

    def _bucket(self, grain: int | None) -> str:
        return self.sql.epoch("occurred_at", grain) if grain else "0"

    @staticmethod
    def _keyed(grain: int | None, bucket: Any, key: Any) -> Any:
        return (int(bucket), key) if grain else key

    def attempts(self) -> tuple[int, int]:
        statement = f"""
            SELECT COUNT(*) AS attempts, SUM(CASE WHEN event_type = 'AttemptFailed' THEN 1 ELSE 0 END) AS failed
            FROM llm_ledger_events
            WHERE event_type IN ('AttemptSucceeded', 'AttemptFailed') AND {self._kept((self.sql.text("model"),))}
        """
        [row] = self._rows(statement)
        return int(row.attempts), int(row.failed or 0)

    def attempt_failures(self, grain: int | None = None) -> dict[Any, int]:
        """Failed attempts per error type and model (per ``(bucket, (error type, model))`` with ``grain``)."""
        s = self.sql
        statement = f"""
            SELECT {s.text("error_type")} AS error_type, {s.text("model")} AS model,
                   {self._bucket(grain)} AS bucket, COUNT(*) AS n
            FROM llm_ledger_events WHERE event_type = 'AttemptFailed' AND {self._kept((s.text("model"),))}
            GROUP BY 1, 2, 3
        """
        return {self._keyed(grain, r.bucket, (r.error_type, r.model)): int(r.n) for r in self._rows(statement)}

    def fallbacks(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Fallback edges (from, to, reason): how many, and how many of their executions then succeeded."""
        s = self.sql
        ends = (s.text("from_model"), s.text("to_model"))
        statement = f"""
            SELECT {ends[0]} AS from_model, {ends[1]} AS to_model, {s.text("reason")} AS reason, COUNT(*) AS n,
                   SUM(CASE WHEN stream_id IN (
                       SELECT stream_id FROM llm_ledger_events WHERE event_type = 'ExecutionSucceeded'
                   ) THEN 1 ELSE 0 END) AS succeeded
            FROM llm_ledger_events WHERE event_type = 'FallbackTriggered' AND {self._kept(ends)}
            GROUP BY 1, 2, 3
        """
        return {(r.from_model, r.to_model, r.reason): (int(r.n), int(r.succeeded)) for r in self._rows(statement)}

    def tool_calls(self) -> dict[tuple[str, str], int]:
        """Tools' executions that ended, per tool and step (filters of agents and steps only)."""
        statement = f"""
            SELECT {self.sql.text("tool_name")} AS tool, COALESCE(step, '') AS step, COUNT(*) AS n
            FROM llm_ledger_events
            WHERE event_type IN ('ToolCallSucceeded', 'ToolCallFailed') AND {self._kept()}
            GROUP BY 1, 2
        """
        return {(r.tool, r.step): int(r.n) for r in self._rows(statement)}


filtered_cases = pytest.mark.parametrize("filters", FILTERS.values(), ids=FILTERS.keys())


# --- what there is to choose -------------------------------------------------------------------------------


def test_the_choices_are_the_agents_steps_models_and_providers_of_the_window(
    view: LedgerView, engine: Engine, tenant: str
) -> None:
    window = part_of_the_workload()
    truth = FilteredEvents(engine, tenant, window, EVERYTHING)
    s = truth.sql
    statement = f"""
        SELECT DISTINCT COALESCE(agent_id, '') AS agent, COALESCE(step, '') AS step, {s.text("model")} AS model,
               {s.provider(s.text("model"))} AS provider
        FROM llm_ledger_events
        WHERE event_type IN ('AttemptSucceeded', 'AttemptFailed') AND {truth._kept()}
    """
    rows = truth._rows(statement)

    choices = view.filter_choices(tenant, window)

    assert choices.agents == tuple(sorted({r.agent for r in rows}))
    assert choices.steps == tuple(sorted({r.step for r in rows}))
    assert choices.models == tuple(sorted({r.model for r in rows}))
    assert choices.providers == tuple(sorted({r.provider for r in rows}))
    assert len(choices.agents) > 1 and len(choices.models) > 1 and len(choices.providers) > 1


# --- figures ----------------------------------------------------------------------------------------------


@filtered_cases
@pytest.mark.parametrize("window_of", [everything, part_of_the_workload], ids=["everything", "part"])
def test_filtered_totals_equal_the_events_the_filters_keep(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters, window_of: Callable[[], Window]
) -> None:
    window = window_of()
    truth = FilteredEvents(engine, tenant, window, filters)
    executions, failed, fell_back = truth.executions().get("", (0, 0, 0))
    unfiltered = view.totals(tenant, window)

    totals = view.totals(tenant, window, filters)

    assert (totals.executions, totals.failed, totals.fallback_executions) == (executions, failed, fell_back)
    assert (totals.attempts, totals.attempt_failures) == truth.attempts()
    if filters.providers != ("mock",):
        assert 0 < totals.executions < unfiltered.executions, "the case keeps some executions, not all"


@filtered_cases
@pytest.mark.parametrize(("by", "expression"), [("step", "COALESCE(step, '')"), ("model", "{model}")])
def test_a_filtered_breakdown_equals_the_events_the_filters_keep(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters, by: Any, expression: str
) -> None:
    window = everything()
    expected = FilteredEvents(engine, tenant, window, filters).executions(expression)

    groups = view.breakdown(tenant, window, (by,), filters)

    # A group whose attempts were kept but none of whose executions ended under it counts no execution.
    shown = {group.key[0]: group.figures for group in groups if group.figures.executions}
    assert {key: (f.executions, f.failed, f.fallback_executions) for key, f in shown.items()} == expected


@filtered_cases
def test_a_filtered_series_adds_up_to_the_filtered_totals(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters
) -> None:
    window = everything()
    expected = FilteredEvents(engine, tenant, window, filters).executions().get("", (0, 0, 0))

    points = view.series(tenant, window, filters=filters)

    assert sum(point.figures.executions for point in points) == expected[0]
    assert sum(point.figures.failed for point in points) == expected[1]


@filtered_cases
def test_series_split_several_ways_from_one_read_each_equal_the_events_the_filters_keep(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters
) -> None:
    window = everything()
    grain = display_grain(window.start, window.end)
    events = FilteredEvents(engine, tenant, window, filters)
    splits: list[tuple[Any, str]] = [(None, "''"), ("step", "COALESCE(step, '')"), ("model", "{model}")]

    every_series = view.series_by(tenant, window, [by for by, _ in splits], filters)

    assert len(every_series) == len(splits)
    for (by, expression), points in zip(splits, every_series, strict=True):
        # A bucket whose attempts were kept but none of whose executions ended under it counts no execution.
        shown = {
            (int(point.bucket_start.timestamp()), point.group): (point.figures.executions, point.figures.failed)
            for point in points
            if point.figures.executions
        }
        expected = {key: (n, failed) for key, (n, failed, _) in events.executions(expression, grain).items()}
        assert shown == expected, by
        if filters.providers != ("mock",):
            assert len({bucket for bucket, _ in expected}) > 1, "the case's executions span several buckets"


@filtered_cases
def test_error_series_split_several_ways_from_one_query_each_equal_the_failures_the_filters_keep(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters
) -> None:
    window = everything()
    failures = FilteredEvents(engine, tenant, window, filters).attempt_failures(display_grain(window.start, window.end))
    expected_types: collections.Counter[tuple[int, str]] = collections.Counter()
    expected_models: collections.Counter[tuple[int, str]] = collections.Counter()
    for (bucket, (error_type, model)), n in failures.items():
        expected_types[bucket, error_type] += n
        expected_models[bucket, model] += n

    by_type, by_model = view.error_series_by(tenant, window, ["error_type", "model"], filters=filters)

    assert {(int(p.bucket_start.timestamp()), p.group): p.count for p in by_type} == expected_types
    assert {(int(p.bucket_start.timestamp()), p.group): p.count for p in by_model} == expected_models


@filtered_cases
def test_filtered_error_counts_and_failed_attempts_equal_the_failures_the_filters_keep(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters
) -> None:
    window = everything()
    expected = FilteredEvents(engine, tenant, window, filters).attempt_failures()

    counts = view.error_counts(tenant, window, filters=filters)
    listed = view.failed_attempts(tenant, window, limit=10_000, filters=filters)
    series = view.error_series(tenant, window, filters=filters)

    assert {(c.error_type, c.model): c.count for c in counts} == expected
    assert collections.Counter((f.error_type, f.model) for f in listed) == expected
    assert sum(point.count for point in series) == sum(expected.values())


@filtered_cases
def test_filtered_fallback_edges_are_those_from_or_to_a_chosen_model(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters
) -> None:
    window = everything()
    expected = FilteredEvents(engine, tenant, window, filters).fallbacks()

    edges = view.fallback_edges(tenant, window, filters)

    assert {(e.from_model, e.to_model, e.reason): (e.fallbacks, e.succeeded_after) for e in edges} == expected
    if filters.models == (LLAMA,):
        # The edge's far end counts: llama is only ever fallen back to, from the mini model.
        assert edges and {(e.from_model, e.to_model) for e in edges} == {(MINI, LLAMA)}
    if filters.providers == ("groq",):
        # A chain across two providers: its far end (a groq mock) keeps it, though it falls back from openai's.
        assert (MINI, LLAMA) in {(e.from_model, e.to_model) for e in edges}


@pytest.mark.parametrize(
    "filters", [Filters(agents=("sales",)), Filters(steps=("generation",))], ids=["an agent", "a step"]
)
def test_filtered_tool_calls_equal_the_tool_executions_the_filters_keep(
    view: LedgerView, engine: Engine, tenant: str, filters: Filters
) -> None:
    window = everything()
    expected = FilteredEvents(engine, tenant, window, filters).tool_calls()

    groups = view.tool_calls(tenant, window, by=("tool_name", "step"), filters=filters)
    series = view.tool_call_series(tenant, window, filters=filters)

    assert expected, "the case keeps some tool calls"
    assert {(g.key[0], g.key[1]): g.calls for g in groups} == expected
    assert sum(point.calls for point in series) == sum(expected.values())


def test_tool_calls_refuse_a_model_filter_they_cannot_apply(view: LedgerView, tenant: str) -> None:
    with pytest.raises(ValueError, match="not per model: a model or provider filter cannot apply"):
        view.tool_calls(tenant, everything(), filters=Filters(models=(MINI,)))
