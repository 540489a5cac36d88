"""The ingest role: INSERT only, bypassing row-level security, so the writer can COPY into the events table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

PostgreSQL refuses ``COPY FROM`` into a table whose row-level security applies to the role copying, so
under ``llm_ledger_writer`` every batch went through a staging table and ``INSERT ... SELECT``. The
insert policy added no protection there: the writer serves every tenant and sets the tenant setting
itself, so any holder of the writer role can insert for any tenant. What row-level security protects
is reads. ``llm_ledger_ingest`` therefore has ``BYPASSRLS`` and, on the events table, ``INSERT`` and
nothing else: it can add rows (which the triggers, constraints and unique keys still check), never read,
change or remove one. It is granted to no role here; an administrator grants it to the writing login.

``BYPASSRLS`` needs a superuser. A migrating user with ``CREATEROLE`` only creates the role without it
(a superuser can later ``ALTER ROLE llm_ledger_ingest BYPASSRLS``); one without ``CREATEROLE`` skips the
role. Both say so in a NOTICE and the migration succeeds: the store checks the role before using it and
keeps the staging path otherwise. Roles belong to the cluster, so the downgrade revokes the grant and
leaves the role. SQLite: nothing to do.
"""

from __future__ import annotations

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # As in 0001: another database's migration may create the role at the same moment (the loser gets
    # duplicate_object or unique_violation, which means the role is there).
    op.execute(
        """
        DO $$
        DECLARE
            me pg_roles%ROWTYPE;
        BEGIN
            SELECT * INTO me FROM pg_roles WHERE rolname = current_user;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_ingest') THEN
                BEGIN
                    IF me.rolsuper THEN
                        CREATE ROLE llm_ledger_ingest NOLOGIN BYPASSRLS;
                    ELSIF me.rolcreaterole THEN
                        CREATE ROLE llm_ledger_ingest NOLOGIN;
                        RAISE NOTICE 'llm_ledger_ingest created without BYPASSRLS (that needs a superuser): '
                            'the store keeps its staging insert until a superuser runs '
                            'ALTER ROLE llm_ledger_ingest BYPASSRLS';
                    ELSE
                        RAISE NOTICE 'llm_ledger_ingest not created (that needs CREATEROLE and, for BYPASSRLS, '
                            'a superuser): the store keeps its staging insert';
                    END IF;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_ingest') THEN
                REVOKE ALL ON TABLE llm_ledger_events FROM llm_ledger_ingest;
                GRANT INSERT ON TABLE llm_ledger_events TO llm_ledger_ingest;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_ingest') THEN
                REVOKE ALL ON TABLE llm_ledger_events FROM llm_ledger_ingest;
            END IF;
        END
        $$
        """
    )
