"""Databases for the demo's tests: the store's PostgreSQL and SQLite fixtures (``tests/store/conftest.py``).

The demo migrates the ledger it fills, so the PostgreSQL databases here start empty, and each test gets
one of its own: the projections are compared with every event of the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
    empty_postgres_url,
    sqlite_url,
)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_ledger_url(request: pytest.FixtureRequest) -> str:
    """A database of the test's own, never migrated, once per dialect."""
    url: str = request.getfixturevalue("empty_postgres_url" if request.param == "postgresql" else "sqlite_url")
    return url


@pytest.fixture
def clean_environment(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, str]]:
    """The environment of a newcomer's shell: a new HOME, no ledger or OTEL settings of ours."""
    home = tmp_path_factory.mktemp("home")

    def make(**extra: str) -> dict[str, str]:
        kept = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_LEDGER_", "OTEL_"))}
        return kept | {"HOME": str(home), "AGNO_TELEMETRY": "false"} | extra

    return make
