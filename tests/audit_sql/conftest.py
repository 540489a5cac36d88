"""One audited ledger per dialect, filled once per session (the tests only read it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from llm_ledger.audit import verify_ledger
from llm_ledger.events import Event
from tests.audit.conftest import seal_all, unmigrated_url  # noqa: F401  (a fixture, registered here by import)
from tests.audit_sql.ledger import Extras, fill_ledger, read_events
from tests.projections.conftest import engine_of  # noqa: F401  (a fixture, registered here by import)
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
    empty_postgres_url,
    sqlite_url,
)


@dataclass(frozen=True)
class AuditedLedger:
    """A ledger holding the dataset: its URL, what the tests added, and every event read back."""

    url: str
    extras: Extras
    events: list[Event]


def _audited(url: str) -> AuditedLedger:
    extras = fill_ledger(url)
    # Sealed and verified once, as the demo leaves it: the doc's tamper-evidence queries read the seals
    # and the recorded run.
    seal_all(url)
    report = verify_ledger(url)
    assert report.ok, report.to_text()
    return AuditedLedger(url, extras, read_events(url))


@pytest.fixture(scope="session")
def audited_postgresql(_create_postgres_database: Callable[[], str]) -> AuditedLedger:  # noqa: F811
    return _audited(_create_postgres_database())


@pytest.fixture(scope="session")
def audited_sqlite(tmp_path_factory: pytest.TempPathFactory) -> AuditedLedger:
    return _audited(f"sqlite:///{tmp_path_factory.mktemp('audited') / 'ledger.db'}")


@pytest.fixture(params=["postgresql", "sqlite"])
def audited(request: pytest.FixtureRequest) -> AuditedLedger:
    ledger: AuditedLedger = request.getfixturevalue(f"audited_{request.param}")
    return ledger
