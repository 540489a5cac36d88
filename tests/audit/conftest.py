"""Sealed ledgers to verify and to tamper with, on PostgreSQL and SQLite.

A workload recorded by the real executor on ``mock/`` models is stored and sealed once per dialect (two
seals per tenant, signed, the first cutting through streams) into a template; every test gets a copy of
its own (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a file copy on SQLite), since tampering is for
keeps. ``Ledger.tamper`` runs statements as the database's superuser with the append-only triggers out of
the way, as an attacker with that power would; the product's own commands run as the least-privilege logins
the README prescribes (``Ledger.sealer_url``, ``Ledger.auditor_url``: on PostgreSQL, logins granted only
``llm_ledger_sealer`` or only ``llm_ledger_auditor``).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, make_url, select, text

from llm_ledger.audit import AuditReport, Seal, SigningKey, seal_ledger, verify_ledger
from llm_ledger.audit.schema import AUDIT_TABLES
from llm_ledger.events import Event
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.schema import events
from tests.projections import workload
from tests.store import databases
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
    empty_postgres_url,
    ledger_login,
    postgres_migrated_url,
    postgres_url,
    sqlite_url,
    unique_tenant_id,
)

TENANTS = ("audit-acme", "audit-globex")
EXECUTIONS = 100  # enough that whole executions (not only tool executions) start after the first seal


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="session")
def recorded() -> list[Event]:
    """A workload's events in emission order (streams interleaved), over twelve hours."""
    return workload.generate(TENANTS, EXECUTIONS, spread=timedelta(hours=12), seed=3)


@pytest.fixture(params=["postgresql", "sqlite"])
def unmigrated_url(request: pytest.FixtureRequest) -> str:
    """An empty database of the test's own, not migrated, once per dialect."""
    url: str = request.getfixturevalue("empty_postgres_url" if request.param == "postgresql" else "sqlite_url")
    return url


def store_events(url: str, recorded: list[Event]) -> None:
    store = EventStore(url)
    try:
        store.append(recorded)
    finally:
        store.close()


def wait_until_sealable(url: str) -> None:
    """Wait until every stored event can be sealed. On PostgreSQL a seal stops short of the oldest running
    transaction of the whole cluster (``pg_snapshot_xmin``), and other tests' databases share the cluster."""
    engine = create_store_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            return
        query = text(f"SELECT COALESCE(MAX(tx_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM {events.name}")
        for _ in range(1_200):
            with engine.connect() as connection:
                if connection.execute(query).scalar_one():
                    return
            time.sleep(0.05)
        raise AssertionError("a transaction of the cluster stayed open for a minute: nothing after it can be sealed")
    finally:
        engine.dispose()


def seal_all(url: str, signing_key: SigningKey | None = None) -> list[Seal]:
    """One seal per tenant over everything stored so far."""
    wait_until_sealable(url)
    return seal_ledger(url, signing_key=signing_key)


def build_sealed(url: str, recorded: list[Event], signing_key: SigningKey) -> None:
    """Migrate, then store and seal the first 60% of the events, then the rest: the first seal ends in the
    middle of some streams."""
    migrate.upgrade(url)
    cut = len(recorded) * 3 // 5
    store_events(url, recorded[:cut])
    seal_all(url, signing_key)
    store_events(url, recorded[cut:])
    seal_all(url, signing_key)


@pytest.fixture(scope="session")
def _postgres_template(
    _create_postgres_database: Callable[[], str],  # noqa: F811
    recorded: list[Event],
    signing_key: SigningKey,
) -> str:
    url = _create_postgres_database()
    build_sealed(url, recorded, signing_key)
    return url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory, recorded: list[Event], signing_key: SigningKey) -> Path:
    path = tmp_path_factory.mktemp("audit-template") / "ledger.db"
    build_sealed(f"sqlite:///{path}", recorded, signing_key)
    return path


@pytest.fixture(scope="session")
def _audit_logins(ledger_login: Callable[..., str]) -> tuple[str, str]:  # noqa: F811
    """The user names of a login granted only ``llm_ledger_sealer`` and of one granted only
    ``llm_ledger_auditor`` (roles are cluster-wide: they reach every test's database)."""
    sealer = make_url(ledger_login("llm_ledger_sealer")).username
    auditor = make_url(ledger_login("llm_ledger_auditor")).username
    assert sealer and auditor
    return sealer, auditor


def as_login(url: str, login: str) -> str:
    return make_url(url).set(username=login, password=None).render_as_string(hide_password=False)


@dataclass
class Ledger:
    """A sealed ledger of the test's own, the power of its superuser (``url``, ``engine``), and the URLs the
    sealer and the auditor use (least-privilege logins on PostgreSQL; the file itself on SQLite)."""

    url: str
    engine: Engine
    sealer_url: str
    auditor_url: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def verify(self, **options: Any) -> AuditReport:
        return verify_ledger(self.auditor_url, record=False, **options)

    def seal(self, signing_key: SigningKey | None = None, **options: Any) -> list[Seal]:
        """Seal as the sealer login, once every stored event can be sealed."""
        wait_until_sealable(self.url)
        return seal_ledger(self.sealer_url, signing_key=signing_key, **options)

    def tamper(self, change: Callable[[Connection], object]) -> None:
        """Run ``change`` with every append-only trigger disabled (PostgreSQL, as the superuser) or dropped
        (SQLite)."""
        tables = [events.name, *(table.name for table in AUDIT_TABLES)]
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                for table in tables:
                    connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER ALL"))
            else:
                names = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
                for name in list(names):
                    connection.execute(text(f"DROP TRIGGER {name}"))
            change(connection)

    def rows(self, *conditions: Any) -> list[Any]:
        query = select(events).where(*conditions).order_by(events.c.stream_id, events.c.stream_position)
        with self.engine.connect() as connection:
            return list(connection.execute(query))

    def complete_stream(self, tenant_id: str = TENANTS[0], min_events: int = 4, skip: int = 0) -> list[Any]:
        """The rows of a stream that starts, ends with a terminal event and has at least ``min_events``
        events, in position order (``skip`` picks a later one)."""
        streams: dict[str, list[Any]] = {}
        for row in self.rows(events.c.tenant_id == tenant_id):
            streams.setdefault(row.stream_id, []).append(row)
        found = [
            rows
            for rows in streams.values()
            if len(rows) >= min_events and rows[-1].event_type in ("ExecutionSucceeded", "ExecutionFailed")
        ]
        return found[skip]


@contextmanager
def _copy_of_template(dialect: str, request: pytest.FixtureRequest, tmp_path: Path, server: Engine) -> Iterator[Ledger]:
    if dialect == "postgresql":
        template_url: str = request.getfixturevalue("_postgres_template")
        template = template_url.rsplit("/", 1)[1]
        name = f"llm_ledger_audit_{uuid.uuid4().hex[:12]}"
        with server.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        url = template_url.rsplit("/", 1)[0] + f"/{name}"
    else:
        path = tmp_path / "ledger.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
    engine = create_store_engine(url)
    if dialect == "postgresql":
        sealer, auditor = request.getfixturevalue("_audit_logins")
        logins = as_login(url, sealer), as_login(url, auditor)
    else:
        logins = url, url
    try:
        yield Ledger(url, engine, *logins)
    finally:
        engine.dispose()
        if dialect == "postgresql":
            databases.done_with(server.url, name)  # dropped with others: each drop waits for a checkpoint


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _postgres_server: Engine,  # noqa: F811
) -> Iterator[Ledger]:
    """A copy of the sealed template, of the test's own, once per dialect."""
    with _copy_of_template(request.param, request, tmp_path, _postgres_server) as copy:
        yield copy


@pytest.fixture
def postgres_ledger(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _postgres_server: Engine,  # noqa: F811
) -> Iterator[Ledger]:
    """A copy of the sealed PostgreSQL template, for what only PostgreSQL has (roles, row-level security)."""
    with _copy_of_template("postgresql", request, tmp_path, _postgres_server) as copy:
        yield copy


@pytest.fixture
def sqlite_ledger(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _postgres_server: Engine,  # noqa: F811
) -> Iterator[Ledger]:
    """A copy of the sealed SQLite template, for what only SQLite's column can hold (a payload that is no JSON)."""
    with _copy_of_template("sqlite", request, tmp_path, _postgres_server) as copy:
        yield copy
