"""Where the ledger lives: configuration read from the environment, in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from llm_ledger.environment import (
    LLM_LEDGER_DATABASE_URL,
    LLM_LEDGER_DURABILITY,
    LLM_LEDGER_HOME,
    LLM_LEDGER_SPOOL_DIR,
    LLM_LEDGER_WRITER,
)
from llm_ledger.store.errors import StoreError

SUPPORTED_DIALECTS = ("postgresql", "sqlite")
DURABILITY_MODES = ("journal", "buffered")
WRITER_KINDS = ("process", "thread")


class StoreConfigurationError(StoreError, ValueError):
    """Raised for a database URL or a directory the store cannot use."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """``LLM_LEDGER_DATABASE_URL`` (default: SQLite at ``$LLM_LEDGER_HOME/ledger.db``, home defaulting to
    ``~/.llm-ledger``), ``LLM_LEDGER_SPOOL_DIR`` (default ``$LLM_LEDGER_HOME/spool``) and
    ``LLM_LEDGER_DURABILITY`` (``journal``, the default: a call returns once its events are journaled;
    ``buffered``: at once, see the README for the window) and ``LLM_LEDGER_WRITER`` (``process``: a writer
    process; ``thread``: the application's own threads; unset: ``process`` for PostgreSQL, ``thread`` for
    the embedded SQLite file)."""

    database_url: str
    spool_dir: Path
    home: Path
    durability: str = "journal"
    writer: str | None = None

    @property
    def writer_kind(self) -> str:
        """``process`` or ``thread``: as asked, or as the database's kind suggests."""
        if self.writer is not None:
            return self.writer
        return "process" if normalize_url(self.database_url).get_backend_name() == "postgresql" else "thread"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreSettings:
        home = _expanded(LLM_LEDGER_HOME.value(environ), LLM_LEDGER_HOME.name)
        url = LLM_LEDGER_DATABASE_URL.get(environ) or f"sqlite:///{home / 'ledger.db'}"
        spool = _expanded(LLM_LEDGER_SPOOL_DIR.get(environ) or str(home / "spool"), LLM_LEDGER_SPOOL_DIR.name)
        durability = LLM_LEDGER_DURABILITY.value(environ)
        if durability not in DURABILITY_MODES:
            raise StoreConfigurationError(
                f"LLM_LEDGER_DURABILITY={durability!r} is not one of {', '.join(DURABILITY_MODES)}"
            )
        writer = LLM_LEDGER_WRITER.get(environ) or None
        if writer is not None and writer not in WRITER_KINDS:
            raise StoreConfigurationError(f"LLM_LEDGER_WRITER={writer!r} is not one of {', '.join(WRITER_KINDS)}")
        return cls(database_url=url, spool_dir=spool, home=home, durability=durability, writer=writer)


def _expanded(path: str, where: str) -> Path:
    """``path`` with its ``~`` or ``~user`` expanded; a user without a home is named, not a RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise StoreConfigurationError(f"{where}: {path!r} starts with a ~ whose home directory is not known") from None


_PASSWORD = re.compile(r"(//[^/?#@]*?:)[^/?#@]*@")


def _without_password(text: str) -> str:
    """A URL too broken to parse (so SQLAlchemy cannot hide its password) with its password hidden."""
    return _PASSWORD.sub(r"\1***@", text)


def shown_url(url: str | URL) -> str:
    """A ledger URL as it may be printed or logged: normalized, its password hidden."""
    return normalize_url(url).render_as_string(hide_password=True)


def normalize_url(url: str | URL) -> URL:
    """The SQLAlchemy URL for a ledger database, with the driver we ship (psycopg 3 for PostgreSQL)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreConfigurationError(f"not a database URL: {_without_password(str(url))!r} ({exc})") from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise StoreConfigurationError(
        f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}: "
        f"llm-ledger stores events in {' or '.join(SUPPORTED_DIALECTS)}"
    )


def sqlite_file(url: str | URL) -> Path | None:
    """The file an SQLite URL names; ``None`` for PostgreSQL, an in-memory database or a ``file:`` URI."""
    parsed = normalize_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return _expanded(database, shown_url(parsed))


def directory_error(url: str | URL, exc: OSError) -> StoreConfigurationError:
    """What to raise when the directory of the SQLite file at ``url`` cannot be created (``create_store_engine``'s
    ``OSError``)."""
    return StoreConfigurationError(f"{shown_url(url)}: cannot create {exc.filename}: {exc.strerror}")


def create_store_engine(url: str | URL, **options: object) -> Engine:
    """An engine for the ledger. SQLite files get their directory created, WAL mode and a busy timeout
    (the writer and readers share the file); PostgreSQL gets a pool that checks connections first."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # Python's sqlite3 opens a transaction only before INSERT/UPDATE/DELETE, so DDL (a migration's
            # DROP TABLE) ran outside it and was kept when a later step failed. Taking over BEGIN makes
            # every SQLAlchemy transaction a real one (SQLAlchemy's documented pysqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
            connection.exec_driver_sql("BEGIN")

        return engine
    options.setdefault("pool_pre_ping", True)
    # Without these, a server that drops packets (rather than refusing them) or a half-open
    # connection would hang the writer's thread: connect within 3 s, and let the kernel give up on a
    # connection whose data goes unacknowledged for 15 s or whose peer stops answering keepalives.
    options.setdefault(
        "connect_args",
        {
            "connect_timeout": 3,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 15_000,
        },
    )
    return create_engine(parsed, **options)
