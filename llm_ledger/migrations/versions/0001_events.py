"""The append-only events table, its append-only guards and, on PostgreSQL, roles and row-level security.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The table is written out here as it was when this revision shipped, never taken from the application's
``llm_ledger.store.schema.events`` (today's model, which later revisions may change): a revision must keep
doing what it did when it shipped. Names are literal (``op.f``), so the model's naming convention, which
Alembic would otherwise apply, cannot rename them. ``tests/store/test_migrated_schema_matches_models.py`` checks
that the migrated database and today's model agree.

PostgreSQL, one function per concern:

- ``_transaction_ids``: ``tx_id`` (``xid8`` of the inserting transaction), read by consumers that must not
  skip an event committed out of order.
- ``_append_only``: UPDATE, DELETE, TRUNCATE raise, also under ``session_replication_role = replica``
  (``ENABLE ALWAYS``). The owner can still disable or drop them: the guarantee against the owner is that
  the application never connects as the owner (see ``_roles``).
- ``_roles``: ``llm_ledger_writer`` (SELECT, INSERT), ``llm_ledger_reader`` and ``llm_ledger_auditor``
  (SELECT). Roles belong to the cluster, not the database, so several ledgers share them and a downgrade
  leaves them in place.
- ``_row_level_security``: FORCEd, so a non-superuser owner sees no row either; superusers and
  BYPASSRLS roles are never subject to it. The application scopes each transaction with
  ``llm_ledger.store.scoping.scope_transaction`` (a tenant setting and ``SET LOCAL ROLE``).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

# The one import of the application: the error callers of ``migrate.downgrade`` catch, which must be that
# class, not a copy. Its module imports no table.
from llm_ledger.store.migrate import DowngradeRefusedError

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
"""The transaction's tenant. After a transaction that set it ends, the setting reads as '' rather than
NULL for the rest of the session; both mean "no tenant", and no row matches NULL."""


def _transaction_ids() -> None:
    op.execute("ALTER TABLE llm_ledger_events ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.execute("CREATE INDEX ix_llm_ledger_events_tx_id_global_position ON llm_ledger_events (tx_id, global_position)")


def _append_only() -> None:
    op.execute(
        """
        CREATE FUNCTION llm_ledger_events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'llm_ledger_events is append-only: % rejected', TG_OP
                USING HINT = 'Events are facts; record a new event instead.';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER llm_ledger_events_reject_update_delete BEFORE UPDATE OR DELETE ON llm_ledger_events"
        " FOR EACH ROW EXECUTE FUNCTION llm_ledger_events_reject_change()"
    )
    op.execute(
        "CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON llm_ledger_events"
        " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_events_reject_change()"
    )
    # Plain ENABLE skips triggers under session_replication_role = replica, which anyone loading a dump or
    # running logical replication sets.
    op.execute("ALTER TABLE llm_ledger_events ENABLE ALWAYS TRIGGER llm_ledger_events_reject_update_delete")
    op.execute("ALTER TABLE llm_ledger_events ENABLE ALWAYS TRIGGER llm_ledger_events_reject_truncate")


def _roles() -> None:
    # Two migrations of two databases of one cluster can race to create the same role: the loser gets
    # unique_violation (or duplicate_object), which means the role is there. Checking first lets a
    # migrating user without CREATEROLE run once an administrator has created the roles.
    op.execute(
        """
        DO $$
        DECLARE
            name text;
        BEGIN
            FOREACH name IN ARRAY ARRAY['llm_ledger_writer', 'llm_ledger_reader', 'llm_ledger_auditor'] LOOP
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
                    BEGIN
                        EXECUTE format('CREATE ROLE %I NOLOGIN', name);
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN
                        NULL;
                    END;
                END IF;
            END LOOP;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON TABLE llm_ledger_events FROM PUBLIC")
    op.execute("REVOKE ALL ON SEQUENCE llm_ledger_events_global_position_seq FROM PUBLIC")
    # No USAGE on the identity sequence: PostgreSQL does not check it when filling an identity column, and
    # without it the writer cannot call nextval() to burn positions.
    op.execute("GRANT SELECT, INSERT ON TABLE llm_ledger_events TO llm_ledger_writer")
    op.execute("GRANT SELECT ON TABLE llm_ledger_events TO llm_ledger_reader, llm_ledger_auditor")


def _row_level_security() -> None:
    op.execute("ALTER TABLE llm_ledger_events ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE llm_ledger_events FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY llm_ledger_events_tenant_select ON llm_ledger_events FOR SELECT"
        f" TO llm_ledger_writer, llm_ledger_reader USING (tenant_id = {_TENANT})"
    )
    op.execute(
        "CREATE POLICY llm_ledger_events_tenant_insert ON llm_ledger_events FOR INSERT"
        f" TO llm_ledger_writer WITH CHECK (tenant_id = {_TENANT})"
    )
    op.execute(
        "CREATE POLICY llm_ledger_events_auditor_select ON llm_ledger_events FOR SELECT"
        " TO llm_ledger_auditor USING (true)"
    )


def _postgresql_upgrade() -> None:
    _transaction_ids()
    _append_only()
    _roles()
    _row_level_security()


def _sqlite_upgrade() -> None:
    # SQLite has no TRUNCATE: an unqualified DELETE is its truncate, and the DELETE trigger turns off that
    # optimisation, so it is rejected too.
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER llm_ledger_events_reject_{operation.lower()} BEFORE {operation} ON llm_ledger_events"
            f" BEGIN SELECT RAISE(ABORT, 'llm_ledger_events is append-only: {operation} rejected'); END"
        )


_UPGRADES: dict[str, Callable[[], None]] = {"postgresql": _postgresql_upgrade, "sqlite": _sqlite_upgrade}


def _events_table() -> None:
    op.create_table(
        "llm_ledger_events",
        # ALWAYS: a position is the database's to give. SQLite only gives an auto-incrementing rowid alias to
        # "INTEGER PRIMARY KEY", not to BIGINT, and ignores Identity.
        sa.Column(
            "global_position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=True),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("stream_id", sa.String(36), nullable=False),
        sa.Column("stream_position", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Text()),
        sa.Column("session_id", sa.Text()),
        sa.Column("turn_id", sa.Text()),
        sa.Column("step", sa.Text()),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(16)),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("prev_hash", sa.String(64)),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.PrimaryKeyConstraint("global_position", name=op.f("pk_llm_ledger_events")),
        sa.CheckConstraint("tenant_id <> ''", name=op.f("ck_llm_ledger_events_tenant_id_not_empty")),
        sa.UniqueConstraint("tenant_id", "event_id", name=op.f("uq_llm_ledger_events_tenant_id_event_id")),
        sa.UniqueConstraint(
            "tenant_id",
            "stream_id",
            "stream_position",
            name=op.f("uq_llm_ledger_events_tenant_id_stream_id_stream_position"),
        ),
    )
    op.create_index(
        op.f("ix_llm_ledger_events_tenant_id_occurred_at"), "llm_ledger_events", ["tenant_id", "occurred_at"]
    )
    op.create_index(
        op.f("ix_llm_ledger_events_tenant_id_session_id_occurred_at"),
        "llm_ledger_events",
        ["tenant_id", "session_id", "occurred_at"],
    )


def upgrade() -> None:
    _events_table()
    _UPGRADES[op.get_context().dialect.name]()


def downgrade() -> None:
    if context.is_offline_mode():
        raise DowngradeRefusedError("downgrade of 0001 must see the table to know it is empty: run it online")
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        # The lock keeps an insert from landing between the check and the drop. NO FORCE lets a
        # non-superuser owner see every row for the check; the transaction restores it if we refuse.
        op.execute("LOCK TABLE llm_ledger_events IN ACCESS EXCLUSIVE MODE")
        op.execute("ALTER TABLE llm_ledger_events NO FORCE ROW LEVEL SECURITY")
    if op.get_bind().execute(sa.select(sa.exists().select_from(sa.table("llm_ledger_events")))).scalar():
        raise DowngradeRefusedError(
            "llm_ledger_events holds events: downgrading below 0001 is destructive to events and is refused"
        )
    # Dropping the table drops its triggers, policies, indexes, grants and identity sequence.
    op.drop_table("llm_ledger_events")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION llm_ledger_events_reject_change()")
