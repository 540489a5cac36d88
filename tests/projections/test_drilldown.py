"""The sessions the dashboard's links drill down to, on both dialects, held to the raw events of a
workload: the sessions with failed executions, and for each fallback edge the latest session that took it
(from that model to that model, for that reason)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Connection, Engine, Row

from llm_ledger.dashboard.view import DashboardView
from llm_ledger.events import Event, ExecutionFailed, FallbackTriggered
from llm_ledger.projections import drilldown
from llm_ledger.projections.queries import EVERYTHING, FallbackEdge, Filters, Window
from llm_ledger.store import EventStore
from tests.dashboard.ledger import BACKUP, BROKEN, FAST, LIMITED, moved_back, run
from tests.projections.projecting import project_url

_EVERYTHING = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
_MINUTE = timedelta(minutes=1)


def _tenant(events: list[Event]) -> str:
    return next(e.tenant_id for e in events if isinstance(e, FallbackTriggered))


def test_the_failed_sessions_are_those_with_a_failed_execution(workload_url: str, recorded_events: list[Event]) -> None:
    project_url(workload_url)
    tenant = _tenant(recorded_events)
    failed = {e.session_id for e in recorded_events if e.tenant_id == tenant and isinstance(e, ExecutionFailed)}
    view = DashboardView(workload_url)

    listed = view.sessions(tenant, window=_EVERYTHING, limit=10_000, failed_only=True)

    view.close()
    assert failed, "the workload has failed executions"
    assert {summary.session_id for summary in listed} == failed
    assert all(summary.failed for summary in listed)
    assert [summary.last_seen for summary in listed] == sorted((s.last_seen for s in listed), reverse=True)


def test_each_fallback_edge_names_the_latest_session_that_took_it(
    workload_url: str, recorded_events: list[Event]
) -> None:
    project_url(workload_url)
    tenant = _tenant(recorded_events)
    latest: dict[tuple[str, str, str], tuple[datetime, str | None]] = {}
    for e in recorded_events:
        if isinstance(e, FallbackTriggered) and e.tenant_id == tenant:
            edge = (e.payload.from_model, e.payload.to_model, e.payload.reason)
            latest[edge] = max(latest.get(edge, (e.occurred_at, e.session_id)), (e.occurred_at, e.session_id))
    view = DashboardView(workload_url)
    edges = view.fallback_edges(tenant, _EVERYTHING)

    examples = view.fallback_sessions(tenant, _EVERYTHING, edges)

    view.close()
    assert len(edges) > 1
    assert {(edge.from_model, edge.to_model, edge.reason): session for edge, session in examples.items()} == {
        edge: session for edge, (_, session) in latest.items()
    }


def _recorded(url: str, *streams: list[Event]) -> DashboardView:
    store = EventStore(url)
    store.append([event for stream in streams for event in stream])
    store.close()
    project_url(url)
    return DashboardView(url)


def _examples(view: DashboardView, tenant: str, filters: Filters = EVERYTHING) -> dict[tuple[str, str], str]:
    edges = view.fallback_edges(tenant, _EVERYTHING, filters)
    examples = view.fallback_sessions(tenant, _EVERYTHING, edges, filters)
    return {(edge.from_model, edge.to_model): session for edge, session in examples.items()}


def test_a_session_search_finds_its_text_as_written_not_as_a_pattern(ledger_url: str) -> None:
    # % and _ are LIKE's wildcards and \ the escape given to it: in a search each stands for itself alone.
    named = ["order_1%", "orderX1%", "order_1X", "order\\_1%"]
    streams = [run(1, tenant="acme", session=name, chain=[BROKEN], step="answer") for name in named]
    view = _recorded(ledger_url, *streams)
    try:
        found = {
            search: (
                sorted(s.session_id for s in view.sessions("acme", search=search)),
                sorted(
                    s.session_id for s in view.sessions("acme", window=_EVERYTHING, search=search, failed_only=True)
                ),
            )
            for search in ("r_1%", "\\_")
        }
    finally:
        view.close()

    assert found == {"r_1%": (["order_1%"], ["order_1%"]), "\\_": (["order\\_1%"], ["order\\_1%"])}


def test_a_chain_has_its_example_however_many_later_fallbacks_share_its_model_and_reason(ledger_url: str) -> None:
    # Every fallback is from the rate-limited model for the same reason; the 25 latest go on to another model.
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
        moved_back(run(25, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )

    examples = _examples(view, "acme")

    view.close()
    assert examples == {(LIMITED, BACKUP): "took-backup", (LIMITED, FAST): "took-fast"}


def test_a_chains_example_is_of_the_fallbacks_the_filters_keep(ledger_url: str) -> None:
    view = _recorded(
        ledger_url,
        moved_back(
            run(1, tenant="acme", session="classifying", chain=[LIMITED, BACKUP], step="classify"), 30 * _MINUTE
        ),
        moved_back(run(1, tenant="acme", session="answering", chain=[LIMITED, BACKUP], step="answer"), 20 * _MINUTE),
        moved_back(run(1, tenant="acme", session="answering-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )

    unfiltered = _examples(view, "acme")
    classifying = _examples(view, "acme", Filters(steps=("classify",)))
    to_backup = _examples(view, "acme", Filters(models=(BACKUP,)))

    view.close()
    assert unfiltered == {(LIMITED, BACKUP): "answering", (LIMITED, FAST): "answering-fast"}
    assert classifying == {(LIMITED, BACKUP): "classifying"}
    assert to_backup == {(LIMITED, BACKUP): "answering"}


def test_the_examples_are_looked_for_among_the_windows_latest_fallbacks(
    ledger_url: str, engine_of: Callable[[str], Engine]
) -> None:
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
        moved_back(run(3, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    with engine_of(ledger_url).connect() as connection:
        examples = drilldown.fallback_sessions(connection, "acme", _EVERYTHING, edges, cap=3)

    assert len(edges) == 2
    assert {(edge.from_model, edge.to_model): session for edge, session in examples.items()} == {
        (LIMITED, FAST): "took-fast"
    }


def test_a_chain_whose_latest_fallback_is_older_than_the_first_looked_at_is_found_by_looking_further(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The latest 2 fallbacks are looked at first: both to the fast model; the backup's is the 6th latest.
    monkeypatch.setattr(drilldown, "FIRST_SCANNED", 2)
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
        moved_back(run(5, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )

    examples = _examples(view, "acme")

    view.close()
    assert examples == {(LIMITED, BACKUP): "took-backup", (LIMITED, FAST): "took-fast"}


class _Recording:
    """A connection that keeps the rows of each statement run on it: what the rounds read, as read."""

    def __init__(self, connection: Connection) -> None:
        self.dialect = connection.dialect
        self.statements: list[list[Row[Any]]] = []
        self._connection = connection

    def execute(self, statement: Any) -> list[Row[Any]]:
        self.statements.append(list(self._connection.execute(statement)))
        return self.statements[-1]


def _rounds(
    url: str,
    engine_of: Callable[[str], Engine],
    edges: Sequence[FallbackEdge],
    filters: Filters = EVERYTHING,
    cap: int = drilldown.FAILURES_SCANNED,
) -> tuple[dict[tuple[str, str], str], list[list[Row[Any]]]]:
    with engine_of(url).connect() as connection:
        recording = _Recording(connection)
        examples = drilldown.fallback_sessions(cast(Connection, recording), "acme", _EVERYTHING, edges, filters, cap)
    return {(edge.from_model, edge.to_model): session for edge, session in examples.items()}, recording.statements


def _failures_read(statements: list[list[Row[Any]]]) -> list[str]:
    return [row.failure_id for rows in statements for row in rows]


def test_a_chain_only_executions_without_a_session_took_has_no_example_and_its_search_stops_at_the_last_failure(
    ledger_url: str, engine_of: Callable[[str], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rounds of 2 then 8: the 7 failures of sessions are read once each, in two statements, and the search
    # stops there (the 8 asked for were not all there), not at the cap, though a chain is still missing.
    monkeypatch.setattr(drilldown, "FIRST_SCANNED", 2)
    view = _recorded(
        ledger_url,
        moved_back(run(3, tenant="acme", session=None, chain=[LIMITED, BACKUP], step="answer"), 5 * _MINUTE),
        moved_back(run(7, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 30 * _MINUTE),
    )
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    examples, statements = _rounds(ledger_url, engine_of, edges)

    assert {(edge.from_model, edge.to_model) for edge in edges} == {(LIMITED, BACKUP), (LIMITED, FAST)}
    assert examples == {(LIMITED, FAST): "took-fast"}
    assert [len(rows) for rows in statements] == [2, 5]
    assert len(set(_failures_read(statements))) == 7


def test_the_search_stops_at_the_last_failure_when_no_failure_leads_to_a_kept_fallback(
    ledger_url: str, engine_of: Callable[[str], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A filter no fallback meets drops every joined row: the failures are still counted as read.
    monkeypatch.setattr(drilldown, "FIRST_SCANNED", 2)
    view = _recorded(ledger_url, run(5, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"))
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    examples, statements = _rounds(ledger_url, engine_of, edges, Filters(models=("mock/no-such-model",)))

    assert examples == {}
    assert [len(rows) for rows in statements] == [2, 3]
    assert all(row.session_id is None for rows in statements for row in rows)


def test_each_round_reads_the_failures_older_than_the_last_and_all_of_them_at_most_the_cap(
    ledger_url: str, engine_of: Callable[[str], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backup chain's only fallback is the 12th latest: rounds of 2, 8 and the 3 left of a cap of 13.
    monkeypatch.setattr(drilldown, "FIRST_SCANNED", 2)
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
        moved_back(run(11, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    examples, statements = _rounds(ledger_url, engine_of, edges, cap=13)
    capped, capped_statements = _rounds(ledger_url, engine_of, edges, cap=11)

    assert examples == {(LIMITED, BACKUP): "took-backup", (LIMITED, FAST): "took-fast"}
    # The third round stops at the cap's 13th failure and the backup's, the 12th, ends the search.
    assert [len(rows) for rows in statements] == [2, 8, 2]
    read = _failures_read(statements)
    assert len(set(read)) == len(read) == 12
    failed_at = [row.failed_at for rows in statements for row in rows]
    assert failed_at == sorted(failed_at, reverse=True)
    assert capped == {(LIMITED, FAST): "took-fast"}
    assert [len(rows) for rows in capped_statements] == [2, 8, 1]


def test_a_streamed_fallback_has_its_example(ledger_url: str) -> None:
    view = _recorded(
        ledger_url,
        moved_back(
            run(2, tenant="acme", session="streamed", chain=[LIMITED, FAST], step="answer", stream=True), 10 * _MINUTE
        ),
        moved_back(run(2, tenant="acme", session="generated", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
    )

    examples = _examples(view, "acme")

    view.close()
    assert examples == {(LIMITED, FAST): "streamed", (LIMITED, BACKUP): "generated"}


def test_the_cap_counts_only_the_failures_of_the_models_the_chosen_chains_fall_back_from(
    ledger_url: str, engine_of: Callable[[str], Engine]
) -> None:
    # The broken model's one fallback is older than the 5 latest, all from the rate-limited model: with a cap
    # of 3 it has no example among every chain, and keeps it when a filter chooses it alone.
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="took-backup", chain=[BROKEN, BACKUP], step="answer"), 30 * _MINUTE),
        moved_back(run(5, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )
    chosen = Filters(models=(BROKEN,))
    edges, chosen_edges = view.fallback_edges("acme", _EVERYTHING), view.fallback_edges("acme", _EVERYTHING, chosen)
    view.close()

    every, _ = _rounds(ledger_url, engine_of, edges, cap=3)
    rarely_used, statements = _rounds(ledger_url, engine_of, chosen_edges, chosen, cap=3)

    assert every == {(LIMITED, FAST): "took-fast"}
    assert rarely_used == {(BROKEN, BACKUP): "took-backup"}
    assert [len(rows) for rows in statements] == [1]
