"""Altair (Vega-Lite) charts of the shaped rows. The rows are inlined (``alt.InlineData``), which keeps pandas
out of the dashboard's own code."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt

from llm_ledger.dashboard.shaping import Row

_HEIGHT = 280
_OUTCOME_COLORS = alt.Scale(
    domain=["succeeded", "failed", "incomplete", "in flight"], range=["#2e7d32", "#c62828", "#9e9e9e", "#f9a825"]
)


def _lines(rows: Sequence[Row], color: str | None = None) -> alt.Chart:
    """A line chart over time of ``rows`` (its points marked), to be encoded further."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=list(rows)), height=_HEIGHT)
        .mark_line(point=True, color=alt.Undefined if color is None else color)
        .encode(x=alt.X("time:T", title="time"))
    )
    return chart


def activity(rows: Sequence[Row]) -> alt.Chart:
    """Executions, failures and fallbacks over time."""
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("count:Q", title="executions"),
        color=alt.Color(
            "series:N",
            title=None,
            scale=alt.Scale(domain=["executions", "failed", "fell back"], range=["#1565c0", "#c62828", "#ef6c00"]),
        ),
        tooltip=[alt.Tooltip("time:T"), alt.Tooltip("series:N"), alt.Tooltip("count:Q")],
    )
    return chart


def latency(rows: Sequence[Row], group_title: str) -> alt.Chart:
    """Percentile lines over time: one colour per group, one dash per percentile."""
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("latency_ms:Q", title="latency (ms)"),
        color=alt.Color("group:N", title=group_title),
        strokeDash=alt.StrokeDash("percentile:N", title="percentile", sort=["p50", "p95", "p99"]),
        tooltip=[
            alt.Tooltip("time:T"),
            alt.Tooltip("group:N", title=group_title),
            alt.Tooltip("percentile:N"),
            alt.Tooltip("latency_ms:Q", title="ms", format=".1f"),
        ],
    )
    return chart


def error_rate(rows: Sequence[Row], group_title: str) -> alt.Chart:
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("rate:Q", title="failed attempts / attempts", axis=alt.Axis(format="%")),
        color=alt.Color("group:N", title=group_title),
        tooltip=[
            alt.Tooltip("time:T"),
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
            alt.Tooltip("time:T"),
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
            x=alt.X("sum(calls):Q", title="tool calls"),
            y=alt.Y("tool:N", title=None, sort="-x"),
            color=alt.Color("outcome:N", title="outcome", scale=_OUTCOME_COLORS),
            tooltip=[alt.Tooltip("tool:N"), alt.Tooltip("outcome:N"), alt.Tooltip("step:N"), alt.Tooltip("calls:Q")],
        )
    )
    return chart


def tool_calls_over_time(rows: Sequence[Row]) -> alt.Chart:
    chart: alt.Chart = _lines(rows).encode(
        y=alt.Y("calls:Q", title="tool calls"),
        color=alt.Color("outcome:N", title="outcome", scale=_OUTCOME_COLORS),
        tooltip=[alt.Tooltip("time:T"), alt.Tooltip("outcome:N"), alt.Tooltip("calls:Q")],
    )
    return chart


def fallback_chains(rows: Sequence[Row]) -> alt.Chart:
    """The chains as from → to bars, stacked by what happened after the fallback (Vega-Lite has no
    Sankey; one bar per edge reads the same flows).

    No title may be ``then``: Streamlit draws with Vega's CSP-safe interpreter, which refuses a tooltip
    object with that key ("Illegal property: then") and leaves the chart blank.
    """
    edges = {(row["edge"], row["reason"]) for row in rows}
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=list(rows)), height=60 + 36 * len(edges))
        .mark_bar()
        .encode(
            y=alt.Y("edge:N", title=None, axis=alt.Axis(labelLimit=480)),
            x=alt.X("sum(executions):Q", title="fallbacks"),
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
        y=alt.Y("lane:N", sort=lanes, title=None, axis=alt.Axis(labelLimit=320)),
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
