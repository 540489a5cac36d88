"""Each ledger role can run its own command, and a reader bound to a tenant sees no platform-wide total.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

PostgreSQL only (SQLite has no roles: nothing to do).

- ``llm_ledger_alembic_version``: Alembic creates it as the migrating user and grants it to nobody, so
  every command that first checks the schema revision (``llm-ledger project``, ``db current``, the
  dashboard) failed with "permission denied" under any ledger role. ``SELECT`` on it for
  ``llm_ledger_writer``, ``llm_ledger_reader``, ``llm_ledger_auditor``, ``llm_ledger_projector`` and
  ``llm_ledger_sealer``: it holds one revision number. Only the migrating user (the database owner)
  writes it. ``llm_ledger_ingest`` is left out: it inserts events and reads nothing.
- ``llm_ledger_projection_checkpoints``: its ``tx_id``, ``position`` and ``events_applied`` count every
  tenant's events, which 0002 let the reader read. The reader keeps ``name`` and ``updated_at`` (how
  fresh the figures are), by column grant; the auditor and the projector keep every column.
- ``llm_ledger_audit_runs``: a run over every tenant (``scope_tenant IS NULL``), which 0005's policy shows
  the reader, carries the whole platform's ``ok``, tenants, streams, events, seals, broken, incomplete
  and unsealed counts. The reader keeps the run's identity and window (``run_id``, ``started_at``,
  ``finished_at``, ``scope_tenant``, ``since``), by column grant; its own tenant's figures of the run are in
  ``llm_ledger_audit_tenant_results``, which row-level security already scopes.

A column grant refuses ``SELECT *`` and any query naming another column, with "permission denied", so a
bound reader cannot read the totals however it asks. The SQL is written out rather than taken from the
application's table objects because a revision must keep doing what it did when it shipped.
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_VERSION_TABLE = "llm_ledger_alembic_version"
_VERSION_READERS = (
    "llm_ledger_writer",
    "llm_ledger_reader",
    "llm_ledger_auditor",
    "llm_ledger_projector",
    "llm_ledger_sealer",
)
_READER_COLUMNS = {
    "llm_ledger_projection_checkpoints": ("name", "updated_at"),
    "llm_ledger_audit_runs": ("run_id", "started_at", "finished_at", "scope_tenant", "since"),
}
"""What ``llm_ledger_reader`` may still read of the tables that hold every tenant's totals."""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"GRANT SELECT ON TABLE {_VERSION_TABLE} TO {', '.join(_VERSION_READERS)}")
    for table, columns in _READER_COLUMNS.items():
        op.execute(f"REVOKE SELECT ON TABLE {table} FROM llm_ledger_reader")
        op.execute(f"GRANT SELECT ({', '.join(columns)}) ON TABLE {table} TO llm_ledger_reader")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, columns in _READER_COLUMNS.items():
        op.execute(f"REVOKE SELECT ({', '.join(columns)}) ON TABLE {table} FROM llm_ledger_reader")
        op.execute(f"GRANT SELECT ON TABLE {table} TO llm_ledger_reader")
    op.execute(f"REVOKE SELECT ON TABLE {_VERSION_TABLE} FROM {', '.join(_VERSION_READERS)}")
