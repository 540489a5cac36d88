"""The Cost page's shaping: idle buckets, unknown costs, the previous window beside the current."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llm_ledger.dashboard import charts
from llm_ledger.dashboard.cost_shaping import cost_metrics, dollars, priced_rows, usage_rows, usage_table
from llm_ledger.dashboard.shaping import milliseconds
from llm_ledger.projections import histogram
from llm_ledger.projections.queries import Figures, Group, Point

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
BUCKETS = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]


def _figures(tokens_in: int, tokens_out: int, cost: float | None) -> Figures:
    return Figures(attempts=1, input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost)


def test_an_idle_bucket_is_zero_tokens_and_zero_cost_and_an_unpriced_one_a_gap() -> None:
    points = [Point(T0, "priced", _figures(10, 5, 0.25)), Point(BUCKETS[2], "priced", _figures(3, 1, None))]

    rows = usage_rows(points, BUCKETS)

    assert [(row["tokens"], row["cost_usd"]) for row in rows] == [(15, 0.25), (0, 0.0), (4, None)]


def test_a_group_no_price_knows_has_no_cost_line() -> None:
    points = [Point(T0, "priced", _figures(10, 5, 0.25)), Point(T0, "mock/x", _figures(7, 7, None))]

    rows = usage_rows(points, BUCKETS)

    assert {row["cost_usd"] for row in rows if row["group"] == "mock/x"} == {None}
    assert {row["group"] for row in priced_rows(rows)} == {"priced"}
    color = charts.cost_over_time(priced_rows(rows), "model", ["mock/x", "priced"]).to_dict()["encoding"]["color"]
    assert color["scale"]["domain"] == ["mock/x", "priced"], "the tokens chart's colours"
    assert color["legend"]["values"] == ["priced"], "no legend entry without a line"


def test_a_change_in_cost_is_written_as_a_cost_is() -> None:
    tiles = {m.label: m for m in cost_metrics(_figures(10, 5, 0.5), _figures(1, 1, 0.75))}

    assert (tiles["Cost"].value, tiles["Cost"].delta) == ("$0.5000", "-$0.2500")
    tiles = {m.label: m for m in cost_metrics(_figures(10, 5, 0.75), _figures(1, 1, 0.5))}
    assert tiles["Cost"].delta == "+$0.2500"


def test_an_unknown_cost_reads_as_a_dash_never_zero_dollars() -> None:
    assert dollars(None) == "—"
    assert dollars(0.0) == "$0.0000"
    tiles = {m.label: m for m in cost_metrics(_figures(10, 5, None), _figures(1, 1, 0.5))}
    assert (tiles["Cost"].value, tiles["Cost"].delta) == ("—", None)


def test_the_table_sets_the_previous_windows_figures_beside_the_current_ones() -> None:
    current = [Group(("model-a",), _figures(100, 10, 1.5)), Group(("model-b",), _figures(5, 5, None))]
    previous = [Group(("model-a",), _figures(40, 4, 0.5))]

    rows = {row["group"]: row for row in usage_table(current, previous)}

    assert rows["model-a"]["previous input tokens"] == 40 and rows["model-a"]["previous cost"] == "$0.5000"
    assert rows["model-b"]["cost"] == "—" and rows["model-b"]["previous input tokens"] == 0
    assert rows["model-b"]["previous cost"] == "—", "no price knows it: not $0 before either"


def test_a_priced_group_absent_from_the_previous_window_cost_nothing_then() -> None:
    (row,) = usage_table([Group(("model-a",), _figures(100, 10, 1.5))], [])

    assert row["previous cost"] == "$0.0000"


def test_the_first_chunk_tiles_are_read_from_the_histogram() -> None:
    figures = Figures(first_chunk_latency={histogram.bucket_of(40.0): 3, histogram.bucket_of(400.0): 1})

    tiles = {m.label: m for m in cost_metrics(figures, Figures())}

    assert tiles["p50 first chunk"].value == milliseconds(histogram.value_of(histogram.bucket_of(40.0)))
    assert tiles["p95 first chunk"].value == milliseconds(histogram.value_of(histogram.bucket_of(400.0)))
    assert tiles["p50 first chunk"].delta is None, "no streamed attempt in the previous window: no change"
