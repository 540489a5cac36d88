"""The tables, as SQLAlchemy Core metadata. Migrations create them; the store reads and writes them.

One append-only table of events. Every unique key leads with ``tenant_id`` so that the same schema can
be distributed by tenant (Citus): it refuses a unique key that does not contain the distribution column.
On PostgreSQL the table is partitioned by ``stream_id`` (migration 0008: a range of UUIDv7 ids per month),
so every key contains it too: the primary key ``(tenant_id, stream_id, stream_position)`` is the position
conflict, ``(tenant_id, stream_id, event_id)`` the idempotency key. SQLite keeps the one table of 0001:
``global_position INTEGER PRIMARY KEY`` (the rowid alias that gives positions) and the keys
``(tenant_id, event_id)`` and ``(tenant_id, stream_id, stream_position)``. The per-dialect keys are
``ddl_if`` constraints; the primary key, one per table for SQLAlchemy, is PostgreSQL's, and SQLite's is
``SQLITE_PRIMARY_KEY``.
``tx_id`` (PostgreSQL's ``xid8`` of the writing transaction) exists on PostgreSQL only: it is how a
reader knows that no earlier transaction can still commit (see ``store.read_all``).
"""

from __future__ import annotations

import re

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.types import UserDefinedType

EVENTS_TABLE = "llm_ledger_events"

# Naming convention so that Alembic can drop what it created, on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# SQLite only gives an auto-incrementing rowid alias to "INTEGER PRIMARY KEY", not to BIGINT.
_Position = BigInteger().with_variant(Integer(), "sqlite")
_Payload = JSON().with_variant(JSONB(), "postgresql")
# PostgreSQL partitions by stream id ranges in byte order (UUIDv7 text: time order); SQLite has no "C".
_StreamId = String(36).with_variant(String(36, collation="C"), "postgresql")

EVENTS_PARTITION = re.compile(rf"{EVENTS_TABLE}_(?:\d{{4}}_\d{{2}}|default)")
"""The names of the events table's partitions on PostgreSQL (``llm_ledger_events_2026_12``, and the default
one): made by migration 0008 and ``llm_ledger_ensure_partitions``, not modelled (the parent is)."""

SQLITE_PRIMARY_KEY = ("global_position",)
"""SQLite's primary key of the events table (the model's is PostgreSQL's)."""


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id type."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


events = Table(
    EVENTS_TABLE,
    metadata,
    # ALWAYS: a position is the database's to give; an INSERT that names one fails on PostgreSQL
    # (SQLite ignores Identity and keeps its rowid alias).
    Column("global_position", _Position, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("stream_id", _StreamId, nullable=False),
    Column("stream_position", Integer, nullable=False),
    Column("agent_id", Text),
    Column("session_id", Text),
    Column("turn_id", Text),
    Column("step", Text),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("trace_id", String(32)),
    Column("span_id", String(16)),
    Column("payload", _Payload, nullable=False),
    Column("prev_hash", String(64)),
    Column("hash", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    # Row-level security reads an empty tenant setting as "no tenant"; no row may claim that tenant.
    CheckConstraint("tenant_id <> ''", name="tenant_id_not_empty"),
    PrimaryKeyConstraint("tenant_id", "stream_id", "stream_position").ddl_if(dialect="postgresql"),
    UniqueConstraint("tenant_id", "stream_id", "event_id").ddl_if(dialect="postgresql"),
    UniqueConstraint("tenant_id", "event_id").ddl_if(dialect="sqlite"),
    UniqueConstraint("tenant_id", "stream_id", "stream_position").ddl_if(dialect="sqlite"),
    Index(None, "tenant_id", "occurred_at"),
    Index(None, "tenant_id", "session_id", "occurred_at"),
)

STORED_COLUMNS: tuple[str, ...] = tuple(c.name for c in events.c if c.name not in ("global_position", "recorded_at"))
"""The columns an event fills (the database assigns ``global_position``, ``recorded_at`` and ``tx_id``)."""

READ_COLUMNS = tuple(c for c in events.c if c.name != "recorded_at")
"""The columns an event is read back from (``global_position`` included, for cursors and order)."""


_Uuid = String(36).with_variant(UUID(as_uuid=False), "postgresql")

content_keys = Table(
    "llm_ledger_content_keys",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("key_id", _Uuid, nullable=False),
    Column("subject_id", Text),
    Column("session_id", Text),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    CheckConstraint("tenant_id <> ''", name="tenant_id_not_empty"),
    CheckConstraint("length(secret) = 32", name="secret_is_256_bits"),
    PrimaryKeyConstraint("tenant_id", "key_id"),
    Index(None, "tenant_id", "session_id"),
    Index(None, "tenant_id", "subject_id"),
)
"""The data keys of content captured in full, one per tenant, subject and session (and writing process)
(migration 0011, ``events.encryption``): deleted only by an erasure, never changed."""

erasures = Table(
    "llm_ledger_erasures",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("erasure_id", _Uuid, nullable=False),
    Column("subject_id", Text),
    Column("session_id", Text),
    Column("key_ids", _Payload, nullable=False),
    Column("key_count", Integer, nullable=False),
    Column("events_affected", Integer, nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    Column("erased_by", Text, nullable=False),
    CheckConstraint("tenant_id <> ''", name="tenant_id_not_empty"),
    PrimaryKeyConstraint("tenant_id", "erasure_id"),
    Index(None, "tenant_id", "erased_at"),
)
"""What each erasure destroyed (migration 0011, ``audit.erasure``): append-only, never content."""
