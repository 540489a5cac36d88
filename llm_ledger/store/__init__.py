"""The append-only event store (PostgreSQL, or an embedded SQLite file), its buffered writer and spool.
See docs/ARCHITECTURE.md for the route of an event from a call to a row, and its threads."""

from llm_ledger.store.dialects import START, Cursor
from llm_ledger.store.errors import (
    ConcurrencyError,
    InvalidEventError,
    StoreError,
    StoreUnavailableError,
    UnreadableEventError,
)
from llm_ledger.store.rows import as_utc
from llm_ledger.store.settings import (
    SUPPORTED_DIALECTS,
    StoreConfigurationError,
    StoreSettings,
    create_store_engine,
    normalize_url,
    shown_url,
)
from llm_ledger.store.store import AppendResult, EventStore
from llm_ledger.store.writer import BufferedWriter, WriterStats

__all__ = [
    "START",
    "SUPPORTED_DIALECTS",
    "AppendResult",
    "BufferedWriter",
    "ConcurrencyError",
    "Cursor",
    "EventStore",
    "InvalidEventError",
    "StoreConfigurationError",
    "StoreError",
    "StoreSettings",
    "StoreUnavailableError",
    "UnreadableEventError",
    "WriterStats",
    "as_utc",
    "create_store_engine",
    "normalize_url",
    "shown_url",
]
