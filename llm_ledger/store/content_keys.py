"""The data keys of captured content in the database (migration 0011): stored with the first event that
uses each (``EventDraft.content_key``, carried in its row and journal record), read by a keyholder.

A key travels in the row of its first event under ``CONTENT_KEY`` (and in that event's journal record, so a
replayed journal brings its keys too), and ``EventStore.append_rows`` stores the keys of a batch in the
transaction of its events: a ciphertext is never committed without its key, whatever the path (the
writer's batches, a replay of the journal, the writer process's, the takeover). The writer may store keys
but never read one (``llm_ledger_store_content_keys`` on PostgreSQL); reading needs
``llm_ledger_keyholder``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, Text, cast, or_, select, text

from llm_ledger.events.encryption import DataKey, key_ids, reveal
from llm_ledger.store.rows import CONTENT_KEY, as_utc
from llm_ledger.store.schema import content_keys, erasures


def keys_of_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The key records the rows of a batch carry."""
    return [row[CONTENT_KEY] for row in rows if CONTENT_KEY in row]


def without_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the events table takes them (a key is no column of it)."""
    if not any(CONTENT_KEY in row for row in rows):
        return rows
    return [{k: v for k, v in row.items() if k != CONTENT_KEY} if CONTENT_KEY in row else row for row in rows]


def store_keys(connection: Connection, keys: list[dict[str, Any]]) -> None:
    """Store key records in the current transaction (one already stored is left as it is)."""
    if not keys:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT llm_ledger_store_content_keys(CAST(:keys AS jsonb))"), {"keys": orjson.dumps(keys).decode()}
        )
        return
    rows = [
        {
            "tenant_id": key["tenant_id"],
            "key_id": key["key_id"],
            "subject_id": key.get("subject_id"),
            "session_id": key.get("session_id"),
            "secret": base64.b64decode(key["secret"]),
            "created_at": datetime.fromisoformat(key["created_at"]),
        }
        for key in keys
        if not _erased_since(connection, key)
    ]
    if rows:
        connection.execute(content_keys.insert().prefix_with("OR IGNORE"), rows)


def _erased_since(connection: Connection, key: dict[str, Any]) -> bool:
    """Whether an erasure of the key's session or subject came after it was made (SQLite; PostgreSQL's
    ``llm_ledger_store_content_keys`` asks the same): a journal replayed after an erasure must not bring back a
    key the erasure meant to destroy."""
    erased = erasures.c
    owner = [erased.session_id == key.get("session_id"), erased.subject_id == key.get("subject_id")]
    found = connection.execute(
        select(erased.tenant_id)
        .where(erased.tenant_id == key["tenant_id"], erased.erased_at >= datetime.fromisoformat(key["created_at"]))
        .where(or_(*owner))
        .limit(1)
    ).first()
    return found is not None


ContentState = Literal["readable", "erased", "no key access"]


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """The keys of one tenant a reader could read, for ``events.encryption.reveal``, and whether it may read
    keys at all (then a key it does not find was erased)."""

    keys: dict[str, DataKey]
    readable: bool

    def __call__(self, key_id: str) -> DataKey | None:
        return self.keys.get(key_id)

    def state(self, key_id: str) -> ContentState:
        if key_id in self.keys:
            return "readable"
        if self.readable:
            return "erased"  # a keyholder finds no key: it is gone
        return "no key access"


def read_keys(connection: Connection, tenant_id: str, wanted: Iterable[str]) -> dict[str, DataKey]:
    """The keys of ``tenant_id`` among ``wanted`` that exist (the connection's transaction must be scoped to
    the tenant as the keyholder role, on PostgreSQL)."""
    ids = sorted(set(wanted))
    if not ids:
        return {}
    columns = [content_keys.c[name] for name in ("tenant_id", "subject_id", "session_id", "secret", "created_at")]
    if connection.dialect.name == "postgresql":
        query = select(cast(content_keys.c.key_id, Text).label("key_id"), *columns).where(
            content_keys.c.tenant_id == tenant_id, text("key_id = ANY(CAST(:ids AS uuid[]))").bindparams(ids=ids)
        )
    else:
        query = select(content_keys.c.key_id, *columns).where(
            content_keys.c.tenant_id == tenant_id, content_keys.c.key_id.in_(ids)
        )
    return {
        str(row.key_id): DataKey(
            str(row.key_id), row.tenant_id, row.subject_id, row.session_id, bytes(row.secret), as_utc(row.created_at)
        )
        for row in connection.execute(query)
    }


def wanted_keys(events: Iterable[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """The key ids ``(event_type, payload)`` pairs need."""
    found: set[str] = set()
    for event_type, payload in events:
        found |= key_ids(event_type, dict(payload))
    return found


def opened(
    event_type: str, payload: Mapping[str, Any], stream_id: str, event_id: str, lookup: KeyLookup
) -> tuple[dict[str, Any], dict[str, ContentState]]:
    """A payload with its texts decrypted where the lookup has their keys, and the state of each text it could
    not open, by field."""
    values, hidden = reveal(event_type, dict(payload), stream_id, event_id, lookup)
    return values, {field: lookup.state(key_id) for field, key_id in hidden.items()}


KeySource = Callable[[str, Iterable[str]], KeyLookup]
"""Gives the lookup of a tenant's keys among some key ids (``EventStore.content_keys``)."""
