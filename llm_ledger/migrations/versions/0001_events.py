"""The append-only events table, its append-only guards and, on PostgreSQL, roles and row-level security.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The table comes from ``schema.events``; once this revision has been applied anywhere, a change to that
table needs a new revision, not an edit here. The SQL below is written out rather than shared with the
application because a revision must keep doing what it did when it shipped.

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
from sqlalchemy.schema import CreateIndex, CreateTable

from llm_ledger.store.migrate import DowngradeRefusedError
from llm_ledger.store.schema import events

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


def upgrade() -> None:
    op.execute(CreateTable(events))
    for index in sorted(events.indexes, key=lambda index: str(index.name)):
        op.execute(CreateIndex(index))
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
    if op.get_bind().execute(sa.select(sa.exists().select_from(events))).scalar():
        raise DowngradeRefusedError(
            "llm_ledger_events holds events: downgrading below 0001 is destructive to events and is refused"
        )
    # Dropping the table drops its triggers, policies, indexes, grants and identity sequence.
    op.drop_table(events.name)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION llm_ledger_events_reject_change()")
