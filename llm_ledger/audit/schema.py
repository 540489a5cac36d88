"""The audit tables (migration 0005): seals with their stream manifests, and the record of verify runs.

All append-only, like the events. A seal covers one tenant's events whose read cursor ``(tx_id,
global_position)`` lies in ``(after_tx, after_position] < cursor <= (through_tx, through_position)``
(SQLite: ``tx_id`` 0, the position alone). The manifest (``llm_ledger_seal_streams``) says, per stream,
which positions the seal saw and the hash of the last one, so that a verify can name what went missing
or was added, not only that the Merkle root changed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from llm_ledger.store.schema import metadata

seals = Table(
    "llm_ledger_seals",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("after_tx", BigInteger, nullable=False),
    Column("after_position", BigInteger, nullable=False),
    Column("through_tx", BigInteger, nullable=False),
    Column("through_position", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("stream_count", BigInteger, nullable=False),
    Column("first_occurred_at", DateTime(timezone=True), nullable=False),
    Column("last_occurred_at", DateTime(timezone=True), nullable=False),
    Column("merkle_root", String(64), nullable=False),
    Column("manifest_digest", String(64), nullable=False),
    Column("sealed_at", DateTime(timezone=True), nullable=False),
    Column("prev_seal_hash", String(64)),
    Column("seal_hash", String(64), nullable=False),
    Column("public_key", Text),
    Column("signature", Text),
    PrimaryKeyConstraint("tenant_id", "sequence"),
)

seal_streams = Table(
    "llm_ledger_seal_streams",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("seal_sequence", Integer, nullable=False),
    Column("stream_id", String(36), nullable=False),
    Column("first_position", Integer, nullable=False),
    Column("last_position", Integer, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    PrimaryKeyConstraint("tenant_id", "seal_sequence", "stream_id"),
)

audit_runs = Table(
    "llm_ledger_audit_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("scope_tenant", Text),
    Column("since", DateTime(timezone=True)),
    Column("ok", Boolean, nullable=False),
    Column("tenants", Integer),
    Column("streams", Integer),
    Column("events", BigInteger),
    Column("seals", Integer),
    Column("broken_streams", Integer),
    Column("incomplete_streams", Integer),
    Column("unsealed_events", BigInteger),
    Index(None, "finished_at"),
)

audit_tenant_results = Table(
    "llm_ledger_audit_tenant_results",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("streams", Integer),
    Column("events", BigInteger),
    Column("seals", Integer),
    Column("broken_streams", Integer),
    Column("incomplete_streams", Integer),
    Column("unsealed_events", BigInteger),
    Column("last_seal_hash", Text),
    Column("last_sealed_at", DateTime(timezone=True)),
    Column("findings", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("run_id", "tenant_id"),
)
"""``findings``: how many findings the run had for the tenant; at most ``MAX_STORED_FINDINGS`` are stored."""

audit_findings = Table(
    "llm_ledger_audit_findings",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("stream_id", Text),
    Column("stream_position", Integer),
    Column("event_id", Text),
    Column("seal_sequence", Integer),
    Column("detail", Text, nullable=False),
    Index(None, "run_id", "tenant_id"),
)

AUDIT_TABLES = (seals, seal_streams, audit_runs, audit_tenant_results, audit_findings)
"""In creation order."""

retention_runs = Table(
    "llm_ledger_retention_runs",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("partition_name", Text, nullable=False),
    Column("month", Text, nullable=False),
    Column("stream_low", Text, nullable=False),
    Column("stream_high", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("run_by", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text),
    Column("event_count", BigInteger, nullable=False),
    Column("tenant_count", Integer, nullable=False),
    Column("archive_dir", Text),
    Column("manifest_sha256", String(64)),
    Column("policy", Text, nullable=False),
    Column("verify_run_id", Text),
    PrimaryKeyConstraint("run_id", "partition_name"),
    CheckConstraint("outcome IN ('archived', 'refused')", name="outcome"),
)
"""Migration 0010: per ``retention apply`` and monthly partition it considered, what became of it. ``run_by``
is the database's ``session_user`` (set by a trigger on PostgreSQL); ``policy`` the JSON of the ages applied."""

retention_files = Table(
    "llm_ledger_retention_files",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("partition_name", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("stream_count", BigInteger, nullable=False),
    Column("seal_sequences", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "partition_name", "tenant_id"),
)
"""Per archived partition and tenant: its Parquet file and the seals (a JSON array of sequences) covering it."""

RETENTION_TABLES = (retention_runs, retention_files)
