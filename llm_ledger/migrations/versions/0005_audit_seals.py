"""Tamper evidence: Merkle seals over each tenant's events, and the results of ``llm-ledger audit verify``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

Tables (``llm_ledger.audit.schema``), all append-only like the events (UPDATE, DELETE, TRUNCATE rejected
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
from sqlalchemy.schema import CreateIndex, CreateTable

from llm_ledger.audit.schema import (
    AUDIT_TABLES,
    audit_findings,
    audit_runs,
    audit_tenant_results,
    seal_streams,
    seals,
)
from llm_ledger.store.migrate import DowngradeRefusedError

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
_SEAL_TABLES = (seals, seal_streams)
_RESULT_TABLES = (audit_tenant_results, audit_findings)


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
    for table in AUDIT_TABLES:
        name = table.name
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
    for table in AUDIT_TABLES:
        op.execute(f"REVOKE ALL ON TABLE {table.name} FROM PUBLIC")
        op.execute(f"GRANT SELECT ON TABLE {table.name} TO llm_ledger_reader, llm_ledger_auditor")
        op.execute(f"ALTER TABLE {table.name} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table.name} FORCE ROW LEVEL SECURITY")
    for table in _SEAL_TABLES:
        op.execute(f"GRANT SELECT, INSERT ON TABLE {table.name} TO llm_ledger_sealer")
        op.execute(f"CREATE POLICY {table.name}_sealer_all ON {table.name} TO llm_ledger_sealer USING (true)")
        op.execute(
            f"CREATE POLICY {table.name}_auditor_select ON {table.name} FOR SELECT TO llm_ledger_auditor USING (true)"
        )
    for table in (*_SEAL_TABLES, *_RESULT_TABLES):
        op.execute(
            f"CREATE POLICY {table.name}_tenant_select ON {table.name} FOR SELECT"
            f" TO llm_ledger_reader USING (tenant_id = {_TENANT})"
        )
    for table in (audit_runs, *_RESULT_TABLES):
        op.execute(f"GRANT INSERT ON TABLE {table.name} TO llm_ledger_auditor")
        op.execute(f"CREATE POLICY {table.name}_auditor_all ON {table.name} TO llm_ledger_auditor USING (true)")
    op.execute(
        f"CREATE POLICY {audit_runs.name}_tenant_select ON {audit_runs.name} FOR SELECT TO llm_ledger_reader"
        f" USING (scope_tenant IS NULL OR scope_tenant = {_TENANT})"
    )


def _postgresql_upgrade() -> None:
    _append_only()
    _sealer_role()
    _grants_and_policies()


def _sqlite_upgrade() -> None:
    for table in AUDIT_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table.name}_reject_{operation.lower()} BEFORE {operation} ON {table.name}"
                f" BEGIN SELECT RAISE(ABORT, '{table.name} is append-only: {operation} rejected'); END"
            )


_UPGRADES: dict[str, Callable[[], None]] = {"postgresql": _postgresql_upgrade, "sqlite": _sqlite_upgrade}


def upgrade() -> None:
    for table in AUDIT_TABLES:
        op.execute(CreateTable(table))
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            op.execute(CreateIndex(index))
    _UPGRADES[op.get_context().dialect.name]()


def downgrade() -> None:
    if context.is_offline_mode():
        raise DowngradeRefusedError("downgrade of 0005 must see the seals to know there are none: run it online")
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        # As in 0001: no seal may land between the check and the drop; NO FORCE lets a non-superuser
        # owner see the rows.
        op.execute(f"LOCK TABLE {seals.name} IN ACCESS EXCLUSIVE MODE")
        op.execute(f"ALTER TABLE {seals.name} NO FORCE ROW LEVEL SECURITY")
    if op.get_bind().execute(sa.select(sa.exists().select_from(seals))).scalar():
        raise DowngradeRefusedError(
            "llm_ledger_seals holds seals: they are the evidence that no event was removed, and downgrading"
            " below 0005 would drop them; refused"
        )
    for table in reversed(AUDIT_TABLES):
        op.drop_table(table.name)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION llm_ledger_audit_reject_change()")
        op.execute("DROP POLICY llm_ledger_events_sealer_select ON llm_ledger_events")
        op.execute("REVOKE ALL ON TABLE llm_ledger_events FROM llm_ledger_sealer")
