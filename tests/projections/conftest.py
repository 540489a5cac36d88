"""Databases and a recorded workload for the projection tests.

The PostgreSQL fixtures are the store's (``tests/store/conftest.py``). The projector applies every event
of a database, so each test that projects gets a database of its own: PostgreSQL's events cannot be
deleted between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from llm_ledger.events import Event
from llm_ledger.projections.grains import DAY, MINUTE, floor
from llm_ledger.projections.queries import Window
from llm_ledger.store import EventStore, create_store_engine, migrate
from tests.projections import workload
from tests.projections.projecting import project_url
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_migrated_postgres_database,
    _create_postgres_database,
    _postgres_server,
    empty_postgres_url,
    postgres_migrated_url,
    postgres_url,
    sqlite_url,
    unique_tenant_id,
)

WORKLOAD_EXECUTIONS = 400
WORKLOAD_SPREAD = timedelta(days=3)


@pytest.fixture
def engine_of() -> Iterator[Callable[[str], Engine]]:
    """Engines on the test's databases, disposed of at its end."""
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engines.append(create_store_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def fresh_postgres_url(_create_migrated_postgres_database: Callable[[], str]) -> str:  # noqa: F811
    """A PostgreSQL database of the test's own, at the head revision."""
    return _create_migrated_postgres_database()


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """An empty ledger database at the head revision, of the test's own, once per dialect."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("fresh_postgres_url")
        return url
    url = request.getfixturevalue("sqlite_url")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def tenants() -> tuple[str, ...]:
    return workload.tenants_named("proj")


@pytest.fixture(scope="session")
def recorded_events(tenants: tuple[str, ...]) -> list[Event]:
    """The events of a workload of several hundred executions over three days, recorded once."""
    return workload.generate(tenants, WORKLOAD_EXECUTIONS, spread=WORKLOAD_SPREAD)


def everything() -> Window:
    """A window holding the whole workload (recorded over the three days before now)."""
    now = datetime.now(UTC)
    return Window(floor(now, DAY) - timedelta(days=5), floor(now, MINUTE) + timedelta(minutes=2))


def part_of_the_workload() -> Window:
    """About 29 hours in the middle of the workload, starting and ending mid-hour."""
    start = floor(datetime.now(UTC) - timedelta(hours=52, minutes=13), MINUTE)
    return Window(start, start + timedelta(hours=29, minutes=31))


def store_events(url: str, recorded: list[Event], batch: int = 500) -> None:
    store = EventStore(url)
    try:
        for start in range(0, len(recorded), batch):
            store.append(recorded[start : start + batch])
    finally:
        store.close()


def projected_database(
    request: pytest.FixtureRequest, events: list[Event], directory: Path, **projector_options: object
) -> str:
    """A database of a test module's own on the dialect ``request.param`` names (the file in ``directory``
    on SQLite) holding ``events``, projected by a ``Projector`` given ``projector_options``."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("_create_postgres_database")()
    else:
        url = f"sqlite:///{directory / 'ledger.db'}"
    migrate.upgrade(url)
    store_events(url, events)
    project_url(url, **projector_options)
    return url


@pytest.fixture
def workload_url(ledger_url: str, recorded_events: list[Event]) -> str:
    """``ledger_url`` holding the recorded workload, not yet projected."""
    store_events(ledger_url, recorded_events)
    return ledger_url
