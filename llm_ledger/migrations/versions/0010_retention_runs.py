"""Retention: the record of each ``llm-ledger retention apply``, its role, and the one way a month leaves.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Tables (today's models are ``llm_ledger.audit.schema``; written out here as they were when this revision
shipped), append-only like the events and the seals (UPDATE, DELETE, TRUNCATE rejected by triggers that fire
ALWAYS; on SQLite, UPDATE and DELETE triggers):

- ``llm_ledger_retention_runs``: per run and monthly partition considered, when, by whom (``run_by``, the
  database's ``session_user``, set by a trigger whatever the insert says), the partition's stream id
  bounds, the outcome (``archived``: written to the archive and dropped; ``refused``, with the reason), how
  many events left, the archive directory and its manifest's SHA-256, the policy applied, and the verify run
  that found the range clean;
- ``llm_ledger_retention_files``: per archived partition and tenant, the Parquet file, its SHA-256 and size,
  its events and streams, and the seals that cover them (a JSON array of sequences).

The view ``audit_retention`` joins them for auditors (``security_invoker`` as 0004's views).

PostgreSQL: the role ``llm_ledger_retention`` (NOLOGIN, created defensively like 0005's sealer) reads every
tenant's events, the seals and their manifests (to plan and archive a month), inserts and reads the retention
tables, and may execute ``llm_ledger_drop_archived_partition(run_id, partition)``, the
only way a partition of the events leaves: a SECURITY DEFINER function (the owner alone may drop a table)
with a pinned search path that takes only a monthly partition of ``llm_ledger_events`` named by a run row of
outcome ``archived`` inserted by this very transaction (its ``xmin``), whose stream bounds are the partition's
own and its month's, of a month already past; under READ COMMITTED only, it locks the events table then the
partition (ACCESS EXCLUSIVE, 5 s ``lock_timeout``, in the order inserts take them), refuses unless its events
per tenant are exactly those the run's files hold and all within the tenant's last seal, then detaches and
drops it. Nobody else
may execute it; the events' triggers still reject DELETE and TRUNCATE for everyone. The verify ``retention
apply`` runs first is ``audit verify``'s, as ``llm_ledger_auditor``: the login is granted both roles (a
migration may not grant one role to another without the admin option on it, which a database owner lacks).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

from llm_ledger.store.migrate import DowngradeRefusedError

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_RUNS = "llm_ledger_retention_runs"
_FILES = "llm_ledger_retention_files"
_TABLES = (_RUNS, _FILES)
_VIEW = "audit_retention"
_READ_TABLES = ("llm_ledger_events", "llm_ledger_seals", "llm_ledger_seal_streams")
_ROLE = "llm_ledger_retention"

_RUN_BY = """
    CREATE FUNCTION llm_ledger_retention_run_by() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Whatever the inserting role wrote: the login that ran the command, as the database knows it.
        NEW.run_by := session_user;
        RETURN NEW;
    END
    $$
"""


def _tables() -> None:
    op.create_table(
        _RUNS,
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("partition_name", sa.Text(), nullable=False),
        sa.Column("month", sa.Text(), nullable=False),
        sa.Column("stream_low", sa.Text(), nullable=False),
        sa.Column("stream_high", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_by", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("tenant_count", sa.Integer(), nullable=False),
        sa.Column("archive_dir", sa.Text()),
        sa.Column("manifest_sha256", sa.String(64)),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("verify_run_id", sa.Text()),
        sa.PrimaryKeyConstraint("run_id", "partition_name", name=op.f("pk_llm_ledger_retention_runs")),
        sa.CheckConstraint("outcome IN ('archived', 'refused')", name=op.f("ck_llm_ledger_retention_runs_outcome")),
    )
    op.create_table(
        _FILES,
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("partition_name", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("stream_count", sa.BigInteger(), nullable=False),
        sa.Column("seal_sequences", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "partition_name", "tenant_id", name=op.f("pk_llm_ledger_retention_files")),
    )


_VIEW_SELECT = f"""
    SELECT r.run_id, r.partition_name, r.month, r.started_at, r.finished_at, r.run_by, r.outcome, r.reason,
        r.event_count AS run_event_count, r.archive_dir, r.manifest_sha256, r.policy, r.verify_run_id,
        f.tenant_id, f.file_name, f.sha256, f.bytes, f.event_count, f.stream_count, f.seal_sequences
    FROM {_RUNS} r LEFT JOIN {_FILES} f ON f.run_id = r.run_id AND f.partition_name = r.partition_name
"""

_DROP_FUNCTION = """
    CREATE FUNCTION llm_ledger_drop_archived_partition(run text, target text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '5s'
    AS $$
    DECLARE
        recorded record;
        mismatch record;
        held bigint;
        month_start timestamp;
        unsealed text;
        bound text;
    BEGIN
        -- The counts below are compared with the run under locks: only a fresh snapshot per statement sees
        -- an event committed meanwhile, so a snapshot taken before the locks could drop it unarchived.
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'llm-ledger: % needs READ COMMITTED isolation, not %: not dropped',
                target, current_setting('transaction_isolation');
        END IF;
        IF target !~ '^llm_ledger_events_[0-9]{{4}}_[0-9]{{2}}$' OR NOT EXISTS (
                SELECT FROM pg_inherits i
                WHERE i.inhrelid = to_regclass(format('%I.%I', {schema_literal}, target))
                    AND i.inhparent = to_regclass(format('%I.%I', {schema_literal}, 'llm_ledger_events'))) THEN
            RAISE EXCEPTION 'llm-ledger: % is not a monthly partition of llm_ledger_events', target;
        END IF;
        month_start := to_timestamp(substr(target, 19), 'YYYY_MM')::timestamp;
        IF month_start >= date_trunc('month', now() AT TIME ZONE 'UTC') THEN
            RAISE EXCEPTION 'llm-ledger: % is the current month or a future one: not dropped', target;
        END IF;
        -- Only a run this very transaction recorded: the role may insert rows, not drop months it never archived.
        SELECT * INTO recorded FROM {schema}.llm_ledger_retention_runs r
            WHERE r.run_id = run AND r.partition_name = target
                AND r.outcome = 'archived' AND r.run_by = session_user
                AND r.xmin = pg_current_xact_id()::xid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'llm-ledger: no archived retention run % of % by % in this transaction: record it first',
                run, target, session_user;
        END IF;
        SELECT pg_get_expr(c.relpartbound, c.oid) INTO bound FROM pg_class c
            WHERE c.oid = to_regclass(format('%I.%I', {schema_literal}, target));
        IF recorded.stream_low <> {schema}.llm_ledger_month_floor(month_start)
                OR recorded.stream_high <> {schema}.llm_ledger_month_floor(month_start + interval '1 month')
                OR bound <> format('FOR VALUES FROM (%L) TO (%L)', recorded.stream_low, recorded.stream_high) THEN
            RAISE EXCEPTION 'llm-ledger: run % of % names streams [%, %), not the partition''s month: not dropped',
                run, target, recorded.stream_low, recorded.stream_high;
        END IF;
        -- Parent first, as every insert takes them: the detach below needs the parent anyway, and taking it
        -- after the partition could deadlock with an insert holding the parent and waiting for the partition.
        EXECUTE format('LOCK TABLE ONLY %I.llm_ledger_events IN ACCESS EXCLUSIVE MODE', {schema_literal});
        -- Nothing is appended to the month while it is compared with what the archive holds.
        EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', {schema_literal}, target);
        EXECUTE format(
            'SELECT p.tenant_id AS live_tenant, p.events, f.tenant_id AS archived_tenant, f.event_count'
            ' FROM (SELECT tenant_id, count(*) AS events FROM %I.%I GROUP BY tenant_id) p'
            ' FULL JOIN (SELECT tenant_id, event_count FROM %I.llm_ledger_retention_files'
            ' WHERE run_id = %L AND partition_name = %L) f ON f.tenant_id = p.tenant_id'
            ' WHERE p.tenant_id IS NULL OR f.tenant_id IS NULL OR p.events <> f.event_count LIMIT 1',
            {schema_literal}, target, {schema_literal}, run, target) INTO mismatch;
        IF mismatch IS NOT NULL THEN
            RAISE EXCEPTION 'llm-ledger: % holds % events of tenant %, the archive of run % holds %: not dropped',
                target, coalesce(mismatch.events, 0), coalesce(mismatch.live_tenant, mismatch.archived_tenant),
                run, coalesce(mismatch.event_count, 0);
        END IF;
        -- Every tenant's events of the month within its last seal: what the archive holds is what a seal proves.
        EXECUTE format(
            'SELECT p.tenant_id FROM %I.%I p LEFT JOIN LATERAL (SELECT s.through_tx, s.through_position'
            ' FROM %I.llm_ledger_seals s WHERE s.tenant_id = p.tenant_id ORDER BY s.sequence DESC LIMIT 1) s ON true'
            ' WHERE s.through_tx IS NULL'
            ' OR (p.tx_id, p.global_position) > (s.through_tx::text::xid8, s.through_position) LIMIT 1',
            {schema_literal}, target, {schema_literal}) INTO unsealed;
        IF unsealed IS NOT NULL THEN
            RAISE EXCEPTION 'llm-ledger: % holds events of tenant % after its last seal: not dropped',
                target, unsealed;
        END IF;
        EXECUTE format('SELECT count(*) FROM %I.%I', {schema_literal}, target) INTO held;
        IF held <> recorded.event_count THEN
            RAISE EXCEPTION 'llm-ledger: % holds % events, run % archived %: not dropped',
                target, held, run, recorded.event_count;
        END IF;
        EXECUTE format('ALTER TABLE %I.llm_ledger_events DETACH PARTITION %I.%I', {schema_literal}, {schema_literal},
            target);
        EXECUTE format('DROP TABLE %I.%I', {schema_literal}, target);
        RETURN held;
    END
    $$
"""


def _schema() -> tuple[str, str]:
    """The ledger's schema as an identifier and as a literal (offline: ``public``), as 0008 does."""
    if context.is_offline_mode():
        return "public", "'public'"
    row = op.get_bind().exec_driver_sql("SELECT quote_ident(current_schema()), quote_literal(current_schema())").one()
    return str(row[0]), str(row[1])


def _postgresql_upgrade() -> None:
    for name in _TABLES:
        op.execute(
            f"CREATE TRIGGER {name}_reject_update_delete BEFORE UPDATE OR DELETE ON {name}"
            " FOR EACH ROW EXECUTE FUNCTION llm_ledger_audit_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {name}_reject_truncate BEFORE TRUNCATE ON {name}"
            " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_audit_reject_change()"
        )
        op.execute(f"ALTER TABLE {name} ENABLE ALWAYS TRIGGER {name}_reject_update_delete")
        op.execute(f"ALTER TABLE {name} ENABLE ALWAYS TRIGGER {name}_reject_truncate")
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{_ROLE}') THEN
                BEGIN
                    CREATE ROLE {_ROLE} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT SELECT ON TABLE llm_ledger_alembic_version TO {_ROLE}")
    # What it reads to plan and archive a month; the verify before it runs as the auditor, a role of the login's.
    for name in _READ_TABLES:
        op.execute(f"GRANT SELECT ON TABLE {name} TO {_ROLE}")
        op.execute(f"CREATE POLICY {name}_retention_select ON {name} FOR SELECT TO {_ROLE} USING (true)")
    for name in _TABLES:
        op.execute(f"REVOKE ALL ON TABLE {name} FROM PUBLIC")
        op.execute(f"GRANT SELECT ON TABLE {name} TO llm_ledger_auditor")
        op.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {name}_auditor_select ON {name} FOR SELECT TO llm_ledger_auditor USING (true)")
        op.execute(f"CREATE POLICY {name}_retention_insert ON {name} FOR INSERT TO {_ROLE} WITH CHECK (true)")
        op.execute(f"CREATE POLICY {name}_retention_select ON {name} FOR SELECT TO {_ROLE} USING (true)")
    op.execute(f"GRANT SELECT, INSERT ON TABLE {_RUNS}, {_FILES} TO {_ROLE}")
    # FORCEd row-level security holds the owner too: the drop function, which runs as the owner, reads both.
    for name in _TABLES:
        op.execute(
            f"DO $$ BEGIN EXECUTE format('CREATE POLICY %I ON {name} FOR SELECT TO %I USING (true)',"
            f" '{name}_owner_select', current_user); END $$"
        )
    # The drop function reads each tenant's last seal; the seals' row-level security is FORCEd for the owner too.
    op.execute(
        "DO $$ BEGIN EXECUTE format('CREATE POLICY %I ON llm_ledger_seals FOR SELECT TO %I USING (true)',"
        " 'llm_ledger_seals_owner_select', current_user); END $$"
    )
    op.execute(_RUN_BY)
    op.execute(
        f"CREATE TRIGGER {_RUNS}_run_by BEFORE INSERT ON {_RUNS}"
        " FOR EACH ROW EXECUTE FUNCTION llm_ledger_retention_run_by()"
    )
    op.execute(f"ALTER TABLE {_RUNS} ENABLE ALWAYS TRIGGER {_RUNS}_run_by")
    op.execute(f"CREATE VIEW {_VIEW} WITH (security_invoker = true) AS {_VIEW_SELECT}")
    op.execute(f"REVOKE ALL ON TABLE {_VIEW} FROM PUBLIC")
    op.execute(f"GRANT SELECT ON TABLE {_VIEW} TO llm_ledger_auditor")
    schema, literal = _schema()
    op.execute(_DROP_FUNCTION.format(schema=schema, schema_literal=literal))
    op.execute("REVOKE ALL ON FUNCTION llm_ledger_drop_archived_partition(text, text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION llm_ledger_drop_archived_partition(text, text) TO {_ROLE}")


def _sqlite_upgrade() -> None:
    for table in _TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_reject_{operation.lower()} BEFORE {operation} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} rejected'); END"
            )
    op.execute(f"CREATE VIEW {_VIEW} AS {_VIEW_SELECT}")


_UPGRADES: dict[str, Callable[[], None]] = {"postgresql": _postgresql_upgrade, "sqlite": _sqlite_upgrade}


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    _tables()
    _UPGRADES[dialect]()


def downgrade() -> None:
    if context.is_offline_mode():
        raise DowngradeRefusedError(
            "downgrade of 0010 must see the retention runs to know there are none: run it online"
        )
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(f"LOCK TABLE {_RUNS} IN ACCESS EXCLUSIVE MODE")
        op.execute(f"ALTER TABLE {_RUNS} NO FORCE ROW LEVEL SECURITY")
    if op.get_bind().execute(sa.select(sa.exists().select_from(sa.table(_RUNS)))).scalar():
        raise DowngradeRefusedError(
            f"{_RUNS} records retention runs: they say which events left the database and where they are kept,"
            " and downgrading below 0010 would drop that record; refused"
        )
    op.execute(f"DROP VIEW {_VIEW}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION llm_ledger_drop_archived_partition(text, text)")
        op.execute("DROP POLICY llm_ledger_seals_owner_select ON llm_ledger_seals")
    for table in reversed(_TABLES):
        op.drop_table(table)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION llm_ledger_retention_run_by()")
        op.execute(f"REVOKE ALL ON TABLE llm_ledger_alembic_version FROM {_ROLE}")
        for name in _READ_TABLES:
            op.execute(f"DROP POLICY {name}_retention_select ON {name}")
            op.execute(f"REVOKE ALL ON TABLE {name} FROM {_ROLE}")
