"""The process-wide buffered writer that executors built without ``sink=`` record to."""

from __future__ import annotations

import atexit
import logging
import threading

from llm_ledger.store.settings import StoreSettings, normalize_url
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter

log = logging.getLogger("llm_ledger.store")

_lock = threading.Lock()
_writers: list[BufferedWriter] = []


def make_default_writer() -> BufferedWriter:
    """A writer to ``LLM_LEDGER_DATABASE_URL`` (default: the embedded SQLite file), spooling to
    ``LLM_LEDGER_SPOOL_DIR``. The embedded SQLite file is migrated on first use, in the writer's
    thread; a PostgreSQL database is migrated by its operator (``llm-ledger db upgrade``)."""
    settings = StoreSettings.from_env()
    url = normalize_url(settings.database_url)
    store = EventStore(url)

    def prepare() -> None:
        if url.get_backend_name() == "sqlite":
            from llm_ledger.store.migrate import upgrade

            upgrade(url)

    writer = BufferedWriter(store, settings.spool_dir, on_start=prepare)
    with _lock:
        if not _writers:
            atexit.register(close_default_writers)
        _writers.append(writer)
    return writer


def close_default_writers(timeout: float = 5.0) -> None:
    """Flush (or spool) and stop the default writers; registered to run at interpreter exit."""
    with _lock:
        writers, _writers[:] = list(_writers), []
    for writer in writers:
        stats = writer.close(timeout)
        if stats.queued:
            log.error("llm-ledger: %d events could not be written or spooled before exit", stats.queued)
