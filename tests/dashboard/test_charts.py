"""The charts' specifications: what a browser draws from them is checked in ``test_browser.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import altair as alt

from llm_ledger.dashboard import charts

_TIME_ROWS = [{"time": "2026-03-14T10:00:00+00:00", "series": "executions", "count": 1}]


def _layers(chart: alt.TopLevelMixin) -> Iterator[dict[str, Any]]:
    spec = chart.to_dict()
    yield from spec.get("layer", [spec])


def _time_charts() -> list[alt.TopLevelMixin]:
    return [
        charts.activity(_TIME_ROWS),
        charts.latency([], "step"),
        charts.error_rate([], "model"),
        charts.fallback_rate([]),
        charts.tool_calls_over_time([]),
    ]


def test_every_time_axis_is_in_utc_on_a_24_hour_clock_and_so_is_its_tooltip() -> None:
    for chart in _time_charts():
        for layer in _layers(chart):
            x = layer["encoding"]["x"]
            assert x["scale"] == {"type": "utc"}
            assert "utcFormat(datum.value, '%H:%M')" in x["axis"]["labelExpr"]
            assert x["title"] == "time (UTC)"
            (time_tip,) = [tip for tip in layer["encoding"]["tooltip"] if tip["field"] == "time"]
            assert time_tip["timeUnit"] == "utcyearmonthdatehoursminutes"


def test_an_empty_value_breaks_the_line_rather_than_joining_its_neighbours() -> None:
    for chart in _time_charts():
        for layer in _layers(chart):
            assert layer["mark"]["invalid"] == "break-paths-filter-domains"


def test_counts_have_whole_ticks() -> None:
    for chart, channel in (
        (charts.activity(_TIME_ROWS), "y"),
        (charts.tool_calls_over_time([]), "y"),
        (charts.tool_calls([]), "x"),
        (charts.fallback_chains([]), "x"),
    ):
        axis = chart.to_dict()["encoding"][channel]["axis"]
        assert (axis["tickMinStep"], axis["format"]) == (1, "d")


def test_chains_are_sorted_by_count_and_model_names_are_never_cut() -> None:
    chains = charts.fallback_chains([])
    y = chains.to_dict()["encoding"]["y"]
    assert (y["sort"], y["axis"]["labelLimit"]) == ("-x", 0)
    for chart in (charts.latency([], "model"), charts.error_rate([], "model")):
        for layer in _layers(chart):
            assert layer["encoding"]["color"]["legend"]["labelLimit"] == 0


def test_the_percentiles_are_told_apart_by_their_dash_in_the_legend() -> None:
    lines = next(layer for layer in _layers(charts.latency([], "step")) if "strokeDash" in layer["encoding"])
    dash = lines["encoding"]["strokeDash"]
    assert dash["legend"]["symbolType"] == "stroke"
    ranges = dash["scale"]["range"]
    assert len({tuple(r) for r in ranges}) == len(ranges) == 3
