"""The data keys of captured content in the database (migration 0011): stored with the first event that
uses each (``EventDraft.content_key``, carried in its row and journal record), read by a keyholder.

A key travels in the row of its first event under ``CONTENT_KEY`` (and in that event's journal record, so a
replayed journal brings its keys too), and ``EventStore.append_rows`` stores the keys of a batch in the
transaction of its events; a key whose first event is set aside (unstorable, or its position taken) is
stored on its own (``EventStore.store_content_keys``) or with another row of its batch, before any later
ciphertext under it can be. A key is not stored when an erasure of its session or subject came after it
was made (``store_keys`` returns how many): content made before an erasure stays erased. The writer may store keys
but never read one (``llm_ledger_store_content_keys`` on PostgreSQL); reading needs
``llm_ledger_keyholder``.
"""

from __future__ import annotations

import base64
import getpass
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from sqlalchemy import Connection, Text, cast, or_, select, text

from llm_ledger.events.encryption import DataKey, key_ids, reveal_each
from llm_ledger.events.ids import uuid7
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


def store_keys(connection: Connection, keys: list[dict[str, Any]]) -> int:
    """Store key records in the current transaction (one already stored is left as it is); returns how many
    were not stored because an erasure of their session or subject came after they were made."""
    if not keys:
        return 0
    if connection.dialect.name == "postgresql":
        skipped = connection.execute(
            text("SELECT llm_ledger_store_content_keys(CAST(:keys AS jsonb))"), {"keys": orjson.dumps(keys).decode()}
        ).scalar_one()
        return int(skipped)
    covering = {key["key_id"]: _erased_since(connection, key) for key in keys}
    kept = [key for key in keys if covering[key["key_id"]] is None]
    _record_destroyed_on_arrival(connection, [(key, covering[key["key_id"]]) for key in keys if key not in kept])
    rows = [
        {
            "tenant_id": key["tenant_id"],
            "key_id": key["key_id"],
            "subject_id": key.get("subject_id"),
            "session_id": key.get("session_id"),
            "secret": base64.b64decode(key["secret"]),
            "created_at": datetime.fromisoformat(key["created_at"]),
        }
        for key in kept
    ]
    if rows:
        connection.execute(content_keys.insert().prefix_with("OR IGNORE"), rows)
    return len(keys) - len(kept)


def _erased_since(connection: Connection, key: dict[str, Any]) -> tuple[str | None, str | None] | None:
    """The owner (subject, session) of the latest erasure of the key's session or subject that came after it
    was made, if any (SQLite; PostgreSQL's ``llm_ledger_store_content_keys`` asks the same): a journal
    replayed after an erasure must not bring back a key the erasure meant to destroy. An owner the key does
    not have (None) matches no erasure: every session erasure names no subject, and would otherwise cover
    every subjectless key of the tenant."""
    erased = erasures.c
    owner = [
        column == key.get(name)
        for column, name in ((erased.session_id, "session_id"), (erased.subject_id, "subject_id"))
        if key.get(name) is not None
    ]
    if not owner:
        return None
    found = connection.execute(
        select(erased.subject_id, erased.session_id)
        .where(erased.tenant_id == key["tenant_id"], erased.erased_at >= datetime.fromisoformat(key["created_at"]))
        .where(or_(*owner))
        .order_by(erased.erased_at.desc())
        .limit(1)
    ).first()
    return None if found is None else (found.subject_id, found.session_id)


def _record_destroyed_on_arrival(
    connection: Connection, destroyed: list[tuple[dict[str, Any], tuple[str | None, str | None] | None]]
) -> None:
    """An erasure record naming each key destroyed on arrival (once), as PostgreSQL's function writes: a key
    that no record names and no row holds is a loss, not an erasure."""
    for key, owner in destroyed:
        assert owner is not None
        if key["key_id"] in erased_keys(connection, key["tenant_id"], [key["key_id"]]):
            continue
        connection.execute(
            erasures.insert().values(
                erasure_id=str(uuid7()),
                tenant_id=key["tenant_id"],
                subject_id=owner[0],
                session_id=owner[1],
                key_ids=[key["key_id"]],
                key_count=1,
                events_affected=0,
                erased_at=datetime.now(UTC),
                erased_by=getpass.getuser(),
            )
        )


ContentState = Literal["readable", "erased", "key missing", "no key access", "altered"]
"""Why a captured text is shown or not: ``altered`` is a ciphertext that does not open under its key for its
event and field (moved from another event or field, or changed), or names no key id at all."""


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """The keys of one tenant a reader could read, for ``events.encryption.reveal``; whether it may read
    keys at all; and which of the keys it looked for an erasure record names (a key neither found nor
    erased is missing: a loss, not an erasure)."""

    keys: dict[str, DataKey]
    readable: bool
    erased: frozenset[str] = frozenset()

    def __call__(self, key_id: str) -> DataKey | None:
        return self.keys.get(key_id)

    def state(self, key_id: str) -> ContentState:
        if key_id in self.keys:
            return "readable"
        if not self.readable:
            return "no key access"
        if key_id in self.erased:
            return "erased"
        return "key missing"


def erased_keys(connection: Connection, tenant_id: str, wanted: Iterable[str]) -> frozenset[str]:
    """Which of ``wanted`` an erasure record of ``tenant_id`` names (by the erasures' tenant index)."""
    ids = sorted(set(wanted))
    if not ids:
        return frozenset()
    if connection.dialect.name == "postgresql":
        query = text(
            "SELECT k FROM llm_ledger_erasures x, jsonb_array_elements_text(x.key_ids) AS k"
            " WHERE x.tenant_id = :tenant AND k = ANY(CAST(:ids AS text[]))"
        )
    else:
        query = text(
            "SELECT j.value FROM llm_ledger_erasures x, json_each(x.key_ids) j"
            " WHERE x.tenant_id = :tenant AND j.value IN (SELECT value FROM json_each(:ids))"
        )
        return frozenset(
            str(row[0]) for row in connection.execute(query, {"tenant": tenant_id, "ids": orjson.dumps(ids).decode()})
        )
    return frozenset(str(row[0]) for row in connection.execute(query, {"tenant": tenant_id, "ids": ids}))


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
    not open, by field: a text moved or altered reads ``altered`` on its own, the others open as they would."""
    values, hidden, altered = reveal_each(event_type, dict(payload), stream_id, event_id, lookup)
    states: dict[str, ContentState] = {
        field: "altered" if not is_key_id(key_id) else lookup.state(key_id) for field, key_id in hidden.items()
    }
    return values, {**states, **dict.fromkeys(altered, "altered")}


def is_key_id(key_id: str) -> bool:
    """Whether ``key_id`` has the form of a data key's id: a UUID as the writer spells it (lower case,
    hyphenated). One that has not names no key, stored or erased, and is never looked up: PostgreSQL would
    refuse the whole query over some spellings ``UUID`` takes (``urn:uuid:...``), and read others (upper
    case, braces) as the key itself, which a ciphertext whose key id was changed is not."""
    try:
        return str(UUID(key_id)) == key_id
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class OpenedText:
    """One captured text as a reader may see it: ``text`` when opened (or kept plain), else ``state`` says
    why not (None, None: nothing but sizes and a digest is kept, capture ``hash`` or ``none``)."""

    text: str | None = None
    state: ContentState | None = None


KeySource = Callable[[str, Iterable[str]], KeyLookup]
"""Gives the lookup of a tenant's keys among some key ids (``EventStore.content_keys``)."""
