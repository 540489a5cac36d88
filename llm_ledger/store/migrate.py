"""Bring a ledger database to a schema revision: Alembic, driven from code with no ``alembic.ini``.

The ``alembic`` command works too (``alembic upgrade head`` from the repository root, with
``LLM_LEDGER_DATABASE_URL`` set); both run the same ``llm_ledger/migrations``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from llm_ledger.store.settings import create_store_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

VERSION_TABLE = "llm_ledger_alembic_version"
"""Named after the ledger so that it can share a database (and a schema) with an application's own Alembic."""


class DowngradeRefusedError(RuntimeError):
    """Raised when a downgrade would destroy recorded events; the database is left as it was."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run(url: str | URL, step: Callable[[Config, str], None], revision: str) -> None:
    engine = create_store_engine(url, poolclass=NullPool)
    try:
        # One transaction for the whole run: on PostgreSQL a failed step leaves the database untouched.
        with engine.begin() as connection:
            step(_config(connection), revision)
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``; creates an SQLite file (and its directory)."""
    _run(url, command.upgrade, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate down to ``revision`` (``"base"`` for nothing); raises ``DowngradeRefusedError`` rather than
    drop events."""
    _run(url, command.downgrade, revision)


def current(url: str | URL) -> str | None:
    """The revision the database is at, ``None`` if it was never migrated."""
    engine = create_store_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision this version of llm-ledger ships."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision
