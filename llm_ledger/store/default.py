"""The process-wide buffered writer that executors built without ``sink=`` record to."""

from __future__ import annotations

import atexit
import logging
import threading
from pathlib import Path

from llm_ledger.store.process_writer import ProcessWriter
from llm_ledger.store.settings import StoreConfigurationError, StoreSettings, normalize_url
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter

log = logging.getLogger("llm_ledger.store")

_lock = threading.Lock()
_writers: list[BufferedWriter | ProcessWriter] = []


def make_default_writer() -> BufferedWriter | ProcessWriter:
    """A writer to ``LLM_LEDGER_DATABASE_URL`` (default: the embedded SQLite file), journaling to
    ``LLM_LEDGER_SPOOL_DIR``. The embedded SQLite file is migrated on first use, in the writer's
    thread; a PostgreSQL database is migrated by its operator (``llm-ledger db upgrade``).

    ``LLM_LEDGER_WRITER`` chooses where the sealing, journaling and storing run: ``process`` (the default
    for PostgreSQL: a writer process this one starts and supervises, ``process_writer.py``, so that they do
    not compete with the application for its interpreter) or ``thread`` (the default for the embedded
    SQLite file, a local ledger without the load that would pay for a second process).

    Raises StoreConfigurationError, naming the variable and the path, when the spool directory (or the
    embedded database's directory) cannot be created or written: without its journal the writer could
    not keep the promise that a call that returned is on record, so it refuses to start rather than
    run without it (a disk that fills up later is another matter: the writer degrades, loudly)."""
    settings = StoreSettings.from_env()
    url = normalize_url(settings.database_url)
    embedded = url.get_backend_name() == "sqlite"
    try:
        store = EventStore(url)
    except OSError as exc:
        raise _unusable("LLM_LEDGER_HOME", Path(url.database or settings.home).parent, exc) from None

    def prepare() -> None:
        if embedded:
            from llm_ledger.store.migrate import upgrade

            upgrade(url)

    writer: BufferedWriter | ProcessWriter
    try:
        if settings.writer_kind == "process":
            store.close()  # the writer process makes its own
            writer = ProcessWriter(
                url.render_as_string(hide_password=False), settings.spool_dir, durability=settings.durability
            )
        else:
            writer = BufferedWriter(store, settings.spool_dir, on_start=prepare, durability=settings.durability)
    except OSError as exc:
        store.close()
        variable = "LLM_LEDGER_HOME" if settings.spool_dir == settings.home / "spool" else "LLM_LEDGER_SPOOL_DIR"
        raise _unusable(variable, settings.spool_dir, exc) from None
    with _lock:
        if not _writers:
            atexit.register(close_default_writers)
        _writers.append(writer)
    return writer


def _unusable(variable: str, path: Path, exc: OSError) -> StoreConfigurationError:
    reason = exc.strerror or str(exc)
    return StoreConfigurationError(
        f"{variable}: the ledger cannot use {path} ({reason}{': ' + exc.filename if exc.filename else ''}); "
        f"set {variable} to a directory this process can create and write"
    )


def close_default_writers(timeout: float = 5.0) -> None:
    """Flush (or journal) and stop the default writers; registered to run at interpreter exit."""
    with _lock:
        writers, _writers[:] = list(_writers), []
    for writer in writers:
        stats = writer.close(timeout)
        if stats.queued:
            # The journaling thread did not finish in time (a disk that hangs): these die with the process.
            log.error(
                "llm-ledger: %d event(s) were still in memory at exit, not journaled (the journal in %s did not "
                "take them in time): they are lost",
                stats.queued,
                writer.spool.directory,
            )
        if stats.lost or stats.memory_only:
            log.error(
                "llm-ledger: %d event(s) were lost (the journal in %s could not take them and the event store "
                "could not be reached)",
                stats.lost,
                writer.spool.directory,
            )
        if not writer.is_stored:
            log.warning(
                "llm-ledger: the event store did not take every event before exit; they are in the journal in "
                "%s and are written at the next start",
                writer.spool.directory,
            )
