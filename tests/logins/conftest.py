"""A ledger for running every command as the login the README prescribes for it (PostgreSQL), never as a
superuser.

One database of the package's own, owned by a login that is not a superuser: the owner migrates
(``llm-ledger db upgrade``); Focal's writers record through the default writer as ``llm_ledger_writer`` +
``llm_ledger_ingest`` and as ``llm_ledger_writer`` alone; ``llm-ledger project`` (and ``--follow``) runs as
``llm_ledger_projector``; ``audit seal`` as ``llm_ledger_sealer``; ``audit verify`` as
``llm_ledger_auditor``; the dashboard's data source as ``llm_ledger_reader`` bound to a tenant and as
``llm_ledger_auditor``. Commands run as subprocesses of the installed ``llm-ledger``; the dashboard's
queries through ``llm_ledger.dashboard.source`` in this process (no browser).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from llm_ledger.store import create_store_engine
from llm_ledger.store.scoping import (
    AUDITOR_ROLE,
    INGEST_ROLE,
    PROJECTOR_ROLE,
    SEALER_ROLE,
    WRITER_ROLE,
)
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
    ledger_login,
    postgres_migrated_url,
    postgres_url,
)
from tests.store.workload import RECORD_SCRIPT, wait_until_readable_by_cursor

ROOT = Path(__file__).resolve().parents[2]
LLM_LEDGER = str(Path(sys.executable).parent / "llm-ledger")
COMMAND_TIMEOUT = 180.0
"""Generous: two cores shared by several suites; a command that works finishes in seconds."""
EXECUTIONS_PER_TENANT = 12


@dataclass(frozen=True)
class Ledger:
    superuser: str
    """The database as the superuser: only to look at what the logins did."""
    owner: str
    """The database as its owner, a login that is not a superuser: it migrates."""
    login: Callable[..., str]
    """The database as a new login granted exactly the named ledger roles."""
    home: Path

    def run(self, *arguments: str, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``llm-ledger <arguments> --database-url <url>``; with ``check``, a non-zero exit fails the test
        with what the command said."""
        done = subprocess.run(
            [LLM_LEDGER, *arguments, "--database-url", url],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=self.env(),
            check=False,
        )
        if check:
            assert done.returncode == 0, f"llm-ledger {' '.join(arguments)} exited {done.returncode}:\n{done.stderr}"
        return done

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LEDGER_")}
        env.update(AGNO_TELEMETRY="false", LLM_LEDGER_HOME=str(self.home), PYTHONPATH=str(ROOT), **extra)
        # The writers' digest secret, which a writer to PostgreSQL requires (executor.digest_secret).
        env.setdefault("LLM_LEDGER_DIGEST_KEY", os.environ["LLM_LEDGER_DIGEST_KEY"])
        return env

    def wait_until_readable_by_cursor(self) -> None:
        """Until every stored event is below the gap-safe cursor's horizon (no older transaction of the
        cluster still running), so that a follower may read them."""
        engine = create_store_engine(self.superuser, poolclass=NullPool)
        try:
            wait_until_readable_by_cursor(engine)
        finally:
            engine.dispose()

    def count(self, query: str) -> int:
        engine = create_store_engine(self.superuser, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return int(connection.execute(text(query)).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture(scope="package")
def ledger(
    _create_postgres_database: Callable[[], str],  # noqa: F811
    _postgres_server: Engine,  # noqa: F811
    ledger_login: Callable[..., str],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ledger]:
    database = _create_postgres_database()
    owner_url, owner = owned_by_a_login(database, _postgres_server, ledger_login)
    yield Ledger(
        superuser=database,
        owner=owner_url,
        login=lambda *roles: ledger_login(*roles, database=database),
        home=tmp_path_factory.mktemp("home"),
    )
    hand_back(database, owner)


def owned_by_a_login(database: str, server: Engine, make_login: Callable[..., str]) -> tuple[str, str]:
    """``database`` handed to a new login that is not a superuser: its URL as that login, and its name."""
    owner_url = make_login(database=database)
    owner, name = make_url(owner_url).username, make_url(database).database
    assert owner is not None
    with server.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" OWNER TO "{owner}"'))
    return owner_url, owner


def hand_back(database: str, owner: str) -> None:
    """What ``owner`` owns in ``database`` handed to the superuser: the login is dropped at the end of the
    session, before the database, and a role that owns objects cannot be."""
    superuser = create_store_engine(database, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with superuser.connect() as connection:
            connection.execute(text(f'REASSIGN OWNED BY "{owner}" TO CURRENT_USER'))
            connection.execute(text(f'DROP OWNED BY "{owner}"'))
    finally:
        superuser.dispose()


@pytest.fixture(scope="package")
def migrated(ledger: Ledger) -> subprocess.CompletedProcess[str]:
    return ledger.run("db", "upgrade", url=ledger.owner)


@dataclass(frozen=True)
class Recorded:
    tenants: dict[str, tuple[str, ...]]
    """The tenants each writer login recorded, by its roles (``"writer+ingest"``, ``"writer-only"``)."""
    spools: dict[str, Path]


def record(ledger: Ledger, roles: tuple[str, ...], tenants: tuple[str, ...], spool: Path) -> None:
    """``EXECUTIONS_PER_TENANT`` executions of each tenant, and a tool execution after each, in a process
    of their own, as a new login granted ``roles``, spooling to ``spool`` if the database refuses them."""
    subprocess.run(
        [sys.executable, "-c", RECORD_SCRIPT, ",".join(tenants), str(EXECUTIONS_PER_TENANT)],
        check=True,
        timeout=COMMAND_TIMEOUT,
        env=ledger.env(LLM_LEDGER_DATABASE_URL=ledger.login(*roles), LLM_LEDGER_SPOOL_DIR=str(spool)),
    )


@pytest.fixture(scope="package")
def recorded(ledger: Ledger, migrated: subprocess.CompletedProcess[str]) -> Recorded:
    logins = {"writer+ingest": (WRITER_ROLE, INGEST_ROLE), "writer-only": (WRITER_ROLE,)}
    tenants: dict[str, tuple[str, ...]] = {}
    spools: dict[str, Path] = {}
    for name, roles in logins.items():
        tenants[name] = (f"tenant-{uuid.uuid4().hex[:8]}", f"tenant-{uuid.uuid4().hex[:8]}")
        spools[name] = ledger.home / f"spool-{name}"
        record(ledger, roles, tenants[name], spools[name])
    # The projector and the sealer read below the gap-safe cursor's horizon, which any transaction of the
    # cluster holds back (another suite's, on a shared server): wait for it, or they see part of the events.
    ledger.wait_until_readable_by_cursor()
    return Recorded(tenants, spools)


@pytest.fixture(scope="package")
def projected(ledger: Ledger, recorded: Recorded) -> subprocess.CompletedProcess[str]:
    return ledger.run("project", url=ledger.login(PROJECTOR_ROLE))


@pytest.fixture(scope="package")
def sealed(ledger: Ledger, recorded: Recorded) -> subprocess.CompletedProcess[str]:
    return ledger.run("audit", "seal", url=ledger.login(SEALER_ROLE))


@pytest.fixture(scope="package")
def verified(ledger: Ledger, sealed: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    return ledger.run("audit", "verify", url=ledger.login(AUDITOR_ROLE))
