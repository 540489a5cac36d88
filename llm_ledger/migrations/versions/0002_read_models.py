"""Read models for the projections and the dashboard.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Derived tables (today's models are ``llm_ledger.projections.schema``; the tables are written out here as
they were when this revision shipped, with literal names): ordinary tables, not append-only, since a
rebuild empties and refills them. On PostgreSQL:

- ``llm_ledger_hist_merge(jsonb, jsonb)`` adds two latency histograms bucket by bucket (SQLite gets the
  same function from the projector's connection);
- the role ``llm_ledger_projector`` reads every tenant's events and owns the read models' rows;
- row-level security on the tenant-keyed read models, like the events': the reader sees its tenant's
  rows, the auditor all of them. The checkpoint table holds no tenant data and the reader and
  the auditor may read it (the dashboard shows how fresh the projections are).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
_READ_MODELS = (
    "llm_ledger_step_stats",
    "llm_ledger_error_stats",
    "llm_ledger_fallback_stats",
    "llm_ledger_sessions",
    "llm_ledger_failed_attempts",
)
"""The tenant-keyed tables, in creation order."""
_CHECKPOINTS = "llm_ledger_projection_checkpoints"
_TABLES = (*_READ_MODELS, _CHECKPOINTS)

_HISTOGRAM = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def _bucket_key() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("grain_seconds", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
    ]


_BUCKET_KEY = ("tenant_id", "grain_seconds", "bucket_start", "agent_id", "step")


def _tables() -> None:
    op.create_table(
        "llm_ledger_step_stats",
        *_bucket_key(),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        _counter("executions"),
        _counter("succeeded"),
        _counter("failed"),
        _counter("fallback_executions"),
        _counter("attempts"),
        _counter("attempt_failures"),
        _counter("input_tokens"),
        _counter("output_tokens"),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("execution_latency_ms_sum", sa.Float(), nullable=False, server_default="0"),
        sa.Column("execution_latency", _HISTOGRAM, nullable=False),
        sa.Column("attempt_latency_ms_sum", sa.Float(), nullable=False, server_default="0"),
        sa.Column("attempt_latency", _HISTOGRAM, nullable=False),
        sa.PrimaryKeyConstraint(*_BUCKET_KEY, "model", "provider", name=op.f("pk_llm_ledger_step_stats")),
    )
    op.create_table(
        "llm_ledger_error_stats",
        *_bucket_key(),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        # 'attempt' or 'execution'. As shipped this revision set no comment in the database (it ran
        # CreateTable, which leaves PostgreSQL's COMMENT ON to a separate statement), so none is set here.
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=False),
        _counter("count"),
        sa.PrimaryKeyConstraint(
            *_BUCKET_KEY, "model", "provider", "scope", "error_type", name=op.f("pk_llm_ledger_error_stats")
        ),
    )
    op.create_table(
        "llm_ledger_fallback_stats",
        *_bucket_key(),
        sa.Column("from_model", sa.Text(), nullable=False),
        sa.Column("to_model", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _counter("fallbacks"),
        _counter("succeeded_after"),
        sa.PrimaryKeyConstraint(
            *_BUCKET_KEY, "from_model", "to_model", "reason", name=op.f("pk_llm_ledger_fallback_stats")
        ),
    )
    op.create_table(
        "llm_ledger_sessions",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        _counter("executions"),
        _counter("succeeded"),
        _counter("failed"),
        _counter("fallback_executions"),
        _counter("attempts"),
        _counter("attempt_failures"),
        sa.PrimaryKeyConstraint("tenant_id", "session_id", name=op.f("pk_llm_ledger_sessions")),
    )
    op.create_index(
        op.f("ix_llm_ledger_sessions_tenant_id_last_seen"), "llm_ledger_sessions", ["tenant_id", "last_seen"]
    )
    op.create_table(
        "llm_ledger_failed_attempts",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text()),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("next_action", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.Text()),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name=op.f("pk_llm_ledger_failed_attempts")),
    )
    op.create_index(
        op.f("ix_llm_ledger_failed_attempts_tenant_id_occurred_at"),
        "llm_ledger_failed_attempts",
        ["tenant_id", "occurred_at"],
    )
    op.create_table(
        _CHECKPOINTS,
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tx_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("position", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("events_applied", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_llm_ledger_projection_checkpoints")),
    )


def _hist_merge() -> None:
    op.execute(
        """
        CREATE FUNCTION llm_ledger_hist_merge(a jsonb, b jsonb) RETURNS jsonb
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT COALESCE(jsonb_object_agg(bucket, total), '{}'::jsonb)
            FROM (
                SELECT bucket, SUM(n::bigint) AS total
                FROM (
                    SELECT key AS bucket, value AS n FROM jsonb_each_text(COALESCE(a, '{}'::jsonb))
                    UNION ALL
                    SELECT key, value FROM jsonb_each_text(COALESCE(b, '{}'::jsonb))
                ) AS both_sides
                GROUP BY bucket
            ) AS merged
        $$
        """
    )


def _projector_role() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_projector') THEN
                BEGIN
                    CREATE ROLE llm_ledger_projector NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END
        $$
        """
    )
    op.execute("GRANT SELECT ON TABLE llm_ledger_events TO llm_ledger_projector")
    op.execute(
        "CREATE POLICY llm_ledger_events_projector_select ON llm_ledger_events FOR SELECT"
        " TO llm_ledger_projector USING (true)"
    )


def _grants_and_policies() -> None:
    for table in _TABLES:
        op.execute(f"REVOKE ALL ON TABLE {table} FROM PUBLIC")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE {table} TO llm_ledger_projector")
        op.execute(f"GRANT SELECT ON TABLE {table} TO llm_ledger_reader, llm_ledger_auditor")
    for table in _READ_MODELS:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_tenant_select ON {table} FOR SELECT"
            f" TO llm_ledger_reader USING (tenant_id = {_TENANT})"
        )
        op.execute(f"CREATE POLICY {table}_auditor_select ON {table} FOR SELECT TO llm_ledger_auditor USING (true)")
        op.execute(f"CREATE POLICY {table}_projector_all ON {table} TO llm_ledger_projector USING (true)")


def upgrade() -> None:
    _tables()
    if op.get_context().dialect.name == "postgresql":
        _hist_merge()
        _projector_role()
        _grants_and_policies()


def downgrade() -> None:
    # Derived data only: the events are untouched and a rebuild brings it all back.
    for table in reversed(_TABLES):
        op.drop_table(table)
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP POLICY llm_ledger_events_projector_select ON llm_ledger_events")
        op.execute("REVOKE ALL ON TABLE llm_ledger_events FROM llm_ledger_projector")
        op.execute("DROP FUNCTION llm_ledger_hist_merge(jsonb, jsonb)")
