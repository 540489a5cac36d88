"""The sessions the dashboard's links drill down to, on both dialects, held to the raw events of a
workload: the sessions with failed executions, and for each fallback edge the latest session that took it
(from that model to that model, for that reason)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

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


def test_a_chain_whose_latest_fallback_is_older_than_many_later_ones_still_has_its_example(ledger_url: str) -> None:
    # The backup's only fallback is older than 40 to the fast model, all from the same model for the same reason.
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"), 90 * _MINUTE),
        moved_back(run(40, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
    )

    examples = _examples(view, "acme")

    view.close()
    assert examples == {(LIMITED, BACKUP): "took-backup", (LIMITED, FAST): "took-fast"}


def test_a_chains_example_is_of_the_window(ledger_url: str) -> None:
    # The backup chain was taken 3 hours ago in one session and 30 minutes ago in another: a window of the
    # last hour names the later, one that ends two hours ago the earlier, and one between them none.
    view = _recorded(
        ledger_url,
        moved_back(run(1, tenant="acme", session="earlier", chain=[LIMITED, BACKUP], step="answer"), 180 * _MINUTE),
        moved_back(run(1, tenant="acme", session="later", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
    )
    now = datetime.now(UTC)
    edges = view.fallback_edges("acme", _EVERYTHING)

    def example(window: Window) -> dict[tuple[str, str], str]:
        found = view.fallback_sessions("acme", window, edges)
        return {(edge.from_model, edge.to_model): session for edge, session in found.items()}

    last_hour, until_two_hours_ago = Window(now - 60 * _MINUTE, now), Window(now - 240 * _MINUTE, now - 120 * _MINUTE)
    between = Window(now - 150 * _MINUTE, now - 90 * _MINUTE)
    found = example(last_hour), example(until_two_hours_ago), example(between)

    view.close()
    assert found == ({(LIMITED, BACKUP): "later"}, {(LIMITED, BACKUP): "earlier"}, {})


class _Recording:
    """A connection that keeps the rows of each statement run on it."""

    def __init__(self, connection: Connection) -> None:
        self.dialect = connection.dialect
        self.statements: list[list[Row[Any]]] = []
        self._connection = connection

    def execute(self, statement: Any) -> list[Row[Any]]:
        self.statements.append(list(self._connection.execute(statement)))
        return self.statements[-1]


def _looked_up(
    url: str, engine_of: Callable[[str], Engine], edges: Sequence[FallbackEdge], filters: Filters = EVERYTHING
) -> tuple[dict[tuple[str, str], str], list[list[Row[Any]]]]:
    with engine_of(url).connect() as connection:
        recording = _Recording(connection)
        examples = drilldown.fallback_sessions(cast(Connection, recording), "acme", _EVERYTHING, edges, filters)
    return {(edge.from_model, edge.to_model): session for edge, session in examples.items()}, recording.statements


def test_every_chains_example_is_read_in_one_statement_of_a_row_a_chain_at_most(
    ledger_url: str, engine_of: Callable[[str], Engine]
) -> None:
    view = _recorded(
        ledger_url,
        moved_back(run(3, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"), 30 * _MINUTE),
        moved_back(run(9, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 10 * _MINUTE),
        moved_back(run(4, tenant="acme", session="broken", chain=[BROKEN, BACKUP], step="answer"), 20 * _MINUTE),
    )
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    examples, statements = _looked_up(ledger_url, engine_of, edges)

    assert len(edges) == 3
    assert examples == {(LIMITED, BACKUP): "took-backup", (LIMITED, FAST): "took-fast", (BROKEN, BACKUP): "broken"}
    assert [len(rows) for rows in statements] == [3]


def test_more_chains_than_a_statement_holds_are_looked_up_in_several(
    ledger_url: str, engine_of: Callable[[str], Engine]
) -> None:
    # SQLite refuses a compound SELECT of over 500 terms: 501 chains (one taken, the others never) still
    # find the example of the one, in statements of EDGES_PER_STATEMENT lookups.
    view = _recorded(ledger_url, run(2, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"))
    taken = view.fallback_edges("acme", _EVERYTHING)
    view.close()
    never = [FallbackEdge(f"mock/model-{i}", FAST, "rate_limit", 1, 0) for i in range(501 - len(taken))]

    examples, statements = _looked_up(ledger_url, engine_of, [*never, *taken])

    assert examples == {(LIMITED, FAST): "took-fast"}
    assert len(statements) == -(-501 // drilldown.EDGES_PER_STATEMENT) > 2


def test_no_chain_asks_nothing_of_the_database(ledger_url: str, engine_of: Callable[[str], Engine]) -> None:
    _recorded(ledger_url).close()

    examples, statements = _looked_up(ledger_url, engine_of, [])

    assert (examples, statements) == ({}, [])


def test_a_chain_only_executions_without_a_session_took_has_no_example(
    ledger_url: str, engine_of: Callable[[str], Engine]
) -> None:
    view = _recorded(
        ledger_url,
        moved_back(run(3, tenant="acme", session=None, chain=[LIMITED, BACKUP], step="answer"), 5 * _MINUTE),
        moved_back(run(7, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"), 30 * _MINUTE),
    )
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    examples, _ = _looked_up(ledger_url, engine_of, edges)

    assert {(edge.from_model, edge.to_model) for edge in edges} == {(LIMITED, BACKUP), (LIMITED, FAST)}
    assert examples == {(LIMITED, FAST): "took-fast"}


def test_a_filter_no_fallback_meets_gives_no_example(ledger_url: str, engine_of: Callable[[str], Engine]) -> None:
    view = _recorded(ledger_url, run(5, tenant="acme", session="took-fast", chain=[LIMITED, FAST], step="answer"))
    edges = view.fallback_edges("acme", _EVERYTHING)
    view.close()

    by_model, _ = _looked_up(ledger_url, engine_of, edges, Filters(models=("mock/no-such-model",)))
    by_step, _ = _looked_up(ledger_url, engine_of, edges, Filters(steps=("classify",)))

    assert (by_model, by_step) == ({}, {})


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
