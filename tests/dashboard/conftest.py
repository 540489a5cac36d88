"""Databases for the dashboard's tests: one PostgreSQL database holding a known ledger of two tenants,
projected, sealed and verified, shared by the whole session (the AppTest and the browser tests only read
it), and SQLite files for the empty and unmigrated cases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_ledger.audit import seal_ledger, verify_ledger
from llm_ledger.store import EventStore, migrate
from tests.dashboard.ledger import KnownLedger
from tests.projections.projecting import project_url
from tests.store import conftest as store_fixtures

APP = Path(__file__).resolve().parents[2] / "llm_ledger" / "dashboard" / "app.py"
# The store's database fixtures: a real PostgreSQL server (never skipped) and SQLite files.
_postgres_server = store_fixtures._postgres_server
_create_postgres_database = store_fixtures._create_postgres_database
sqlite_url = store_fixtures.sqlite_url
postgres_url = store_fixtures.postgres_url
postgres_migrated_url = store_fixtures.postgres_migrated_url
ledger_login = store_fixtures.ledger_login

UNREACHABLE_URL = "postgresql://postgres:not-shown-anywhere@127.0.0.1:1/ledger"
"""Nothing listens on port 1: connecting is refused at once."""


@dataclass(frozen=True, slots=True)
class PopulatedLedger:
    url: str
    ledger: KnownLedger


@pytest.fixture(scope="session")
def populated_ledger(_create_postgres_database: Callable[[], str]) -> PopulatedLedger:
    """A PostgreSQL ledger at head holding ``KnownLedger``'s events, with its read models caught up, sealed
    and verified clean (the audit page's last run)."""
    url = _create_postgres_database()
    ledger = recorded_ledger(url)
    seal_ledger(url)
    report = verify_ledger(url)
    assert report.ok, [str(finding) for finding in report.findings]
    return PopulatedLedger(url, ledger)


def recorded_ledger(url: str) -> KnownLedger:
    """``KnownLedger``'s events in a new database at ``url`` (migrated here), projected."""
    migrate.upgrade(url)
    ledger = KnownLedger().build()
    store = EventStore(url)
    store.append(ledger.events)
    store.close()
    project_url(url)
    return ledger


@pytest.fixture
def empty_ledger_url(sqlite_url: str) -> str:
    """An SQLite ledger at head with no events."""
    migrate.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Sets the dashboard's environment for one test: ``dashboard_env(url, tenant=..., trace_url=...)``
    (``jaeger=``: the deprecated ``LLM_LEDGER_JAEGER_URL``)."""

    def configure(
        url: str, *, tenant: str | None = None, trace_url: str | None = None, jaeger: str | None = None
    ) -> None:
        for name in ("LLM_LEDGER_DASHBOARD_TENANT", "LLM_LEDGER_TRACE_URL", "LLM_LEDGER_JAEGER_URL",
                     "LLM_LEDGER_DASHBOARD_CATCH_UP"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("LLM_LEDGER_DATABASE_URL", url)
        if tenant is not None:
            monkeypatch.setenv("LLM_LEDGER_DASHBOARD_TENANT", tenant)
        if trace_url is not None:
            monkeypatch.setenv("LLM_LEDGER_TRACE_URL", trace_url)
        if jaeger is not None:
            monkeypatch.setenv("LLM_LEDGER_JAEGER_URL", jaeger)

    return configure
