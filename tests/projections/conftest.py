"""Databases and a recorded workload for the projection tests.

The PostgreSQL fixtures are the store's (``tests/store/conftest.py``). The projector applies every event
of a database, so each test that projects gets a database of its own: PostgreSQL's events cannot be
deleted between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from llm_ledger.events import Event
from llm_ledger.store import EventStore, create_store_engine, migrate
from tests.projections import workload
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
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
def fresh_postgres_url(_create_postgres_database: Callable[[], str]) -> str:  # noqa: F811
    """A PostgreSQL database of the test's own, at the head revision."""
    url = _create_postgres_database()
    migrate.upgrade(url)
    return url


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


def store_events(url: str, recorded: list[Event], batch: int = 500) -> None:
    store = EventStore(url)
    try:
        for start in range(0, len(recorded), batch):
            store.append(recorded[start : start + batch])
    finally:
        store.close()


@pytest.fixture
def workload_url(ledger_url: str, recorded_events: list[Event]) -> str:
    """``ledger_url`` holding the recorded workload, not yet projected."""
    store_events(ledger_url, recorded_events)
    return ledger_url
