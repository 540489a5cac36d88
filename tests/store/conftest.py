"""Databases for the store's tests: a real PostgreSQL server and real SQLite files.

PostgreSQL tests never skip: a suite that silently skips its production database proves nothing. Without
a server they fail and say how to get one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from llm_ledger.store import create_store_engine, migrate, normalize_url
from tests.store import databases

_DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

_NO_SERVER = """no PostgreSQL server at {url} ({error}).
The store's tests need one. Either start the local cluster:
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
or point the tests at a server whose user may create databases:
    LLM_LEDGER_TEST_DATABASE_URL=postgresql://user@host:port/db"""


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[Engine]:
    """An AUTOCOMMIT connection to the server's maintenance database, for CREATE/DROP DATABASE."""
    url = normalize_url(os.environ.get("LLM_LEDGER_TEST_DATABASE_URL") or _DEFAULT_SERVER)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 3})
    unreachable = None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        unreachable = exc.orig
    if unreachable is not None:
        engine.dispose()
        pytest.fail(_NO_SERVER.format(url=url.render_as_string(), error=unreachable), pytrace=False)
    yield engine
    engine.dispose()


def _new_database(server: Engine, template: str | None = None) -> str:
    """A database ``llm_ledger_test_<random>`` on ``server`` (empty, or a copy of ``template``), dropped when
    the session ends (``tests/store/databases.py``); its URL."""
    name = f"llm_ledger_test_{uuid.uuid4().hex[:12]}"
    copied = f' TEMPLATE "{template}"' if template is not None else ""
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{copied}'))
    databases.made(server.url, name)
    return _render(server.url.set(database=name))


@pytest.fixture(scope="session")
def _create_postgres_database(_postgres_server: Engine) -> Callable[[], str]:
    """Creates empty databases named ``llm_ledger_test_<random>`` next to the server's, dropped (whatever is
    still connected to them terminated) when the session ends (``tests/store/databases.py``)."""

    return lambda: _new_database(_postgres_server)


@pytest.fixture(scope="session")
def _create_migrated_postgres_database(
    _postgres_server: Engine, _create_postgres_database: Callable[[], str]
) -> Callable[[], str]:
    """Creates databases at the head revision, each a copy of one migrated once (``CREATE DATABASE ...
    TEMPLATE``): a copy takes a few hundredths of a second, running the migrations a half second and more.
    The migrations make nothing outside the database but the cluster's roles, which the first run made."""
    template = _create_postgres_database()
    migrate.upgrade(template)
    template_name = normalize_url(template).database

    return lambda: _new_database(_postgres_server, template_name)


@pytest.fixture(scope="session")
def postgres_url(_create_postgres_database: Callable[[], str]) -> str:
    """The URL of this session's own PostgreSQL database, created empty. ``postgres_migrated_url`` migrates
    it: tests that need a database no other test touches use ``empty_postgres_url``."""
    return _create_postgres_database()


@pytest.fixture(scope="session")
def postgres_migrated_url(postgres_url: str) -> str:
    """``postgres_url`` at the head revision, shared by the whole session (see ``database_url``)."""
    migrate.upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def empty_postgres_url(_create_postgres_database: Callable[[], str]) -> str:
    """A PostgreSQL database of the test's own, never migrated: for tests of the migrations themselves."""
    return _create_postgres_database()


@pytest.fixture
def pg(postgres_migrated_url: str) -> Iterator[Engine]:
    """The shared migrated PostgreSQL database, connected as the superuser that migrated it."""
    engine = create_store_engine(postgres_migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of an SQLite file that does not exist yet, in a directory of the test's own."""
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A database at the head revision, once per dialect.

    SQLite: a new file per test. PostgreSQL: one database for the whole session, because creating and
    migrating one per test is slow, and the table cannot be emptied between tests (it is append-only:
    DELETE and TRUNCATE are rejected). Tests therefore isolate themselves by using tenant and stream ids
    of their own (``unique_tenant_id``), must not assume the table is empty, and insert only rows that
    read back as events (a consumer of ``read_all`` meets every test's rows).
    """
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_migrated_url")
        return url
    migrate.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def unique_tenant_id() -> str:
    """A tenant no other test uses, so that a test sees only its own rows in the shared database."""
    return f"tenant-{uuid.uuid4().hex[:12]}"


LEDGER_ROLES = (
    "llm_ledger_writer",
    "llm_ledger_ingest",
    "llm_ledger_reader",
    "llm_ledger_auditor",
    "llm_ledger_projector",
    "llm_ledger_sealer",
    "llm_ledger_retention",
    "llm_ledger_keyholder",
    "llm_ledger_eraser",
)
"""The ledger's roles (NOLOGIN, made by the migrations) that a deployment grants to its logins."""


@pytest.fixture(scope="session")
def ledger_login(_postgres_server: Engine, postgres_migrated_url: str) -> Iterator[Callable[..., str]]:
    """Makes a LOGIN role that is *not* a superuser, granted exactly the ledger roles named, and returns
    the URL of ``database`` (default: the session's migrated database) as that login: the configuration
    the README recommends for production, where row-level security and grants really apply.

    ``ledger_login("llm_ledger_writer", "llm_ledger_ingest")`` is Focal's writer; a call with no role is
    a login that may only connect. Logins are ``llm_ledger_test_login_<random>`` and are dropped at the
    end of the session (roles are cluster-wide: random names keep concurrent suites apart).
    """
    made: list[str] = []

    def make(*roles: str, database: str | None = None) -> str:
        unknown = sorted(set(roles) - set(LEDGER_ROLES))
        if unknown:
            raise ValueError(f"not a ledger role: {', '.join(unknown)}")
        name = f"llm_ledger_test_login_{uuid.uuid4().hex[:12]}"
        with _postgres_server.connect() as connection:
            connection.execute(text(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'))
            for role in roles:
                connection.execute(text(f'GRANT "{role}" TO "{name}"'))
        made.append(name)
        url = normalize_url(database or postgres_migrated_url).set(username=name, password=None)
        return _render(url)

    yield make
    databases.drop_those_done_with()  # the tests' own copies, in which a login may still own something
    with _postgres_server.connect() as connection:
        for name in made:
            # Waiting (up to 30 s) for each backend to exit: until it has, the temporary tables it made (the
            # store's staging table) still belong to the login, and DROP ROLE fails on them.
            connection.execute(
                text("SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity WHERE usename = :name"),
                {"name": name},
            )
            connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))


@pytest.fixture
def own_ledger_url(_create_migrated_postgres_database: Callable[[], str]) -> str:
    """A migrated PostgreSQL database of the test's own, for the journal tests that write tens of thousands
    of events: in the session's shared database they would slow every later reader (``read_all`` from the
    start pages through them)."""
    return _create_migrated_postgres_database()


@pytest.fixture
def own_writer_url(ledger_login: Callable[..., str], own_ledger_url: str) -> str:
    """Focal's writing login on ``own_ledger_url`` (the README's production advice): not a superuser,
    row-level security applies."""
    return ledger_login("llm_ledger_writer", "llm_ledger_ingest", database=own_ledger_url)
