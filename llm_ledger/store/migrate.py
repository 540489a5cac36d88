"""Bring a ledger database to a schema revision: Alembic, driven from code with no ``alembic.ini``.

The ``alembic`` command works too (``alembic upgrade head`` from the repository root, with
``LLM_LEDGER_DATABASE_URL`` set); both run the same ``llm_ledger/migrations``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import DatabaseError, DBAPIError, ProgrammingError
from sqlalchemy.pool import NullPool

from llm_ledger.store.errors import StoreError, StoreUnavailableError
from llm_ledger.store.settings import (
    StoreConfigurationError,
    create_store_engine,
    directory_error,
    normalize_url,
    shown_url,
    sqlite_file,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

VERSION_TABLE = "llm_ledger_alembic_version"
"""Named after the ledger so that it can share a database (and a schema) with an application's own Alembic."""


UPGRADE_COMMAND = "llm-ledger db upgrade"

# Alembic's relative targets (+1, -2, head-1, 0003+1) are resolved against the database's revision, so
# they can only be checked while migrating; every other target is checked before anything is opened.
_RELATIVE = re.compile(r"[+-]\d+$")
_INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE of "permission denied"


class DowngradeRefusedError(StoreError, RuntimeError):
    """Raised when a downgrade would destroy recorded events; the database is left as it was."""


class RevisionError(StoreError, ValueError):
    """Raised for a migration target that does not exist or cannot be reached from the database's
    revision; nothing was changed."""


class RevisionUnreadableError(StoreConfigurationError):
    """Raised when the login may not read the version table: a ledger migrated before revision 0006 (which
    lets every ledger role read it), or a login granted no ledger role."""


class NoLedgerError(StoreError):
    """Raised when there is no ledger at a URL: a missing SQLite file (which is not created), or a
    database that was never migrated."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def check_revision(revision: str) -> None:
    """Raise ``RevisionError`` unless ``revision`` names a migration this version ships (or is relative)."""
    if _RELATIVE.search(revision):
        return
    try:
        if not revision.strip():
            raise CommandError("an empty revision names no migration")
        ScriptDirectory.from_config(_config()).get_revisions(revision)
    except CommandError as exc:
        raise RevisionError(f"revision {revision!r}: {exc} (known: {', '.join(known_revisions())})") from None


def known_revisions() -> list[str]:
    """``base``, every revision oldest first, and ``head``: what ``db upgrade`` and ``downgrade`` accept."""
    scripts = ScriptDirectory.from_config(_config())
    return ["base", *reversed([script.revision for script in scripts.walk_revisions()]), "head"]


@contextmanager
def _connected(engine: Engine) -> Iterator[Connection]:
    """A connection; a database that cannot be reached (or opened) is a ``StoreUnavailableError``."""
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise StoreUnavailableError(f"{shown_url(engine.url)} cannot be reached: {exc.orig}") from None
    with connection:
        yield connection


def _run(url: str | URL, step: Callable[[Config, str], None], revision: str) -> None:
    check_revision(revision)
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreConfigurationError(
            f"{shown_url(parsed)} is an in-memory database, gone when the command ends: name a file"
            " (sqlite:///path/to/ledger.db)"
        )
    path = sqlite_file(url)
    if path is not None and path.is_dir():  # SQLite's own word for it is "unable to open database file"
        raise StoreConfigurationError(f"{path} is a directory: name the ledger's file in it, e.g. {path / 'ledger.db'}")
    try:
        engine = create_store_engine(url, poolclass=NullPool)
    except OSError as exc:  # the SQLite file's directory
        raise directory_error(url, exc) from None
    try:
        # One transaction for the whole run: on PostgreSQL a failed step leaves the database untouched.
        with _connected(engine) as connection, connection.begin():
            step(_config(connection), revision)
    except CommandError as exc:  # a relative target out of range, or a downgrade "up"
        raise RevisionError(f"revision {revision!r}: {exc}") from None
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``; creates an SQLite file (and its directory).
    Raises ``RevisionError`` (before creating anything) for an unknown revision."""
    _run(url, command.upgrade, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate down to ``revision`` (``"base"`` for nothing); raises ``DowngradeRefusedError`` rather than
    drop events, and ``NoLedgerError`` (creating nothing) when there is no ledger at ``url``."""
    require_ledger(url)
    _run(url, command.downgrade, revision)


def current(url: str | URL) -> str | None:
    """The revision the database is at, ``None`` if it was never migrated (or is an SQLite file that does not
    exist: it is not created). Raises ``StoreUnavailableError`` when the database cannot be reached, and
    ``RevisionUnreadableError`` when the login may not read the revision."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    engine = create_store_engine(url, poolclass=NullPool)
    try:
        with _connected(engine) as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            try:
                return context.get_current_revision()
            except ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
                    raise
                raise RevisionUnreadableError(
                    f"{shown_url(url)}: this login may not read the schema revision ({VERSION_TABLE}): the"
                    " ledger is older than revision 0006, which lets every ledger role read it (run"
                    f" `{UPGRADE_COMMAND}` as the database's owner), or the login holds no ledger role"
                ) from None
    finally:
        engine.dispose()


def require_ledger(url: str | URL) -> None:
    """Raise ``NoLedgerError`` unless there is a ledger at ``url`` (creating nothing), ``StoreUnavailableError``
    when the database cannot be reached. Whether its schema is new enough is each command's own check."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        state = "no such file" if not path.exists() else "not a file"
        raise NoLedgerError(
            f"there is no ledger at {path} ({state}): create one with `{UPGRADE_COMMAND}`, or record a demo"
            " workload into it with `llm-ledger demo` (same --database-url or LLM_LEDGER_DATABASE_URL)"
        )
    # An SQLite file is looked at through a plain engine: the store's sets WAL mode on connecting, which
    # would write to an empty file or to another application's database before it is known to be a ledger.
    engine = (
        create_store_engine(url, poolclass=NullPool)
        if path is None
        else create_engine(normalize_url(url), poolclass=NullPool)
    )
    try:
        with _connected(engine) as connection:
            # The catalog, not the version table: every login may look at the one, not every role reads the other.
            migrated = inspect(connection).has_table(VERSION_TABLE)
    except DatabaseError as exc:
        if path is None:
            raise
        raise NoLedgerError(f"there is no ledger at {path}: {exc.orig}") from None  # "file is not a database"
    finally:
        engine.dispose()
    if not migrated:
        raise NoLedgerError(
            f"there is no ledger in {shown_url(url)}: it was never migrated; create one with `{UPGRADE_COMMAND}`"
            " (same --database-url or LLM_LEDGER_DATABASE_URL)"
        )


def head() -> str:
    """The newest revision this version of llm-ledger ships."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision
