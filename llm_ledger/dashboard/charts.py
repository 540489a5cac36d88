"""Altair (Vega-Lite) charts of the shaped rows. The rows are inlined (``alt.InlineData``), which keeps pandas
out of the dashboard's own code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import altair as alt

# Whole before any chart is built, this module's own included. Altair reads numpy and pandas from
# sys.modules when it serialises a chart, without importing them, and Streamlit imports pandas lazily in
# whichever session's script thread first needs it: a chart built meanwhile in another session found the
# module half-initialised ("partially initialized module 'pandas' has no attribute 'Timestamp'") and the
# page ended in an error. An import waits for another thread's import of the same module to finish.
import numpy  # noqa: F401
import pandas  # noqa: F401

from llm_ledger.dashboard.shaping import Row

PERCENTILE_DASHES = {"p50": [1, 0], "p95": [6, 3], "p99": [2, 2]}
"""Solid, dashed, dotted: told apart in the legend and on the lines."""

_HEIGHT = 280
_OUTCOME_COLORS = alt.Scale(
    domain=["succeeded", "failed", "incomplete", "in flight"], range=["#2e7d32", "#c62828", "#9e9e9e", "#f9a825"]
)


_UTC_LABEL = (
    "utchours(datum.value) == 0 && utcminutes(datum.value) == 0"
    " ? utcFormat(datum.value, '%b %d') : utcFormat(datum.value, '%H:%M')"
)
"""Tick labels in UTC on a 24-hour clock, the day at midnight. Vega's default labels are in the browser's
time zone with a 12-hour clock ("03 PM"), while every caption and table of the dashboard is in UTC."""
TIME_AXIS = alt.X(
    "time:T",
    title="time (UTC)",
    scale=alt.Scale(type="utc"),
    axis=alt.Axis(labelExpr=_UTC_LABEL, labelOverlap=True),
)
TIME_TOOLTIP = alt.Tooltip("utcyearmonthdatehoursminutes(time):T", title="time (UTC)", format="%Y-%m-%d %H:%M")
"""A UTC time unit makes Vega-Lite format the tooltip with ``utcFormat``, whatever the browser's zone."""


def _count_axis() -> alt.Axis:
    """Counts are whole: no "0.5 executions" tick."""
    return alt.Axis(tickMinStep=1, format="d")


_BREAK_AT_NULL: Final = "break-paths-filter-domains"
"""A row whose value is None breaks a line (a gap) and is left out of the scales."""
_NO_CUT = 0
"""``labelLimit`` 0: no limit. Cut at the default 160 pixels, two models of one provider read the same."""


def _lines(rows: Sequence[Row], color: str | None = None) -> alt.Chart:
    """A line chart over time of ``rows`` (its points marked), to be encoded further. A row whose value is
    None (a bucket without data for a rate or a latency) breaks the line: a gap, not a line across it."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=list(rows)), height=_HEIGHT)
        .mark_line(point=True, color=alt.Undefined if color is None else color, invalid=_BREAK_AT_NULL)
        .encode(x=TIME_AXIS)
    )
    return chart


def activity(rows: Sequence[Row]) -> alt.Chart:
    """Executions, failures and fallbacks over time."""
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("count:Q", title="executions", axis=_count_axis()),
        color=alt.Color(
            "series:N",
            title=None,
            scale=alt.Scale(domain=["executions", "failed", "fell back"], range=["#1565c0", "#c62828", "#ef6c00"]),
        ),
        tooltip=[TIME_TOOLTIP, alt.Tooltip("series:N"), alt.Tooltip("count:Q")],
    )
    return chart


def latency(rows: Sequence[Row], group_title: str) -> alt.LayerChart:
    """Percentile lines over time: one colour per group, one dash per percentile, its points over them.
    The points are a layer of their own: on the line mark (``point=True``) the dash legend drew the points'
    symbol, three blank marks that told the percentiles apart by their label only."""
    base = alt.Chart(alt.InlineData(values=list(rows)), height=_HEIGHT).encode(
        x=TIME_AXIS,
        y=alt.Y("latency_ms:Q", title="latency (ms)"),
        color=alt.Color("group:N", title=group_title, legend=alt.Legend(labelLimit=_NO_CUT)),
        tooltip=[
            TIME_TOOLTIP,
            alt.Tooltip("group:N", title=group_title),
            alt.Tooltip("percentile:N"),
            alt.Tooltip("latency_ms:Q", title="ms", format=".1f"),
        ],
    )
    lines = base.mark_line(invalid=_BREAK_AT_NULL).encode(
        strokeDash=alt.StrokeDash(
            "percentile:N",
            title="percentile",
            sort=list(PERCENTILE_DASHES),
            scale=alt.Scale(domain=list(PERCENTILE_DASHES), range=list(PERCENTILE_DASHES.values())),
            legend=alt.Legend(symbolType="stroke", symbolStrokeColor="#555", symbolStrokeWidth=2, symbolSize=400),
        ),
    )
    points = base.mark_point(filled=True, invalid=_BREAK_AT_NULL).encode(detail="percentile:N")
    return alt.LayerChart(layer=[lines, points])


def error_rate(rows: Sequence[Row], group_title: str) -> alt.Chart:
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("rate:Q", title="failed attempts / attempts", axis=alt.Axis(format="%")),
        color=alt.Color("group:N", title=group_title, legend=alt.Legend(labelLimit=_NO_CUT)),
        tooltip=[
            TIME_TOOLTIP,
            alt.Tooltip("group:N", title=group_title),
            alt.Tooltip("failures:Q"),
            alt.Tooltip("attempts:Q"),
            alt.Tooltip("rate:Q", format=".1%"),
        ],
    )
    return chart


def fallback_rate(rows: Sequence[Row]) -> alt.Chart:
    chart: alt.Chart = _lines(rows, color="#ef6c00").encode(
        y=alt.Y("rate:Q", title="executions that fell back", axis=alt.Axis(format="%")),
        tooltip=[
            TIME_TOOLTIP,
            alt.Tooltip("executions:Q"),
            alt.Tooltip("fell back:Q"),
            alt.Tooltip("rate:Q", format=".1%"),
        ],
    )
    return chart


def tool_calls(rows: Sequence[Row]) -> alt.Chart:
    """Calls per tool, stacked by outcome."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=list(rows)), height=_HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("sum(calls):Q", title="tool calls", axis=_count_axis()),
            y=alt.Y("tool:N", title=None, sort="-x", axis=alt.Axis(labelLimit=_NO_CUT)),
            color=alt.Color("outcome:N", title="outcome", scale=_OUTCOME_COLORS),
            tooltip=[alt.Tooltip("tool:N"), alt.Tooltip("outcome:N"), alt.Tooltip("step:N"), alt.Tooltip("calls:Q")],
        )
    )
    return chart


def tool_calls_over_time(rows: Sequence[Row]) -> alt.Chart:
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("calls:Q", title="tool calls", axis=_count_axis()),
        color=alt.Color("outcome:N", title="outcome", scale=_OUTCOME_COLORS),
        tooltip=[TIME_TOOLTIP, alt.Tooltip("outcome:N"), alt.Tooltip("calls:Q")],
    )
    return chart


def _usage_colors(group_title: str, groups: Sequence[str], shown: Sequence[str] | None = None) -> alt.Color:
    """One colour per group, the same in the tokens and the cost chart; the legend names the ``shown`` ones
    (the cost chart leaves some out: a group it draws no line for has no place in its legend)."""
    legend = alt.Legend(labelLimit=_NO_CUT) if shown is None else alt.Legend(labelLimit=_NO_CUT, values=list(shown))
    return alt.Color("group:N", title=group_title, scale=alt.Scale(domain=list(groups)), legend=legend)


def tokens_over_time(rows: Sequence[Row], group_title: str, groups: Sequence[str]) -> alt.Chart:
    """Tokens (in + out) per bucket, one line per group; idle buckets are zeros."""
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("tokens:Q", title="tokens", axis=_count_axis()),
        color=_usage_colors(group_title, groups),
        tooltip=[TIME_TOOLTIP, alt.Tooltip("group:N", title=group_title), alt.Tooltip("tokens:Q", format=",d")],
    )
    return chart


def cost_over_time(rows: Sequence[Row], group_title: str, groups: Sequence[str]) -> alt.Chart:
    """Cost (US dollars) per bucket, one line per group of ``rows``; a bucket of unknown cost is a gap."""
    drawn = [group for group in groups if any(row["group"] == group for row in rows)]
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("cost_usd:Q", title="cost (US$)"),
        color=_usage_colors(group_title, groups, drawn),
        tooltip=[TIME_TOOLTIP, alt.Tooltip("group:N", title=group_title), alt.Tooltip("cost_usd:Q", format="$,.4f")],
    )
    return chart


def fallback_chains(rows: Sequence[Row]) -> alt.Chart:
    """The chains as from → to bars, stacked by what happened after the fallback (Vega-Lite has no
    Sankey; one bar per edge reads the same flows), the most frequent first.

    No title may be ``then``: Streamlit draws with Vega's CSP-safe interpreter, which refuses a tooltip
    object with that key ("Illegal property: then") and leaves the chart blank.
    """
    edges = {(row["edge"], row["reason"]) for row in rows}
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=list(rows)), height=60 + 36 * len(edges))
        .mark_bar()
        .encode(
            y=alt.Y("edge:N", title=None, sort="-x", axis=alt.Axis(labelLimit=_NO_CUT)),
            x=alt.X("sum(executions):Q", title="fallbacks", axis=_count_axis()),
            color=alt.Color(
                "outcome:N",
                title="after the fallback",
                scale=alt.Scale(domain=["succeeded after", "did not succeed"], range=["#2e7d32", "#c62828"]),
            ),
            tooltip=[
                alt.Tooltip("edge:N", title="from → to"),
                alt.Tooltip("reason:N"),
                alt.Tooltip("outcome:N", title="after the fallback"),
                alt.Tooltip("executions:Q"),
            ],
        )
    )
    return chart


def session_timeline_height(lanes: int) -> int:
    """Pixels for a timeline of ``lanes`` executions, given to Streamlit: the chart's own height was not
    kept, and a one-execution session cut the outcome legend (four entries and a title) off."""
    return min(max(160, 60 + 28 * lanes), 900)


def session_timeline(rows: Sequence[Row]) -> alt.LayerChart:
    """Each execution as a pale bar from its start, its attempts as solid bars over it, coloured by
    outcome; lanes in time order."""
    lanes = list(dict.fromkeys(row["lane"] for row in rows))
    base = alt.Chart(alt.InlineData(values=list(rows))).encode(
        y=alt.Y("lane:N", sort=lanes, title=None, axis=alt.Axis(labelLimit=_NO_CUT)),
        x=alt.X("start_ms:Q", title="milliseconds since the execution started"),
        x2="end_ms:Q",
        color=alt.Color("outcome:N", scale=_OUTCOME_COLORS),
        tooltip=[
            alt.Tooltip("lane:N", title="execution"),
            alt.Tooltip("what:N"),
            alt.Tooltip("model:N"),
            alt.Tooltip("outcome:N"),
            alt.Tooltip("latency_ms:Q", title="latency ms", format=".1f"),
        ],
    )
    executions = base.transform_filter(alt.datum.kind == "execution").mark_bar(opacity=0.25, minBandSize=2)
    attempts = base.transform_filter(alt.datum.kind == "attempt").mark_bar(size=10, minBandSize=2)
    return alt.LayerChart(layer=[executions, attempts])
