"""The benches' percentiles by nearest rank (``bench/percentiles.py``): the p90 of n runs is the
ceil(0.9 * n)-th smallest, never one rank high."""

from __future__ import annotations

import pytest

from bench.percentiles import p90, percentile


@pytest.mark.parametrize(("count", "rank"), [(1, 1), (10, 9), (19, 18), (20, 18), (21, 19), (70, 63), (100, 90)])
def test_the_p90_of_n_runs_is_the_ceil_of_nine_tenths_of_n_th_smallest(count: int, rank: int) -> None:
    # Given largest first: the rank is of the sorted values, not of the order given.
    runs = [float(value) for value in reversed(range(1, count + 1))]

    assert p90(runs) == rank


def test_the_extremes_are_the_smallest_and_largest_and_bad_input_is_refused() -> None:
    runs = [3.0, 1.0, 2.0]

    assert (percentile(runs, 1), percentile(runs, 100)) == (1.0, 3.0)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 90)
    with pytest.raises(ValueError, match="percent must be in"):
        percentile(runs, 0)
