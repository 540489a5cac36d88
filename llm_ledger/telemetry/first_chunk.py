"""The GenAI semantic conventions' time-to-first-chunk metric, ``gen_ai.client.operation.time_to_first_chunk``
(seconds, from the request to the first chunk of the response stream), for streamed attempts that answered.

The histogram is created here rather than with the semantic-conventions package's ``create_...`` helper, which
sets no bucket boundaries: the SDK's default ones (0, 5, 10, 25 ... 10,000) are meant for milliseconds and
would put nearly every first chunk, a fraction of a second, in the first two buckets. The boundaries are the
ones the conventions advise for GenAI client durations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

METRIC_NAME = "gen_ai.client.operation.time_to_first_chunk"
"""Spelt out rather than taken from the semantic-conventions package, which has the constant only in
releases newer than the oldest this project supports."""

BOUNDARIES_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""The conventions' advised explicit bucket boundaries for ``gen_ai.client.operation.*`` durations."""


class FirstChunkMetric:
    """Records a streamed attempt's time to first chunk, with the attributes of its duration."""

    __slots__ = ("_histogram",)

    def __init__(self, meter: metrics.Meter) -> None:
        self._histogram = meter.create_histogram(
            name=METRIC_NAME,
            unit="s",
            description="Time to receive the first chunk, from the request to the first chunk of the response stream.",
            explicit_bucket_boundaries_advisory=BOUNDARIES_SECONDS,
        )

    def record(self, ttfc_ms: float | None, attributes: Mapping[str, Any]) -> None:
        """Nothing for an attempt that was not streamed (``ttfc_ms`` None)."""
        if ttfc_ms is not None:
            self._histogram.record(ttfc_ms / 1000, attributes)
