"""The append-only event store (PostgreSQL, or an embedded SQLite file), its buffered writer and spool."""

from llm_ledger.store.settings import (
    SUPPORTED_DIALECTS,
    StoreConfigurationError,
    StoreSettings,
    create_store_engine,
    normalize_url,
)

__all__ = [
    "SUPPORTED_DIALECTS",
    "StoreConfigurationError",
    "StoreSettings",
    "create_store_engine",
    "normalize_url",
]
