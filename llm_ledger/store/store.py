"""``EventStore``: append and read the events table. Every SQL statement of the store is here or in
``dialects``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy import Connection, Engine, RowMapping, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError

from llm_ledger.events import ChainReport, Event, EventDraft, verify_chain
from llm_ledger.store import partitions
from llm_ledger.store.content_keys import (
    KeyLookup,
    erased_keys,
    is_key_id,
    keys_of_rows,
    read_keys,
    store_keys,
    without_keys,
)
from llm_ledger.store.dialects import START, Backend, Cursor, DirectCopyConflict, backend_for
from llm_ledger.store.errors import ConcurrencyError, StoreUnavailableError
from llm_ledger.store.rows import CONTENT_KEY, event_to_row, row_to_event, row_to_record
from llm_ledger.store.schema import READ_COLUMNS, events
from llm_ledger.store.scoping import KEYHOLDER_ROLE, WRITER_ROLE
from llm_ledger.store.settings import create_store_engine

Appendable = Event | EventDraft | Mapping[str, Any]

log = logging.getLogger("llm_ledger.store")

PARTITIONS_EVERY = 24 * 3600.0
"""Seconds between the writer's calls of ``ensure_partitions`` once one succeeded: months are created 3 ahead,
so a day late changes nothing."""
PARTITIONS_RETRY = 600.0
"""Seconds before the next call after one failed (an outage, a lock not granted within its timeout)."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: ``stored`` new events, ``duplicates`` already there (same event id)."""

    stored: int
    duplicates: int


class EventStore:
    """The append-only event store on PostgreSQL or SQLite.

    ``tenant_id`` and ``role`` scope every transaction (PostgreSQL row-level security, applied with
    ``set_config(..., true)`` so it ends with the transaction); without them the connection's own
    rights apply (the migrating superuser sees everything).
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        tenant_id: str | None = None,
        role: str | None = None,
    ) -> None:
        self.engine = url_or_engine if isinstance(url_or_engine, Engine) else create_store_engine(url_or_engine)
        self._owns_engine = not isinstance(url_or_engine, Engine)
        self.backend: Backend = backend_for(self.engine.dialect.name)
        self.tenant_id = tenant_id
        self.role = role
        self._partitions_due = 0.0  # time.monotonic() of the next maintain_partitions call that does something
        self.keys_skipped = 0
        """Data keys not stored because their session or subject was erased after they were made (logged)."""

    def scoped(self, *, tenant_id: str | None = None, role: str | None = None) -> EventStore:
        """The same store (and engine) seen as one tenant and/or one role."""
        return EventStore(self.engine, tenant_id=tenant_id, role=role)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def transaction(self, *, scoped: bool = True) -> Iterator[Connection]:
        """A transaction scoped to this store's tenant and role (unless it scopes itself: ``scoped=False``);
        database outages become StoreUnavailableError."""
        try:
            with self.engine.begin() as connection:
                if scoped:
                    self.backend.scope(connection, self.tenant_id, self.role)
                yield connection
        except (OperationalError, SAInterfaceError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if _is_unreachable(exc):
                raise StoreUnavailableError(f"the event store cannot be reached: {getattr(exc, 'orig', exc)}") from exc
            raise

    # --- writing --------------------------------------------------------------------------------

    def append(self, batch: Sequence[Appendable]) -> AppendResult:
        """Store a batch in one statement: all of it or, on any error, none of it.

        Idempotent by event id (an event already stored is skipped); a different event at a taken
        ``(stream_id, stream_position)`` raises ConcurrencyError; an event that cannot be stored
        raises InvalidEventError naming it.
        """
        return self.append_rows([event_to_row(item, index) for index, item in enumerate(batch)])

    def append_rows(self, rows: list[dict[str, Any]], *, direct: bool = True) -> AppendResult:
        """``append`` for rows already checked by ``rows.event_to_row`` (``direct=False``: never the direct
        COPY, for a batch known to conflict)."""
        if not rows:
            return AppendResult(0, 0)
        keys = keys_of_rows(rows)  # stored in the events' transaction: a ciphertext never lands without its key
        rows = without_keys(rows)
        # Row-level security only lets a transaction insert the tenant it is scoped to, under a ledger role
        # taken per transaction and under a login granted one alike (the recommended configuration; the
        # store does not ask which it is): a batch of several tenants is inserted one tenant at a time, in
        # one transaction, unless the store is scoped to one tenant.
        per_tenant = self.tenant_id is None
        # The direct COPY (as the ingest role, when the login may take it) for a store that may insert:
        # the writer role or the login's own rights, and, scoped to a tenant, only that tenant's rows
        # (what the insert policy checked; a batch with another tenant takes the staging path and fails
        # there as before).
        direct = (
            direct
            and self.role in (None, WRITER_ROLE)
            and (self.tenant_id is None or all(row["tenant_id"] == self.tenant_id for row in rows))
        )
        try:
            try:
                with self.transaction() as connection:
                    skipped = store_keys(connection, keys)
                    stored = self.backend.insert_rows(connection, rows, self.role, per_tenant, direct)
            except DirectCopyConflict:
                # Rolled back: again through the staging path, which skips the duplicates exactly and
                # raises for a taken position.
                with self.transaction() as connection:
                    skipped = store_keys(connection, keys)
                    stored = self.backend.insert_rows(connection, rows, self.role, per_tenant)
        except (IntegrityError, psycopg.errors.IntegrityError) as exc:
            raise ConcurrencyError(
                "a stream position of the batch is already taken by another event; nothing was stored "
                f"({getattr(exc, 'orig', exc)})"
            ) from exc
        self._report_skipped_keys(skipped, keys)
        return AppendResult(stored=stored, duplicates=len(rows) - stored)

    def store_content_keys(self, keys: list[dict[str, Any]]) -> None:
        """Store data keys on their own, in a transaction of their own (a key whose first event was set aside
        by the writer: later events of its session still need it)."""
        if not keys:
            return
        with self.transaction() as connection:
            skipped = store_keys(connection, keys)
        self._report_skipped_keys(skipped, keys)

    def _report_skipped_keys(self, skipped: int, keys: list[dict[str, Any]]) -> None:
        """A key not stored because its session or subject was erased after it was made: the content under it
        (a replayed journal's, or new content a live process made for the erased session with a key it still
        held) is unreadable from now on. Counted and said loudly, never silently."""
        if not skipped:
            return
        self.keys_skipped += skipped
        owners = sorted({(str(key["tenant_id"]), str(key.get("session_id"))) for key in keys})
        log.error(
            "llm-ledger: %d data key(s) not stored because their session or subject was erased after they were"
            " made: the content encrypted under them is unreadable for good (tenant and session among: %s)",
            skipped,
            ", ".join(f"{tenant}/{session}" for tenant, session in owners[:10]),
        )

    def append_streaming(self, rows: Iterable[dict[str, Any]]) -> int | None:
        """Copy rows into the table while ``rows`` produces them, in one transaction: the direct COPY of
        ``append_rows``, one round trip shorter (the transaction is not scoped first), with the server storing
        the first rows while ``rows`` makes the next.

        Returns how many were stored; None, with nothing taken from ``rows``, when the direct path is not
        available (SQLite, a store scoped to a tenant or a reading role, no ingest role): use
        ``append_rows``. Rows that carry a data key (``content_keys.CONTENT_KEY``) are not copied here, the
        COPY having no place for the key: None for a sequence holding one, DirectCopyConflict (rolled back)
        for an iterator that yields one, so that ``append_rows`` stores them with their keys. Raises
        DirectCopyConflict (rolled back) when an event id or stream position is already taken: append the
        rows again with ``append_rows(rows, direct=False)``.
        """
        if self.role not in (None, WRITER_ROLE) or self.tenant_id is not None:
            return None
        if isinstance(rows, Sequence):
            if keys_of_rows(rows):
                return None
        else:
            rows = _refusing_keys(rows)
        # Not scoped to the writer role first: the COPY takes the ingest role (or nothing is done), one
        # round trip less a batch.
        with self.transaction(scoped=False) as connection:
            return self.backend.copy_streaming(connection, rows)

    # --- partitions (PostgreSQL) ------------------------------------------------------------------

    def ensure_partitions(self, months_ahead: int = partitions.MONTHS_AHEAD) -> list[str]:
        """Create the events table's monthly partitions from this month through ``months_ahead`` that are
        missing (migration 0008's ``llm_ledger_ensure_partitions``, which runs as the owner); returns the names
        created. Nothing to do on SQLite (one table) or an unpartitioned ledger."""
        with self.transaction() as connection:
            if not partitions.is_partitioned(connection):
                return []
            return partitions.ensure_partitions(connection, months_ahead)

    def maintain_partitions(self) -> None:
        """``ensure_partitions``, at most once a day (every ``PARTITIONS_RETRY`` seconds after a failure),
        for the writer: never raises. Nothing depends on it in time: a stream with no partition of its month
        is stored in the default partition."""
        now = time.monotonic()
        if now < self._partitions_due:
            return
        try:
            created = self.ensure_partitions()
        except StoreUnavailableError:
            self._partitions_due = now + 60.0  # the outage is the writer's to report, once
            return
        except Exception as exc:  # noqa: BLE001 - best effort: the events go to the default partition meanwhile
            self._partitions_due = now + PARTITIONS_RETRY
            log.warning(
                "llm-ledger: could not create the coming months' partitions (%s: %s); retrying in %.0f s,"
                " events meanwhile stored in the default partition if their month has none",
                type(exc).__name__,
                getattr(exc, "orig", exc),
                PARTITIONS_RETRY,
            )
            return
        self._partitions_due = now + PARTITIONS_EVERY
        if created:
            log.info("llm-ledger: created the events partitions %s", ", ".join(created))

    # --- reading --------------------------------------------------------------------------------

    def _select_rows(self, *conditions: Any, order: Sequence[Any] = ()) -> list[RowMapping]:
        query = select(*READ_COLUMNS).where(*conditions).order_by(*(order or (events.c.global_position,)))
        with self.transaction() as connection:
            return list(connection.execute(query).mappings())

    def _select(self, *conditions: Any, order: Sequence[Any] = ()) -> list[Event]:
        return [row_to_event(row) for row in self._select_rows(*conditions, order=order)]

    def read_stream(self, stream_id: UUID | str) -> list[Event]:
        """The events of one execution, in stream order."""
        return self._select(events.c.stream_id == str(stream_id), order=(events.c.stream_position,))

    def read_session(self, session_id: str, *, tenant_id: str | None = None) -> list[Event]:
        """Every event of a session, in the order they were stored."""
        conditions = [events.c.session_id == session_id]
        if tenant_id is not None:
            conditions.append(events.c.tenant_id == tenant_id)
        return self._select(*conditions)

    def read_tenant(self, tenant_id: str, since: datetime | None = None, until: datetime | None = None) -> list[Event]:
        """A tenant's events with ``since <= occurred_at < until``, in time order."""
        conditions = [events.c.tenant_id == tenant_id]
        if since is not None:
            conditions.append(events.c.occurred_at >= since)
        if until is not None:
            conditions.append(events.c.occurred_at < until)
        return self._select(*conditions, order=(events.c.occurred_at, events.c.global_position))

    def read_all(self, after: Cursor = START, limit: int = 1000) -> tuple[list[Event], Cursor]:
        """Up to ``limit`` events after ``after``, and the cursor to continue from.

        Never skips an event, even when writers commit out of order: on PostgreSQL only events of
        transactions older than every running one are returned, in ``(tx_id, global_position)`` order.
        """
        with self.transaction() as connection:
            rows = list(connection.execute(self.backend.read_all(after, limit)))
        if not rows:
            return [], after
        return [row_to_event(row._mapping) for row in rows], self.backend.cursor_of(rows[-1])

    def records_of_stream(self, stream_id: UUID | str) -> list[dict[str, Any]]:
        """The stored records of one stream as they are (for audits: not validated into events)."""
        rows = self._select_rows(events.c.stream_id == str(stream_id), order=(events.c.stream_position,))
        return [row_to_record(row) for row in rows]

    def verify(self, stream_id: UUID | str) -> ChainReport:
        """Check one stream's hash chain as stored."""
        return verify_chain(self.records_of_stream(stream_id))

    def content_keys(self, tenant_id: str, wanted: Iterable[str]) -> KeyLookup:
        """The data keys of ``tenant_id`` among ``wanted`` this login may read: on PostgreSQL a login granted
        ``llm_ledger_keyholder`` reads them as that role, under its row-level security; any other login reads
        none (``KeyLookup.readable`` is False). SQLite: one local file, readable."""
        ids = {key_id for key_id in wanted if is_key_id(key_id)}  # another reads as altered (``opened``)
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                if not connection.execute(_KEYHOLDER_MEMBER).scalar():
                    return KeyLookup({}, False)
                self.backend.scope(connection, tenant_id, KEYHOLDER_ROLE)
            found = read_keys(connection, tenant_id, ids)
            return KeyLookup(found, True, erased_keys(connection, tenant_id, ids - set(found)))

    def ping(self) -> None:
        """Raise StoreUnavailableError unless the database answers."""
        with self.transaction() as connection:
            connection.execute(select(1))

    def count(self) -> int:
        with self.transaction() as connection:
            return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


_KEYHOLDER_MEMBER = text(
    f"SELECT pg_has_role(session_user, '{KEYHOLDER_ROLE}', 'MEMBER')"
    " AND to_regclass('llm_ledger_content_keys') IS NOT NULL"
)


def _refusing_keys(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        if CONTENT_KEY in row:
            raise DirectCopyConflict(f"event {row.get('event_id')} carries a data key: stored through append_rows")
        yield row


def _is_unreachable(exc: Exception) -> bool:
    """Whether a driver error means the server is out of reach, not that a statement is wrong."""
    orig = getattr(exc, "orig", exc)
    name = type(orig).__name__
    return bool(getattr(exc, "connection_invalidated", False)) or name in {
        "OperationalError",
        "InterfaceError",
        "ConnectionFailure",
        "AdminShutdown",
        "CannotConnectNow",
    }
