"""The Cost page's figures shaped for the screen: tiles against the previous window, rows over time
and per model, agent or step, and the time to first chunk of streamed attempts. Pure functions, as in
``shaping``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from llm_ledger.dashboard.shaping import (
    NONE,
    PERCENTILE_NAMES,
    Metric,
    Row,
    _count_delta,
    _every_bucket,
    _groups,
    _latency_delta,
    _rounded,
    iso,
    milliseconds,
)
from llm_ledger.projections.queries import Figures, Group, Point

SINCE = "against the previous window of the same length"


def dollars(cost: float | None) -> str:
    """A cost as the page shows it: unknown is a dash, never $0."""
    return NONE if cost is None else f"${cost:,.4f}"


def _cost_delta(current: float | None, previous: float | None) -> str | None:
    if current is None or previous is None:
        return None
    change = current - previous
    return f"{'-' if change < 0 else '+'}${abs(change):,.4f}"  # as ``dollars`` writes a cost, signed


def cost_metrics(current: Figures, previous: Figures) -> list[Metric]:
    """Tokens in and out, cost, and the time to first chunk of streamed attempts, each with its change."""
    p50, p95, _ = current.first_chunk_percentiles()
    before50, before95, _ = previous.first_chunk_percentiles()
    return [
        Metric(
            "Input tokens",
            f"{current.input_tokens:,}",
            _count_delta(current.input_tokens, previous.input_tokens),
            "off",
            "Prompt tokens of the answered attempts, all of them: those read from and written to the provider's"
            f" prompt cache are counted in (Anthropic's too, which it reports apart); change {SINCE}.",
        ),
        Metric(
            "Output tokens",
            f"{current.output_tokens:,}",
            _count_delta(current.output_tokens, previous.output_tokens),
            "off",
            f"Completion tokens of the answered attempts (reasoning ones included); change {SINCE}.",
        ),
        Metric(
            "Cost",
            dollars(current.cost_usd),
            _cost_delta(current.cost_usd, previous.cost_usd),
            "inverse",
            "US dollars: the provider's reported cost, else the price table's, else genai-prices' at the time of "
            f"the call; models no price knows are left out (see the table). Change {SINCE}.",
        ),
        Metric(
            "p50 first chunk",
            milliseconds(p50),
            _latency_delta(p50, before50),
            "inverse",
            f"Time to the first chunk of streamed attempts that answered, p50, within 2%; change {SINCE}.",
        ),
        Metric(
            "p95 first chunk",
            milliseconds(p95),
            _latency_delta(p95, before95),
            "inverse",
            f"Time to the first chunk of streamed attempts that answered, p95, within 2%; change {SINCE}.",
        ),
    ]


def usage_rows(points: Iterable[Point], buckets: Sequence[datetime]) -> list[Row]:
    """Tokens (in + out) and cost per time bucket and group: an idle bucket is zero tokens; its cost is
    zero too, and a bucket whose tokens no price knows has an unknown cost (None: a gap). A group that no
    price knows at all has an unknown cost throughout (``priced_rows`` leaves it out of the cost chart)."""
    by_key = {(point.bucket_start, point.group): point.figures for point in points}
    priced = {group for (_, group), figures in by_key.items() if figures.cost_usd is not None}
    rows: list[Row] = []
    every = _every_bucket(buckets, (key[0] for key in by_key))
    for group in _groups(key[1] for key in by_key):
        for bucket in every:
            figures = by_key.get((bucket, group))
            tokens = figures.input_tokens + figures.output_tokens if figures else 0
            cost = None if group not in priced else figures.cost_usd if figures else 0.0
            rows.append({"time": iso(bucket), "group": group or NONE, "tokens": tokens, "cost_usd": cost})
    return rows


def priced_rows(rows: Iterable[Row]) -> list[Row]:
    """``usage_rows`` of the groups with a known cost somewhere: a group no price knows would draw no line
    but a legend entry."""
    kept = list(rows)
    priced = {row["group"] for row in kept if row["cost_usd"] is not None}
    return [row for row in kept if row["group"] in priced]


def usage_table(current: Iterable[Group], previous: Iterable[Group]) -> list[Row]:
    """One row per group of the window: its tokens and cost, and the previous window's beside them."""
    before = {group.key: group.figures for group in previous}
    rows: list[Row] = []
    for group in sorted(current, key=lambda g: (-(g.figures.input_tokens + g.figures.output_tokens), g.key)):
        figures, earlier = group.figures, before.get(group.key)
        rows.append(
            {
                "group": " · ".join(part or NONE for part in group.key),
                "input tokens": figures.input_tokens,
                "output tokens": figures.output_tokens,
                "cost": dollars(figures.cost_usd),
                "previous input tokens": earlier.input_tokens if earlier else 0,
                "previous output tokens": earlier.output_tokens if earlier else 0,
                # Absent before: nothing spent then, if a price knows the group; unknown if none does.
                "previous cost": dollars(earlier.cost_usd if earlier else None if figures.cost_usd is None else 0.0),
            }
        )
    return rows


def first_chunk_rows(groups: Iterable[Group]) -> list[Row]:
    """The time to first chunk per (step, model) of the streamed attempts that answered."""
    rows: list[Row] = []
    for group in groups:
        figures = group.figures
        if not figures.streamed_attempts:
            continue
        step, model = group.key
        percentiles = figures.first_chunk_percentiles()
        row: Row = {"step": step or NONE, "model": model or NONE, "streamed attempts": figures.streamed_attempts}
        for name, value in zip(PERCENTILE_NAMES, percentiles, strict=True):
            row[f"{name} ms"] = _rounded(value)
        row["mean ms"] = _rounded(figures.first_chunk_ms_sum / figures.streamed_attempts)
        rows.append(row)
    return rows
