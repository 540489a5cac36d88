"""The store's database fixtures, for the Agno tests that record into a real ledger (``ledger``)."""

from tests.executor.ledger import ledger
from tests.store.conftest import (
    _create_postgres_database,
    _postgres_server,
    ledger_login,
    postgres_migrated_url,
    postgres_url,
    sqlite_url,
)

__all__ = [
    "_create_postgres_database",
    "_postgres_server",
    "ledger",
    "ledger_login",
    "postgres_migrated_url",
    "postgres_url",
    "sqlite_url",
]
