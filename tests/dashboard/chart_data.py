"""What a chart drawn under ``AppTest`` holds: the rows Streamlit sends the browser with its Vega-Lite spec.

``st.altair_chart`` moves the chart's inline rows out of the spec into Arrow datasets on the element, so
reading them back is reading what the browser would plot."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

TIME_FIELD = "time"
"""The field every time chart of the dashboard draws on its x axis (``charts.TIME_AXIS``)."""


@dataclass(frozen=True, slots=True)
class DrawnChart:
    """One chart of a run: its spec and every row of its datasets."""

    spec: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def is_over_time(self) -> bool:
        return self._encoding("x").get("field") == TIME_FIELD

    @property
    def value_field(self) -> str:
        """The field on the y axis."""
        return str(self._encoding("y")["field"])

    def points(self, field: str | None = None) -> list[tuple[datetime, float]]:
        """The rows that put a mark above zero: their time and ``field`` (the y axis's by default). A
        missing value (a gap) and a zero count are no points of data."""
        name = field or self.value_field
        return [
            (datetime.fromisoformat(row[TIME_FIELD]).astimezone(UTC), float(row[name]))
            for row in self.rows
            if _is_above_zero(row[name])
        ]

    def _encoding(self, channel: str) -> dict[str, Any]:
        # A layered chart (the latency percentiles: lines and points) shares one x and y.
        layer = self.spec["layer"][0] if "layer" in self.spec else self.spec
        encoding: dict[str, Any] = layer.get("encoding", {}).get(channel, {})
        return encoding


def drawn_charts(app: AppTest) -> list[DrawnChart]:
    """Every Vega-Lite chart the run drew in the main area, in page order (charts in tabs included)."""
    return [
        DrawnChart(
            json.loads(element.proto.spec),
            [row for dataset in element.proto.datasets for row in _rows(dataset.data.data)],
        )
        for element in app.main.get("vega_lite_chart")
    ]


def _rows(arrow: bytes) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = convert_arrow_bytes_to_pandas_df(arrow).to_dict("records")
    return records


def _is_above_zero(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and float(value) > 0
