"""Percentiles of the benches' timings, by nearest rank: the p-th percentile of n values is the
ceil(p/100 * n)-th smallest, so the p90 of 20 runs is the 18th, of 10 the 9th (a value that was measured,
never one interpolated between two)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], percent: int) -> float:
    """The ``percent``-th percentile of ``values`` (not empty) by nearest rank."""
    if not values:
        raise ValueError("a percentile of no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    rank = -(-percent * len(values) // 100)  # ceil in integers: 0.9 * 70 is 63.00000000000001 in floats
    return sorted(values)[rank - 1]


def p90(values: Sequence[float]) -> float:
    return percentile(values, 90)
