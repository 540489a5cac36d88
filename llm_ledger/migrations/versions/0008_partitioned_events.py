"""PostgreSQL: the events table partitioned by month of its streams, with keys that lead with the tenant and
contain the partition key. SQLite keeps one table (nothing to do).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The key. ``PARTITION BY RANGE (stream_id)``, the column under ``COLLATE "C"``. Every stream id the library
makes is a UUIDv7 in lower-case text, whose first 12 hex digits are the stream's creation time in
milliseconds, so byte order is time order and a month of streams is one range of ids. Not ``occurred_at``:
PostgreSQL wants the partition key in every primary and unique key, and with ``occurred_at`` in it the
stream-position key would only refuse a second event at a position when both had the same time, so two
writers of one position at different times would both succeed. With ``stream_id``:

- ``PRIMARY KEY (tenant_id, stream_id, stream_position)`` is the position conflict (optimistic concurrency);
- ``UNIQUE (tenant_id, stream_id, event_id)`` is idempotency: a replayed event has the same stream, and the
  store's ``ON CONFLICT (tenant_id, stream_id, event_id) DO NOTHING`` skips it;
- a stream (an execution) never straddles two partitions, so a sealed time range can later be dropped as
  whole partitions.

``global_position`` stays an ALWAYS identity: unique by its sequence (only the owner can name a position,
``OVERRIDING SYSTEM VALUE``), ordered by the ``(tx_id, global_position)`` cursor index. No index on it alone:
nothing looks an event up by its position, and the ingest path pays for every index. PostgreSQL refuses
``PARTITION BY RANGE (stream_id COLLATE "C")`` with a key whose index uses the column's own collation, so
the column itself is ``COLLATE "C"`` (for hex text, equality is unchanged).

Partitions: ``llm_ledger_events_YYYY_MM`` holds the streams whose id falls in that month (UTC), from the
UUIDv7 floor of its first millisecond (``llm_ledger_month_floor``) to the next month's. The DEFAULT partition
``llm_ledger_events_default`` takes a stream outside every created month (a missing future partition, a
clock far off, an id that is not a UUIDv7 in old data): an event is never refused for want of a partition.
``llm_ledger_ensure_partitions(months_ahead)`` creates the months from the current one through
``months_ahead`` (0 to 36) that are missing; the writer calls it at start and about daily, ``llm-ledger db
partitions`` on demand. It is SECURITY DEFINER (it runs as the owner, who alone may create tables), with a
pinned search path, names built from dates only, a bounded month count, an advisory lock (two writers at
once create each month once) and a 2 s ``lock_timeout``. Each month is created apart and then ATTACHed,
which locks the table in SHARE UPDATE EXCLUSIVE mode (inserts and reads go on) and the default partition
in ACCESS EXCLUSIVE mode (a query reading it waits, at most that timeout). A month whose range the
DEFAULT partition already holds rows of is skipped with a WARNING: PostgreSQL would refuse the partition
(those rows would violate the default's new constraint), and moving evidence rows is not something to do
unattended; those streams stay readable in the default, and ``db partitions`` reports its rows.

What a partition does not inherit is added to each: the statement-level TRUNCATE trigger (row triggers are
cloned, with their ALWAYS state). Partitions get no grants: the application roles reach them through the
parent only, where its row-level security applies (a partition's own would not).

The conversion rewrites the table once, in the migration's transaction: every row is copied as it is
(``global_position`` by ``OVERRIDING SYSTEM VALUE``, ``tx_id``, ``recorded_at``, ``hash``, ``prev_hash``, the
payload ``jsonb`` to ``jsonb``), the identity continues after the old one, and the grants (column grants too), the
comments, row-level security (flags and policies) and the views reading the table (found in the catalog,
recreated with their options, owners, grants, column grants and comments: a renamed table keeps its views)
are carried over. The table's definition is written out here as it
is when this revision ships. Its downgrade converts back the same way, refused when two events of a tenant
share an event id in different streams (the old key refused that; the new one allows it).
"""

from __future__ import annotations

from alembic import context, op

from llm_ledger.store.migrate import DowngradeRefusedError

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_EVENTS = "llm_ledger_events"
_OLD = "llm_ledger_events_old"
_DEFAULT = "llm_ledger_events_default"
_MONTHS_AHEAD = 3
_COLUMNS = (
    "global_position, tenant_id, event_id, event_type, schema_version, stream_id, stream_position, agent_id,"
    " session_id, turn_id, step, occurred_at, trace_id, span_id, payload, prev_hash, hash, recorded_at, tx_id"
)


def _table(partitioned: bool) -> str:
    """The events table as each layout defines it (0001's, with ``tx_id`` last as 0001 added it)."""
    collation = ' COLLATE "C"' if partitioned else ""
    if partitioned:
        keys = """
            CONSTRAINT pk_llm_ledger_events PRIMARY KEY (tenant_id, stream_id, stream_position),
            CONSTRAINT uq_llm_ledger_events_tenant_id_stream_id_event_id UNIQUE (tenant_id, stream_id, event_id),"""
    else:
        keys = """
            CONSTRAINT pk_llm_ledger_events PRIMARY KEY (global_position),
            CONSTRAINT uq_llm_ledger_events_tenant_id_event_id UNIQUE (tenant_id, event_id),
            CONSTRAINT uq_llm_ledger_events_tenant_id_stream_id_stream_position
                UNIQUE (tenant_id, stream_id, stream_position),"""
    return f"""
        CREATE TABLE {_EVENTS} (
            global_position bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            tenant_id text NOT NULL,
            event_id varchar(36) NOT NULL,
            event_type varchar(40) NOT NULL,
            schema_version smallint NOT NULL,
            stream_id varchar(36){collation} NOT NULL,
            stream_position integer NOT NULL,
            agent_id text,
            session_id text,
            turn_id text,
            step text,
            occurred_at timestamptz NOT NULL,
            trace_id varchar(32),
            span_id varchar(16),
            payload jsonb NOT NULL,
            prev_hash varchar(64),
            hash varchar(64) NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
            tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),{keys}
            CONSTRAINT ck_llm_ledger_events_tenant_id_not_empty CHECK (tenant_id <> '')
        ){" PARTITION BY RANGE (stream_id)" if partitioned else ""}
    """


_INDEXES = (
    f"CREATE INDEX ix_llm_ledger_events_tenant_id_occurred_at ON {_EVENTS} (tenant_id, occurred_at)",
    f"CREATE INDEX ix_llm_ledger_events_tenant_id_session_id_occurred_at ON {_EVENTS}"
    " (tenant_id, session_id, occurred_at)",
    f"CREATE INDEX ix_llm_ledger_events_tx_id_global_position ON {_EVENTS} (tx_id, global_position)",
)

_TRIGGERS = (
    f"CREATE TRIGGER llm_ledger_events_reject_update_delete BEFORE UPDATE OR DELETE ON {_EVENTS}"
    " FOR EACH ROW EXECUTE FUNCTION llm_ledger_events_reject_change()",
    f"CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON {_EVENTS}"
    " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_events_reject_change()",
    # As in 0001: plain ENABLE would skip them under session_replication_role = replica. On a partitioned
    # table, the row trigger's clones on the partitions take this state.
    f"ALTER TABLE {_EVENTS} ENABLE ALWAYS TRIGGER llm_ledger_events_reject_update_delete",
    f"ALTER TABLE {_EVENTS} ENABLE ALWAYS TRIGGER llm_ledger_events_reject_truncate",
)

_VIEWS_TABLE = "llm_ledger_0008_views"

_SAVE_VIEWS = f"""
    CREATE TEMP TABLE {_VIEWS_TABLE} ON COMMIT DROP AS
    WITH RECURSIVE dependent(oid, depth) AS (
        SELECT DISTINCT r.ev_class, 1
        FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = '{_EVENTS}'::regclass
            AND r.ev_class <> '{_EVENTS}'::regclass
        UNION
        SELECT r.ev_class, dependent.depth + 1
        FROM dependent JOIN pg_depend d ON d.refobjid = dependent.oid AND d.classid = 'pg_rewrite'::regclass
            JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class <> dependent.oid
    )
    SELECT c.oid, n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid) AS definition, c.reloptions, c.relacl,
        c.relowner, obj_description(c.oid, 'pg_class') AS description,
        max(dependent.depth) AS depth
    FROM dependent JOIN pg_class c ON c.oid = dependent.oid JOIN pg_namespace n ON n.oid = c.relnamespace
    GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.reloptions, c.relacl, c.relowner
"""

# A view's columns' grants and comments, which go with it when it is dropped.
_SAVE_VIEW_COLUMNS = f"""
    CREATE TEMP TABLE {_VIEWS_TABLE}_columns ON COMMIT DROP AS
    SELECT a.attrelid AS oid, a.attname, a.attacl, col_description(a.attrelid, a.attnum) AS description
    FROM pg_attribute a JOIN {_VIEWS_TABLE} v ON v.oid = a.attrelid
    WHERE a.attnum > 0 AND NOT a.attisdropped
        AND (a.attacl IS NOT NULL OR col_description(a.attrelid, a.attnum) IS NOT NULL)
"""

_DROP_VIEWS = f"""
    DO $$
    DECLARE
        v record;
    BEGIN
        IF EXISTS (SELECT FROM {_VIEWS_TABLE} WHERE relkind <> 'v') THEN
            RAISE EXCEPTION 'a materialized view reads {_EVENTS}: drop it before this migration and recreate it after';
        END IF;
        FOR v IN SELECT * FROM {_VIEWS_TABLE} ORDER BY depth DESC LOOP
            EXECUTE format('DROP VIEW %I.%I', v.nspname, v.relname);
        END LOOP;
    END
    $$
"""

_RESTORE_VIEWS = f"""
    DO $$
    DECLARE
        v record;
        grant_ record;
        column_ record;
    BEGIN
        FOR v IN SELECT * FROM {_VIEWS_TABLE} ORDER BY depth, oid LOOP
            EXECUTE format('CREATE VIEW %I.%I%s AS %s', v.nspname, v.relname,
                CASE WHEN v.reloptions IS NULL THEN '' ELSE ' WITH (' || array_to_string(v.reloptions, ', ') || ')' END,
                v.definition);
            -- Its owner as before (an operator's view owned by another role would otherwise be the migrating
            -- user's, and its owner would lose it): refused, stopping the migration, unless the migrating user
            -- may act as that role.
            IF v.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
                EXECUTE format('ALTER VIEW %I.%I OWNER TO %I', v.nspname, v.relname, pg_get_userbyid(v.relowner));
            END IF;
            EXECUTE format('REVOKE ALL ON TABLE %I.%I FROM PUBLIC', v.nspname, v.relname);
            FOR grant_ IN SELECT a.grantee, a.privilege_type FROM aclexplode(v.relacl) a
                    WHERE a.grantee <> v.relowner LOOP
                EXECUTE format('GRANT %s ON TABLE %I.%I TO %s', grant_.privilege_type, v.nspname, v.relname,
                    CASE grant_.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END);
            END LOOP;
            IF v.description IS NOT NULL THEN
                EXECUTE format('COMMENT ON VIEW %I.%I IS %L', v.nspname, v.relname, v.description);
            END IF;
            FOR column_ IN SELECT * FROM {_VIEWS_TABLE}_columns WHERE oid = v.oid LOOP
                FOR grant_ IN SELECT a.grantee, a.privilege_type FROM aclexplode(column_.attacl) a LOOP
                    EXECUTE format('GRANT %s (%I) ON TABLE %I.%I TO %s', grant_.privilege_type, column_.attname,
                        v.nspname, v.relname, CASE grant_.grantee WHEN 0 THEN 'PUBLIC'
                        ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END);
                END LOOP;
                IF column_.description IS NOT NULL THEN
                    EXECUTE format('COMMENT ON COLUMN %I.%I.%I IS %L', v.nspname, v.relname, column_.attname,
                        column_.description);
                END IF;
            END LOOP;
        END LOOP;
    END
    $$
"""


def _set_old_aside() -> str:
    """The old table, its identity sequence and its indexes renamed out of the new one's way (index and
    constraint names are per schema); row-level security off for the owner, who copies it."""
    return f"""
        DO $$
        DECLARE
            index_name text;
        BEGIN
            ALTER TABLE {_EVENTS} RENAME TO {_OLD};
            EXECUTE format('ALTER SEQUENCE %s RENAME TO {_OLD}_global_position_seq',
                pg_get_serial_sequence('{_OLD}', 'global_position'));
            FOR index_name IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                    WHERE i.indrelid = '{_OLD}'::regclass AND c.relkind IN ('i', 'I') LOOP
                EXECUTE format('ALTER INDEX %I RENAME TO %I', index_name, left(index_name, 58) || '_old');
            END LOOP;
            ALTER TABLE {_OLD} NO FORCE ROW LEVEL SECURITY;
        END
        $$
    """


_COPY_ROWS = f"""
    INSERT INTO {_EVENTS} ({_COLUMNS}) OVERRIDING SYSTEM VALUE
    SELECT {_COLUMNS} FROM {_OLD} ORDER BY global_position
"""

_CONTINUE_IDENTITY = f"""
    DO $$
    DECLARE
        old_last bigint;
        old_called boolean;
        last_position bigint;
    BEGIN
        EXECUTE 'SELECT last_value, is_called FROM {_OLD}_global_position_seq' INTO old_last, old_called;
        SELECT max(global_position) INTO last_position FROM {_OLD};
        -- After the highest position given, stored or not (a rolled-back insert burns one): none is reused.
        last_position := greatest(coalesce(last_position, 0), CASE WHEN old_called THEN old_last ELSE 0 END);
        IF last_position > 0 THEN
            PERFORM setval(pg_get_serial_sequence('{_EVENTS}', 'global_position'), last_position, true);
        END IF;
    END
    $$
"""

_COPY_GRANTS_AND_ROW_SECURITY = f"""
    DO $$
    DECLARE
        source oid := '{_OLD}'::regclass;
        grant_ record;
        policy record;
    BEGIN
        REVOKE ALL ON TABLE {_EVENTS} FROM PUBLIC;
        FOR grant_ IN SELECT a.grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = source AND a.grantee <> c.relowner LOOP
            EXECUTE format('GRANT %s ON TABLE {_EVENTS} TO %s', grant_.privilege_type,
                CASE grant_.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END);
        END LOOP;
        FOR policy IN SELECT * FROM pg_policies WHERE schemaname = current_schema() AND tablename = '{_OLD}' LOOP
            EXECUTE format('CREATE POLICY %I ON {_EVENTS} AS %s FOR %s TO %s%s%s', policy.policyname,
                policy.permissive, policy.cmd,
                (SELECT string_agg(CASE r WHEN 'public' THEN 'PUBLIC' ELSE quote_ident(r) END, ', ')
                    FROM unnest(policy.roles) r),
                CASE WHEN policy.qual IS NULL THEN '' ELSE ' USING (' || policy.qual || ')' END,
                CASE WHEN policy.with_check IS NULL THEN '' ELSE ' WITH CHECK (' || policy.with_check || ')' END);
        END LOOP;
        -- Column grants (a role granted some columns only) and comments, which a table-level copy misses.
        FOR grant_ IN SELECT a.attname, x.grantee, x.privilege_type
                FROM pg_attribute a, aclexplode(a.attacl) x
                WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped LOOP
            EXECUTE format('GRANT %s (%I) ON TABLE {_EVENTS} TO %s', grant_.privilege_type, grant_.attname,
                CASE grant_.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END);
        END LOOP;
        IF obj_description(source, 'pg_class') IS NOT NULL THEN
            EXECUTE format('COMMENT ON TABLE {_EVENTS} IS %L', obj_description(source, 'pg_class'));
        END IF;
        FOR grant_ IN SELECT a.attname, col_description(source, a.attnum) AS description FROM pg_attribute a
                WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
                    AND col_description(source, a.attnum) IS NOT NULL LOOP
            EXECUTE format('COMMENT ON COLUMN {_EVENTS}.%I IS %L', grant_.attname, grant_.description);
        END LOOP;
        -- The old table's FORCE was lifted for the copy; 0001 made it ENABLE and FORCE.
        ALTER TABLE {_EVENTS} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {_EVENTS} FORCE ROW LEVEL SECURITY;
    END
    $$
"""

_MONTH_FLOOR = """
    CREATE FUNCTION llm_ledger_month_floor(month timestamp) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        -- The smallest UUIDv7 text of the first millisecond of month (a UTC timestamp): the first 12 hex
        -- digits are the Unix time in milliseconds.
        SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-0000-0000-000000000000'
        FROM (SELECT lpad(to_hex((extract(epoch FROM month) * 1000)::bigint), 12, '0') AS h) AS hex
    $$
"""


def _ensure_function(schema: str, schema_literal: str) -> str:
    # Every name qualified with the ledger's schema, and search_path pinned: a SECURITY DEFINER function
    # must not run the caller's objects as the owner.
    return f"""
        CREATE FUNCTION llm_ledger_ensure_partitions(months_ahead integer DEFAULT {_MONTHS_AHEAD})
        RETURNS SETOF text
        LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        SET lock_timeout = '2s'
        AS $$
        DECLARE
            first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
            month timestamp;
            name text;
            low text;
            high text;
            held bigint;
        BEGIN
            IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 36 THEN
                RAISE EXCEPTION 'months_ahead must be 0 to 36, not %', months_ahead;
            END IF;
            PERFORM pg_advisory_xact_lock(hashtext('llm_ledger_ensure_partitions'));
            FOR i IN 0..months_ahead LOOP
                month := first_month + make_interval(months => i);
                name := 'llm_ledger_events_' || to_char(month, 'YYYY_MM');
                CONTINUE WHEN to_regclass(format('%I.%I', {schema_literal}, name)) IS NOT NULL;
                low := {schema}.llm_ledger_month_floor(month);
                high := {schema}.llm_ledger_month_floor(month + interval '1 month');
                SELECT count(*) INTO held FROM {schema}.{_DEFAULT} WHERE stream_id >= low AND stream_id < high;
                IF held > 0 THEN
                    RAISE WARNING 'llm-ledger: partition % not created: the default partition holds % events of its'
                        ' streams (they stay there, readable); llm-ledger db partitions lists them', name, held;
                    CONTINUE;
                END IF;
                -- Made apart, then attached: ATTACH takes SHARE UPDATE EXCLUSIVE on the table (inserts and reads
                -- go on), where CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and queue every insert
                -- behind the longest running reader. The indexes and row triggers come with the attachment.
                EXECUTE format('CREATE TABLE %I.%I (LIKE {schema}.{_EVENTS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                    {schema_literal}, name);
                EXECUTE format('ALTER TABLE {schema}.{_EVENTS} ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                    {schema_literal}, name, low, high);
                -- Row triggers are cloned onto a partition; the statement-level TRUNCATE trigger is not.
                EXECUTE format('CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON %I.%I'
                    ' FOR EACH STATEMENT EXECUTE FUNCTION {schema}.llm_ledger_events_reject_change()',
                    {schema_literal}, name);
                EXECUTE format('ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER llm_ledger_events_reject_truncate',
                    {schema_literal}, name);
                RETURN NEXT name;
            END LOOP;
        END
        $$
    """


_DEFAULT_PARTITION = (
    f"CREATE TABLE {_DEFAULT} PARTITION OF {_EVENTS} DEFAULT",
    f"CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON {_DEFAULT}"
    " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_events_reject_change()",
    f"ALTER TABLE {_DEFAULT} ENABLE ALWAYS TRIGGER llm_ledger_events_reject_truncate",
)


_GRANT_ENSURE = """
    DO $$
    BEGIN
        REVOKE ALL ON FUNCTION llm_ledger_ensure_partitions(integer) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION llm_ledger_ensure_partitions(integer) TO llm_ledger_writer;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_ingest') THEN
            GRANT EXECUTE ON FUNCTION llm_ledger_ensure_partitions(integer) TO llm_ledger_ingest;
        END IF;
    END
    $$
"""

_UUID7_TEXT = "'^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'"

_PARTITIONS_FOR_DATA = f"""
    DO $$
    DECLARE
        month timestamp;
        name text;
    BEGIN
        -- Each month that streams of the old table were started in (by their UUIDv7 time), from 2020 to the
        -- months the ensure function creates anyway: an id that is not a UUIDv7, or far off in time, would
        -- make a partition of its own; its streams go to the default partition instead.
        FOR month IN
            SELECT DISTINCT date_trunc('month', to_timestamp(
                ('x' || lpad(substr(replace(stream_id, '-', ''), 1, 12), 16, '0'))::bit(64)::bigint / 1000.0)
                AT TIME ZONE 'UTC')
            FROM {_OLD} WHERE stream_id ~ {_UUID7_TEXT}
        LOOP
            CONTINUE WHEN month < timestamp '2020-01-01' OR month >= date_trunc('month', now() AT TIME ZONE 'UTC');
            name := 'llm_ledger_events_' || to_char(month, 'YYYY_MM');
            EXECUTE format('CREATE TABLE %I PARTITION OF {_EVENTS} FOR VALUES FROM (%L) TO (%L)', name,
                llm_ledger_month_floor(month), llm_ledger_month_floor(month + interval '1 month'));
            EXECUTE format('CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON %I'
                ' FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_events_reject_change()', name);
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER llm_ledger_events_reject_truncate', name);
        END LOOP;
    END
    $$
"""


def _schema() -> tuple[str, str]:
    """The ledger's schema as an identifier and as a literal, for the SECURITY DEFINER function's qualified
    names (offline: ``public``)."""
    if context.is_offline_mode():
        return "public", "'public'"
    row = op.get_bind().exec_driver_sql("SELECT quote_ident(current_schema()), quote_literal(current_schema())").one()
    return str(row[0]), str(row[1])


def _convert(partitioned: bool) -> None:
    """Rebuild the events table in the other layout, keeping every row, grant, policy and view."""
    op.execute(_SAVE_VIEWS)
    op.execute(_SAVE_VIEW_COLUMNS)
    op.execute(_DROP_VIEWS)
    op.execute(_set_old_aside())
    op.execute(_table(partitioned))
    for statement in (*_INDEXES, *_TRIGGERS):
        op.execute(statement)
    if partitioned:
        # Every partition the rows need before they are copied: the default one, the past months holding
        # streams, and the current month and those ahead.
        op.execute(_MONTH_FLOOR)
        for statement in _DEFAULT_PARTITION:
            op.execute(statement)
        op.execute(_PARTITIONS_FOR_DATA)
        op.execute(_ensure_function(*_schema()))
        op.execute(_GRANT_ENSURE)
        op.execute(f"SELECT count(*) FROM llm_ledger_ensure_partitions({_MONTHS_AHEAD})")
    op.execute(_COPY_ROWS)
    op.execute(_CONTINUE_IDENTITY)
    op.execute(_COPY_GRANTS_AND_ROW_SECURITY)
    op.execute(f"DROP TABLE {_OLD}")  # RESTRICT: anything else still reading it stops the migration, named
    op.execute(_RESTORE_VIEWS)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    _convert(partitioned=True)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    if context.is_offline_mode():
        raise DowngradeRefusedError("downgrade of 0008 must see the events to know it can keep them: run it online")
    bind = op.get_bind()
    op.execute(f"ALTER TABLE {_EVENTS} NO FORCE ROW LEVEL SECURITY")
    shared = bind.exec_driver_sql(
        f"SELECT count(*) FROM (SELECT FROM {_EVENTS} GROUP BY tenant_id, event_id HAVING count(*) > 1) AS s"
    ).scalar()
    op.execute(f"ALTER TABLE {_EVENTS} FORCE ROW LEVEL SECURITY")
    if shared:
        raise DowngradeRefusedError(
            f"{shared} event ids are each stored in more than one stream of a tenant, which the unpartitioned"
            " table's key (tenant_id, event_id) refuses: downgrading below 0008 would lose events; refused"
        )
    op.execute("DROP FUNCTION llm_ledger_ensure_partitions(integer)")
    _convert(partitioned=False)
    op.execute("DROP FUNCTION llm_ledger_month_floor(timestamp)")
