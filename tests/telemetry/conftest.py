from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.telemetry.receivers import neutralise_otel_environment
from tests.telemetry.traced import TRACERS, Traced, traced_to


@pytest.fixture(params=TRACERS)
def traced(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    """A receiver, and an executor tracer exporting to it (each of ``TRACERS``)."""
    neutralise_otel_environment(monkeypatch)
    with traced_to(request.param) as traced:
        yield traced
