"""Latency histograms: logarithmic buckets whose percentiles are within 2% of the exact ones."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_ledger.projections import histogram
from tests.projections.ground_truth import nearest_rank

LIMIT = 0.02
latencies = st.floats(min_value=0.002, max_value=1e7, allow_nan=False, allow_infinity=False)
counts = st.dictionaries(st.integers(min_value=-400, max_value=1200), st.integers(min_value=1, max_value=1000))


def relative_error(reported: float, exact: float) -> float:
    return abs(reported - exact) / exact


@pytest.mark.parametrize("exponent", range(-2, 8))
def test_a_bucket_reports_its_values_within_two_percent_over_ten_decades(exponent: int) -> None:
    for mantissa in (1.0, 1.0001, 1.5, 2.0, 3.3333, 5.0, 7.77, 9.9999):
        latency = mantissa * 10**exponent
        assert relative_error(histogram.value_of(histogram.bucket_of(latency)), latency) <= LIMIT


@given(latencies)
def test_any_latency_is_reported_within_two_percent(latency: float) -> None:
    assert relative_error(histogram.value_of(histogram.bucket_of(latency)), latency) <= LIMIT


@given(latencies, latencies)
def test_buckets_keep_the_order_of_latencies(a: float, b: float) -> None:
    if a <= b:
        assert histogram.bucket_of(a) <= histogram.bucket_of(b)


def test_latencies_of_a_microsecond_or_less_report_zero() -> None:
    for latency in (0.0, 0.0005, histogram.SMALLEST_MS):
        assert histogram.bucket_of(latency) == histogram.ZERO_BUCKET
        assert histogram.value_of(histogram.bucket_of(latency)) == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_quantiles_are_within_two_percent_of_the_exact_nearest_rank(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([1, 2, 7, 100, 1_000, 20_000])
    values = [rng.lognormvariate(math.log(rng.uniform(0.5, 5_000)), rng.uniform(0.1, 2.5)) for _ in range(size)]
    counts: histogram.Counts = {}
    for value in values:
        histogram.add(counts, value)

    qs = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
    for q, reported in zip(qs, histogram.quantiles(counts, qs), strict=True):
        assert reported is not None
        assert relative_error(reported, nearest_rank(values, q)) <= LIMIT, (q, size)


@given(st.lists(latencies, min_size=1, max_size=300), st.floats(min_value=0.0, max_value=1.0))
def test_any_quantile_of_any_sample_is_within_two_percent(values: list[float], q: float) -> None:
    counts: histogram.Counts = {}
    for value in values:
        histogram.add(counts, value)
    [reported] = histogram.quantiles(counts, [q])
    assert reported is not None
    assert relative_error(reported, nearest_rank(values, q)) <= LIMIT


def test_quantiles_of_an_empty_histogram_are_none() -> None:
    assert histogram.quantiles({}, [0.5, 0.99]) == [None, None]


def test_quantiles_come_back_in_the_order_asked() -> None:
    counts: histogram.Counts = {}
    for value in range(1, 101):
        histogram.add(counts, float(value))
    p99, p50, p95 = histogram.quantiles(counts, [0.99, 0.5, 0.95])
    assert p50 is not None and p95 is not None and p99 is not None
    assert p50 < p95 < p99


@given(counts, counts, counts)
def test_merge_is_associative(a: dict[int, int], b: dict[int, int], c: dict[int, int]) -> None:
    left = histogram.merge_into(histogram.merge_into(dict(a), b), c)
    right = histogram.merge_into(dict(a), histogram.merge_into(dict(b), c))
    assert left == right


@given(counts, counts)
def test_merge_is_commutative(a: dict[int, int], b: dict[int, int]) -> None:
    assert histogram.merge_into(dict(a), b) == histogram.merge_into(dict(b), a)


@given(st.lists(latencies, max_size=50), st.lists(latencies, max_size=50))
def test_merging_two_histograms_equals_the_histogram_of_both_samples(a: list[float], b: list[float]) -> None:
    first: histogram.Counts = {}
    second: histogram.Counts = {}
    both: histogram.Counts = {}
    for value in a:
        histogram.add(first, value)
        histogram.add(both, value)
    for value in b:
        histogram.add(second, value)
        histogram.add(both, value)
    assert histogram.merge_into(first, second) == both


@given(counts)
def test_the_stored_form_round_trips(counts: dict[int, int]) -> None:
    stored = histogram.dumps(counts)
    assert histogram.loads(stored) == counts
    assert histogram.loads(stored.encode()) == counts
    assert histogram.loads({str(b): n for b, n in counts.items()}) == counts


def test_the_stored_form_lists_non_empty_buckets_in_bucket_order() -> None:
    assert histogram.dumps({5: 1, -3: 2, 0: 0, 12: 4}) == '{"-3":2,"5":1,"12":4}'
    assert histogram.loads(None) == {}


@given(counts, counts)
def test_merging_stored_forms_equals_merging_counts(a: dict[int, int], b: dict[int, int]) -> None:
    merged = histogram.merge_stored(histogram.dumps(a), histogram.dumps(b))
    assert histogram.loads(merged) == histogram.merge_into(dict(a), b)
    assert histogram.loads(histogram.merge_stored(None, histogram.dumps(b))) == b
