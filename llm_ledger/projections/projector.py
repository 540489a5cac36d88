"""The projector: events past the checkpoint, folded into the read models, checkpoint saved in the same
transaction. Any number may run at once; one works on a batch while the others wait for its lock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from llm_ledger.projections.costs import Pricing
from llm_ledger.projections.database import Checkpoint, ProjectionDatabase
from llm_ledger.projections.prices import PriceTable
from llm_ledger.projections.rollup import EdgeOrigin, Folder
from llm_ledger.store import EventStore, StoreUnavailableError
from llm_ledger.store.dialects import Cursor
from llm_ledger.store.scoping import PROJECTOR_ROLE

logger = logging.getLogger(__name__)

PROJECTION_NAME = "rollups"
Progress = Callable[[int], None]
"""Called with the number of events each applied batch held."""


@dataclass(frozen=True, slots=True)
class CatchUpResult:
    """What one catch-up did: ``events`` applied in ``batches``; ``caught_up`` when nothing was left."""

    events: int
    batches: int
    cursor: Cursor
    caught_up: bool
    busy: bool = False
    """Another projector held the lock and the wait was bounded."""


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    cursor: Cursor
    events_applied: int
    updated_at: datetime | None
    pending: int
    """Stored events not yet applied (an estimate on PostgreSQL, where commit order is not position order)."""


class Projector:
    """Keeps the read models of one ledger database up to date.

    ``batch_size`` events go in per transaction: larger batches fold more events into each read-model
    row (a minute row absorbs every execution of its minute) and cost fewer round trips.
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        prices: PriceTable | None = None,
        batch_size: int = 5_000,
        name: str = PROJECTION_NAME,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._store = EventStore(url_or_engine, role=PROJECTOR_ROLE)
        self._database = ProjectionDatabase(self._store.backend, name)
        self._folder = Folder(Pricing(prices or PriceTable.from_env()), self._edges_of)
        self._connection: Connection | None = None
        self._last_saved: Cursor | None = None
        self.batch_size = batch_size

    @property
    def engine(self) -> Engine:
        return self._store.engine

    def close(self) -> None:
        self._store.close()

    # --- running --------------------------------------------------------------------------------------

    def apply_batch(self, wait_seconds: float | None = None) -> tuple[int, Cursor] | None:
        """Apply the next batch in one transaction: the number of events applied (0 when there were
        none) and the new cursor; ``None`` when another projector kept the lock past ``wait_seconds``."""
        with self._store.transaction() as connection:
            checkpoint = self._database.lock_checkpoint(connection, wait_seconds)
            if checkpoint is None:
                return None
            return self._apply(connection, checkpoint)

    def _apply(self, connection: Connection, checkpoint: Checkpoint) -> tuple[int, Cursor]:
        if checkpoint.cursor != self._last_saved:
            # Another projector applied batches since this one last did: what this one remembers of
            # executions still open may lack their later fallbacks.
            self._folder.forget()
        records, cursor = self._database.read_events(connection, checkpoint.cursor, self.batch_size)
        if not records:
            self._last_saved = checkpoint.cursor
            return 0, checkpoint.cursor
        self._connection = connection
        try:
            delta = self._folder.fold(records)
        finally:
            self._connection = None
        self._database.apply(connection, delta)
        self._database.save_checkpoint(connection, cursor, checkpoint.events_applied + len(records))
        self._last_saved = cursor
        return len(records), cursor

    def _edges_of(self, tenant_id: str, stream_id: str) -> list[EdgeOrigin]:
        assert self._connection is not None, "edges are looked up while a batch is applied"
        return self._database.fallback_edges(self._connection, tenant_id, stream_id)

    def catch_up(
        self, *, timeout: float | None = None, wait_seconds: float | None = None, progress: Progress | None = None
    ) -> CatchUpResult:
        """Apply batches until none is left or ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        applied = batches = 0
        cursor = Cursor()
        while True:
            outcome = self.apply_batch(wait_seconds)
            if outcome is None:
                return CatchUpResult(applied, batches, cursor, caught_up=False, busy=True)
            count, cursor = outcome
            if count == 0:
                return CatchUpResult(applied, batches, cursor, caught_up=True)
            applied += count
            batches += 1
            if progress is not None:
                progress(count)
            if count < self.batch_size:
                return CatchUpResult(applied, batches, cursor, caught_up=True)
            if deadline is not None and time.monotonic() >= deadline:
                return CatchUpResult(applied, batches, cursor, caught_up=False)

    def follow(
        self, *, poll_seconds: float = 1.0, stop: threading.Event | None = None, progress: Progress | None = None
    ) -> None:
        """Catch up, then keep applying new events as they come, until ``stop`` is set. A database outage
        is logged once and waited out."""
        if not 0 < poll_seconds <= threading.TIMEOUT_MAX:  # 0 or less would busy-loop, NaN never ends a wait
            raise ValueError(f"poll_seconds must be a positive number of seconds, got {poll_seconds!r}")
        stop = stop or threading.Event()
        unavailable = False
        while not stop.is_set():
            try:
                result = self.catch_up(progress=progress)
            except StoreUnavailableError as exc:
                if not unavailable:
                    logger.warning("projector: %s; retrying every %.0f s", exc, poll_seconds)
                unavailable = True
                stop.wait(poll_seconds)
                continue
            if unavailable:
                logger.warning("projector: the event store is reachable again")
                unavailable = False
            if result.caught_up:
                stop.wait(poll_seconds)

    def rebuild(self, *, progress: Progress | None = None) -> CatchUpResult:
        """Empty the read models and apply every event again."""
        with self._store.transaction() as connection:
            if self._database.lock_checkpoint(connection, None) is None:
                raise RuntimeError("the projection lock could not be taken")
            self._database.empty(connection)
        self._folder.forget()
        self._last_saved = Cursor()
        return self.catch_up(progress=progress)

    def is_built_by_an_older_projector(self) -> bool:
        """Whether the read models hold rows an older projector made under rules since changed (mocks
        named after a provider counted under ``mock``): figures mixed until ``rebuild``. A read of the
        step rows, not part of ``status``, which the dashboard asks for at every page."""
        with self._store.transaction() as connection:
            return self._database.counts_mocks_under_mock(connection)

    def status(self) -> ProjectionStatus:
        with self._store.transaction() as connection:
            checkpoint = self._database.read_checkpoint(connection)
            cursor = checkpoint.cursor if checkpoint else Cursor()
            pending = self._database.pending_events(connection, cursor)
        if checkpoint is None:
            return ProjectionStatus(cursor, 0, None, pending)
        return ProjectionStatus(cursor, checkpoint.events_applied, checkpoint.updated_at, pending)
