"""Latency histograms with logarithmic buckets: mergeable by adding counts, and any percentile read from
them is within ``RELATIVE_ERROR`` of the exact (nearest-rank) one.

Bucket ``i`` holds the values in ``(GAMMA**(i-1), GAMMA**i]`` milliseconds and reports the value
``2 * GAMMA**i / (GAMMA + 1)``, which is at most ``(GAMMA - 1) / (GAMMA + 1) = RELATIVE_ERROR`` away from
anything in the bucket (the DDSketch construction). 1.5% rather than the 2% asked for leaves room for
rounding at bucket edges. A histogram is stored as a JSON object ``{"<bucket>": count}`` holding only the
buckets that are not empty: an hour of one step on one model touches a handful of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import orjson

RELATIVE_ERROR: Final = 0.015
GAMMA: Final = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA: Final = math.log(GAMMA)

SMALLEST_MS: Final = 0.001
"""Latencies at or below one microsecond (a mock model, a clock that did not tick) share one bucket that
reports 0 ms: no relative error can be promised for zero."""
ZERO_BUCKET: Final = math.ceil(math.log(SMALLEST_MS) / _LOG_GAMMA) - 1

Counts = dict[int, int]


def bucket_of(latency_ms: float) -> int:
    """The bucket a latency falls into."""
    if latency_ms <= SMALLEST_MS:
        return ZERO_BUCKET
    return math.ceil(math.log(latency_ms) / _LOG_GAMMA)


def value_of(bucket: int) -> float:
    """The latency (ms) a bucket reports: within ``RELATIVE_ERROR`` of every value it holds."""
    if bucket <= ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**bucket / (GAMMA + 1)


def add(counts: Counts, latency_ms: float, n: int = 1) -> None:
    bucket = bucket_of(latency_ms)
    counts[bucket] = counts.get(bucket, 0) + n


def merge_into(total: Counts, other: Mapping[int, int]) -> Counts:
    for bucket, n in other.items():
        total[bucket] = total.get(bucket, 0) + n
    return total


def quantiles(counts: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """Nearest-rank quantiles (``percentile_disc``): for ``q`` the smallest value with at least
    ``q * n`` values at or below it. ``None`` for an empty histogram."""
    total = sum(counts.values())
    wanted = list(qs)
    if total == 0:
        return [None] * len(wanted)
    ranks = [max(1, math.ceil(q * total)) for q in wanted]
    results: list[float | None] = [None] * len(wanted)
    order = sorted(range(len(wanted)), key=lambda i: ranks[i])
    seen = 0
    position = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        while position < len(order) and ranks[order[position]] <= seen:
            results[order[position]] = value_of(bucket)
            position += 1
        if position == len(order):
            break
    return results


def dumps(counts: Mapping[int, int]) -> str:
    """The stored form: a JSON object of the non-empty buckets, keys in bucket order."""
    return orjson.dumps({str(b): counts[b] for b in sorted(counts) if counts[b]}).decode()


def loads(stored: str | bytes | Mapping[str, int] | None) -> Counts:
    """Read the stored form (the driver may hand over text or an already decoded object)."""
    if stored is None:
        return {}
    decoded = orjson.loads(stored) if isinstance(stored, str | bytes) else stored
    return {int(bucket): int(n) for bucket, n in decoded.items()}


def merge_stored(a: str | bytes | None, b: str | bytes | None) -> str:
    """Two stored histograms merged, in the stored form (SQLite's ``llm_ledger_hist_merge``)."""
    return dumps(merge_into(loads(a), loads(b)))
