"""Tamper evidence: Merkle seals over each tenant's events, and the results of ``llm-ledger audit verify``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

Tables (today's models are ``llm_ledger.audit.schema``; the tables are written out here as they were when
this revision shipped, with literal names), all append-only like the events (UPDATE, DELETE, TRUNCATE rejected
by triggers that fire ALWAYS; on SQLite, UPDATE and DELETE triggers):

- ``llm_ledger_seals`` and ``llm_ledger_seal_streams``: one row per seal and its per-stream manifest;
- ``llm_ledger_audit_runs``, ``llm_ledger_audit_tenant_results``, ``llm_ledger_audit_findings``: the
  record of each verify run, which the dashboard's audit view reads.

PostgreSQL roles and row-level security (FORCEd, as on the events):

- ``llm_ledger_sealer`` (new, created defensively like the roles of 0001 and 0002): reads every tenant's
  events, inserts and reads seals;
- ``llm_ledger_auditor``: reads everything, inserts the verify results;
- ``llm_ledger_reader``: its own tenant's seals, results and findings, and the runs that were either over
  every tenant or scoped to its tenant.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

# As in 0001: the error callers of ``migrate.downgrade`` catch; its module imports no table.
from llm_ledger.store.migrate import DowngradeRefusedError

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
_SEALS = "llm_ledger_seals"
_AUDIT_RUNS = "llm_ledger_audit_runs"
_SEAL_TABLES = (_SEALS, "llm_ledger_seal_streams")
_RESULT_TABLES = ("llm_ledger_audit_tenant_results", "llm_ledger_audit_findings")
_AUDIT_TABLES = (*_SEAL_TABLES, _AUDIT_RUNS, *_RESULT_TABLES)
"""In creation order."""


def _tables() -> None:
    op.create_table(
        _SEALS,
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("after_tx", sa.BigInteger(), nullable=False),
        sa.Column("after_position", sa.BigInteger(), nullable=False),
        sa.Column("through_tx", sa.BigInteger(), nullable=False),
        sa.Column("through_position", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("stream_count", sa.BigInteger(), nullable=False),
        sa.Column("first_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merkle_root", sa.String(64), nullable=False),
        sa.Column("manifest_digest", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_seal_hash", sa.String(64)),
        sa.Column("seal_hash", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text()),
        sa.Column("signature", sa.Text()),
        sa.PrimaryKeyConstraint("tenant_id", "sequence", name=op.f("pk_llm_ledger_seals")),
    )
    op.create_table(
        "llm_ledger_seal_streams",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("seal_sequence", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.String(36), nullable=False),
        sa.Column("first_position", sa.Integer(), nullable=False),
        sa.Column("last_position", sa.Integer(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seal_sequence", "stream_id", name=op.f("pk_llm_ledger_seal_streams")),
    )
    op.create_table(
        _AUDIT_RUNS,
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope_tenant", sa.Text()),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("tenants", sa.Integer()),
        sa.Column("streams", sa.Integer()),
        sa.Column("events", sa.BigInteger()),
        sa.Column("seals", sa.Integer()),
        sa.Column("broken_streams", sa.Integer()),
        sa.Column("incomplete_streams", sa.Integer()),
        sa.Column("unsealed_events", sa.BigInteger()),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_llm_ledger_audit_runs")),
    )
    op.create_index(op.f("ix_llm_ledger_audit_runs_finished_at"), _AUDIT_RUNS, ["finished_at"])
    op.create_table(
        "llm_ledger_audit_tenant_results",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("streams", sa.Integer()),
        sa.Column("events", sa.BigInteger()),
        sa.Column("seals", sa.Integer()),
        sa.Column("broken_streams", sa.Integer()),
        sa.Column("incomplete_streams", sa.Integer()),
        sa.Column("unsealed_events", sa.BigInteger()),
        sa.Column("last_seal_hash", sa.Text()),
        sa.Column("last_sealed_at", sa.DateTime(timezone=True)),
        sa.Column("findings", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("run_id", "tenant_id", name=op.f("pk_llm_ledger_audit_tenant_results")),
    )
    op.create_table(
        "llm_ledger_audit_findings",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.Text()),
        sa.Column("stream_position", sa.Integer()),
        sa.Column("event_id", sa.Text()),
        sa.Column("seal_sequence", sa.Integer()),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index(
        op.f("ix_llm_ledger_audit_findings_run_id_tenant_id"), "llm_ledger_audit_findings", ["run_id", "tenant_id"]
    )


def _append_only() -> None:
    op.execute(
        """
        CREATE FUNCTION llm_ledger_audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
                USING HINT = 'Seals and audit results are evidence; record a new one instead.';
        END
        $$
        """
    )
    for name in _AUDIT_TABLES:
        op.execute(
            f"CREATE TRIGGER {name}_reject_update_delete BEFORE UPDATE OR DELETE ON {name}"
            " FOR EACH ROW EXECUTE FUNCTION llm_ledger_audit_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {name}_reject_truncate BEFORE TRUNCATE ON {name}"
            " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_audit_reject_change()"
        )
        # As in 0001: plain ENABLE would skip them under session_replication_role = replica.
        op.execute(f"ALTER TABLE {name} ENABLE ALWAYS TRIGGER {name}_reject_update_delete")
        op.execute(f"ALTER TABLE {name} ENABLE ALWAYS TRIGGER {name}_reject_truncate")


def _sealer_role() -> None:
    # As in 0001 and 0002: another database's migration may create the role at the same moment.
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_sealer') THEN
                BEGIN
                    CREATE ROLE llm_ledger_sealer NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END
        $$
        """
    )
    op.execute("GRANT SELECT ON TABLE llm_ledger_events TO llm_ledger_sealer")
    op.execute(
        "CREATE POLICY llm_ledger_events_sealer_select ON llm_ledger_events FOR SELECT"
        " TO llm_ledger_sealer USING (true)"
    )


def _grants_and_policies() -> None:
    for table in _AUDIT_TABLES:
        op.execute(f"REVOKE ALL ON TABLE {table} FROM PUBLIC")
        op.execute(f"GRANT SELECT ON TABLE {table} TO llm_ledger_reader, llm_ledger_auditor")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    for table in _SEAL_TABLES:
        op.execute(f"GRANT SELECT, INSERT ON TABLE {table} TO llm_ledger_sealer")
        op.execute(f"CREATE POLICY {table}_sealer_all ON {table} TO llm_ledger_sealer USING (true)")
        op.execute(f"CREATE POLICY {table}_auditor_select ON {table} FOR SELECT TO llm_ledger_auditor USING (true)")
    for table in (*_SEAL_TABLES, *_RESULT_TABLES):
        op.execute(
            f"CREATE POLICY {table}_tenant_select ON {table} FOR SELECT"
            f" TO llm_ledger_reader USING (tenant_id = {_TENANT})"
        )
    for table in (_AUDIT_RUNS, *_RESULT_TABLES):
        op.execute(f"GRANT INSERT ON TABLE {table} TO llm_ledger_auditor")
        op.execute(f"CREATE POLICY {table}_auditor_all ON {table} TO llm_ledger_auditor USING (true)")
    op.execute(
        f"CREATE POLICY {_AUDIT_RUNS}_tenant_select ON {_AUDIT_RUNS} FOR SELECT TO llm_ledger_reader"
        f" USING (scope_tenant IS NULL OR scope_tenant = {_TENANT})"
    )


def _postgresql_upgrade() -> None:
    _append_only()
    _sealer_role()
    _grants_and_policies()


def _sqlite_upgrade() -> None:
    for table in _AUDIT_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_reject_{operation.lower()} BEFORE {operation} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} rejected'); END"
            )


_UPGRADES: dict[str, Callable[[], None]] = {"postgresql": _postgresql_upgrade, "sqlite": _sqlite_upgrade}


def upgrade() -> None:
    _tables()
    _UPGRADES[op.get_context().dialect.name]()


def downgrade() -> None:
    if context.is_offline_mode():
        raise DowngradeRefusedError("downgrade of 0005 must see the seals to know there are none: run it online")
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        # As in 0001: no seal may land between the check and the drop; NO FORCE lets a non-superuser
        # owner see the rows.
        op.execute(f"LOCK TABLE {_SEALS} IN ACCESS EXCLUSIVE MODE")
        op.execute(f"ALTER TABLE {_SEALS} NO FORCE ROW LEVEL SECURITY")
    if op.get_bind().execute(sa.select(sa.exists().select_from(sa.table(_SEALS)))).scalar():
        raise DowngradeRefusedError(
            "llm_ledger_seals holds seals: they are the evidence that no event was removed, and downgrading"
            " below 0005 would drop them; refused"
        )
    for table in reversed(_AUDIT_TABLES):
        op.drop_table(table)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION llm_ledger_audit_reject_change()")
        op.execute("DROP POLICY llm_ledger_events_sealer_select ON llm_ledger_events")
        op.execute("REVOKE ALL ON TABLE llm_ledger_events FROM llm_ledger_sealer")
