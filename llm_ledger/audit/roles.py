"""The audit's database: an engine on one with the audit tables, and transactions scoped to the ledger role
that may do the work (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, ProgrammingError

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.audit.schema import seals
from llm_ledger.store import StoreUnavailableError, create_store_engine, shown_url
from llm_ledger.store.scoping import scope_transaction


@contextmanager
def scoped_connection(engine: Engine, role: str) -> Iterator[Connection]:
    """A transaction seeing every tenant as ``role``; a login that cannot take the role is a configuration
    error naming the grant it needs."""
    with engine.begin() as connection:
        try:
            scope_transaction(connection, None, role)
        except ProgrammingError as exc:
            raise AuditConfigurationError(
                f"this login cannot act as {role} ({exc.orig}): run `GRANT {role} TO <login>` as an administrator"
            ) from None
        yield connection


def require_audit_tables(engine: Engine) -> None:
    """Raise unless the database answers (StoreUnavailableError) and has the audit tables (migration 0005)."""
    where = shown_url(engine.url)
    try:
        with engine.connect() as connection:
            has_tables = inspect(connection).has_table(seals.name)
    except OperationalError as exc:
        raise StoreUnavailableError(f"{where} cannot be reached: {exc.orig}") from exc
    if not has_tables:
        raise AuditConfigurationError(f"{where} has no audit tables: run llm-ledger db upgrade")


@contextmanager
def audit_engine(database_url: str | URL | Engine) -> Iterator[Engine]:
    """An engine on a database with the audit tables (``require_audit_tables``); one this made from a URL is
    disposed of at the end, a given engine is left to its owner."""
    engine = database_url if isinstance(database_url, Engine) else create_store_engine(database_url)
    try:
        require_audit_tables(engine)
        yield engine
    finally:
        if engine is not database_url:
            engine.dispose()
