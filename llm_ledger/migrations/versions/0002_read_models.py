"""Read models for the projections and the dashboard.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Derived tables (``llm_ledger.projections.schema``): ordinary tables, not append-only, since a rebuild
empties and refills them. On PostgreSQL:

- ``llm_ledger_hist_merge(jsonb, jsonb)`` adds two latency histograms bucket by bucket (SQLite gets the
  same function from the projector's connection);
- the role ``llm_ledger_projector`` reads every tenant's events and owns the read models' rows;
- row-level security on the tenant-keyed read models, like the events': the reader sees its tenant's
  rows, the auditor all of them. The checkpoint table holds no tenant data and the reader and
  the auditor may read it (the dashboard shows how fresh the projections are).
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable

from llm_ledger.projections.schema import READ_MODELS, checkpoints

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
_TABLES = (*READ_MODELS, checkpoints)


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
        op.execute(f"REVOKE ALL ON TABLE {table.name} FROM PUBLIC")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE {table.name} TO llm_ledger_projector")
        op.execute(f"GRANT SELECT ON TABLE {table.name} TO llm_ledger_reader, llm_ledger_auditor")
    for table in READ_MODELS:
        op.execute(f"ALTER TABLE {table.name} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table.name} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table.name}_tenant_select ON {table.name} FOR SELECT"
            f" TO llm_ledger_reader USING (tenant_id = {_TENANT})"
        )
        op.execute(
            f"CREATE POLICY {table.name}_auditor_select ON {table.name} FOR SELECT TO llm_ledger_auditor USING (true)"
        )
        op.execute(f"CREATE POLICY {table.name}_projector_all ON {table.name} TO llm_ledger_projector USING (true)")


def upgrade() -> None:
    for table in _TABLES:
        op.execute(CreateTable(table))
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            op.execute(CreateIndex(index))
    if op.get_context().dialect.name == "postgresql":
        _hist_merge()
        _projector_role()
        _grants_and_policies()


def downgrade() -> None:
    # Derived data only: the events are untouched and a rebuild brings it all back.
    for table in reversed(_TABLES):
        op.drop_table(table.name)
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP POLICY llm_ledger_events_projector_select ON llm_ledger_events")
        op.execute("REVOKE ALL ON TABLE llm_ledger_events FROM llm_ledger_projector")
        op.execute("DROP FUNCTION llm_ledger_hist_merge(jsonb, jsonb)")
