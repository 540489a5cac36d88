"""A real ledger behind an executor, for tests of what reaches the store: the buffered writer (the one
that seals drafts and sets unstorable events aside in ``rejected.jsonl``), an ``EventStore`` on
PostgreSQL as the least-privilege writer login the README prescribes, or on SQLite, and ``audit verify``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_ledger.audit import verify_ledger
from llm_ledger.events import Event
from llm_ledger.store import EventStore
from llm_ledger.store.writer import BufferedWriter, WriterStats


@dataclass
class Ledger:
    """Where a test's executions are recorded (``writer`` is the executor's sink), and how to check them."""

    writer: BufferedWriter
    store: EventStore
    audit_url: str
    spool_dir: Path

    def settle(self) -> WriterStats:
        """Everything emitted so far written (or set aside): the writer's counters. (``flush`` is not enough: it
        returns once the events are journaled, before the database has them.)"""
        assert self.writer.wait_stored(timeout=60), "the writer did not store everything within 60 s"
        return self.writer.stats

    def stream(self, stream_id: Any) -> list[Event]:
        return self.store.read_stream(stream_id)

    def verify(self, tenant_id: str) -> Any:
        return verify_ledger(self.audit_url, tenant_id=tenant_id, record=False)

    def rejected(self) -> str:
        path = self.spool_dir / "rejected.jsonl"
        return path.read_text() if path.exists() else ""


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Iterator[Ledger]:
    from llm_ledger.store import migrate

    if request.param == "postgresql":
        audit_url: str = request.getfixturevalue("postgres_migrated_url")
        login: Callable[..., str] = request.getfixturevalue("ledger_login")
        store_url = login("llm_ledger_writer", "llm_ledger_ingest")
    else:
        migrate.upgrade(sqlite_url)
        audit_url = store_url = sqlite_url
    store = EventStore(store_url)
    writer = BufferedWriter(store, tmp_path / "spool", batch_size=50, flush_interval=0.05)
    yield Ledger(writer, EventStore(audit_url), audit_url, tmp_path / "spool")
    writer.close(timeout=30)
    store.close()
