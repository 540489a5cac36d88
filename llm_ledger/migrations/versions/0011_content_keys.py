"""Data keys of captured content, erasures, and their roles and audit views (docs/AUDIT.md: erasure).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

- ``llm_ledger_content_keys``: one random 256-bit AES-GCM key per tenant, subject and session (and writer:
  ``events.encryption``), ``(tenant_id, key_id)`` its key. No UPDATE or TRUNCATE ever (triggers that fire
  always); a DELETE only inside ``llm_ledger_erase`` (the trigger wants the setting ``llm_ledger.erasing``,
  which only that function sets; nobody holds DELETE on the table).
- Keys are written by the writer through ``llm_ledger_store_content_keys(jsonb)``, a SECURITY DEFINER
  function that inserts and returns how many keys it did not store because an erasure of their session or
  subject came after they were made (those it names in an erasure record of their own: destroyed on
  arrival): the writer (and the ingest role of its direct COPY) may store keys in the transaction of their
  events but never read one, so a writer's login cannot decrypt.
- ``llm_ledger_erase(tenant, session, subject)``, SECURITY DEFINER, EXECUTE for ``llm_ledger_eraser``
  only: deletes the keys of one session or subject, counts the events they encrypted and records exactly
  the keys deleted, in one step. It and the key store take one advisory lock per (tenant, session) and
  (tenant, subject) (``llm_ledger_erasure_lock``), so a key is stored either before an erasure (and
  deleted by it) or after it (and checked against it).
- Both run as the owner, whom FORCEd row-level security subjects to the policies: owner policies on both
  tables and a SELECT one on the events let a non-superuser owner (the deploy's migrating login) run them.
  Their names are schema-qualified and their search_path ``pg_catalog, pg_temp`` (as 0008's function).
- ``llm_ledger_keyholder`` may read keys and erasure records (its tenant's, under row-level security): a
  reading login granted it sees content; ``llm_ledger_eraser`` may see a key's owner columns (not its
  secret), read the events and erasure records of its tenant and execute the erase;
  ``llm_ledger_auditor`` may see every key's tenant and id (not its secret), for ``audit_content``.
- ``llm_ledger_erasures``: append-only record of each erasure (tenant, subject or session, key ids
  destroyed, events affected, when, by whom = ``session_user``), never content; ``llm_ledger_auditor``
  reads it, through ``audit_erasures`` too.
- ``audit_content``: one row per encrypted text of an event (field, sizes, digest, key id), whether its
  key was erased (named by an erasure record) and ``key_state``: ``kept``, ``erased`` or ``missing`` (neither
  stored nor erased: a loss). The auditor may see a key's tenant and id, never its secret.

SQLite gets the tables, the append-only triggers and the views (one local file: no roles).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from llm_ledger.store.migrate import DowngradeRefusedError

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
_KEYS = "llm_ledger_content_keys"
_ERASURES = "llm_ledger_erasures"
_EVENTS = "llm_ledger_events"
_ROLES = ("llm_ledger_keyholder", "llm_ledger_eraser")
_VIEWS = ("audit_content", "audit_erasures")


def _roles() -> None:
    # Roles are cluster-wide: two databases migrating at once may race to create one (as in 0001).
    op.execute(
        f"""
        DO $$
        DECLARE
            name text;
        BEGIN
            FOREACH name IN ARRAY ARRAY['{_ROLES[0]}', '{_ROLES[1]}'] LOOP
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


def _tables() -> None:
    uuid = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
    op.create_table(
        _KEYS,
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("key_id", uuid, nullable=False),
        sa.Column("subject_id", sa.Text()),
        sa.Column("session_id", sa.Text()),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.CheckConstraint("tenant_id <> ''", name=op.f(f"ck_{_KEYS}_tenant_id_not_empty")),
        sa.CheckConstraint("length(secret) = 32", name=op.f(f"ck_{_KEYS}_secret_is_256_bits")),
        sa.PrimaryKeyConstraint("tenant_id", "key_id", name=op.f(f"pk_{_KEYS}")),
    )
    op.create_index(op.f(f"ix_{_KEYS}_tenant_id_session_id"), _KEYS, ["tenant_id", "session_id"])
    op.create_index(op.f(f"ix_{_KEYS}_tenant_id_subject_id"), _KEYS, ["tenant_id", "subject_id"])
    op.create_table(
        _ERASURES,
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("erasure_id", uuid, nullable=False),
        sa.Column("subject_id", sa.Text()),
        sa.Column("session_id", sa.Text()),
        sa.Column("key_ids", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("key_count", sa.Integer(), nullable=False),
        sa.Column("events_affected", sa.Integer(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.Column("erased_by", sa.Text(), nullable=False),
        sa.CheckConstraint("tenant_id <> ''", name=op.f(f"ck_{_ERASURES}_tenant_id_not_empty")),
        sa.PrimaryKeyConstraint("tenant_id", "erasure_id", name=op.f(f"pk_{_ERASURES}")),
    )
    op.create_index(op.f(f"ix_{_ERASURES}_tenant_id_erased_at"), _ERASURES, ["tenant_id", "erased_at"])


def _schema() -> tuple[str, str]:
    """The ledger's schema as an identifier and as a literal, for the SECURITY DEFINER functions' qualified
    names (offline: ``public``), as 0008's."""
    if context.is_offline_mode():
        return "public", "'public'"
    row = op.get_bind().exec_driver_sql("SELECT quote_ident(current_schema()), quote_literal(current_schema())").one()
    return str(row[0]), str(row[1])


def _postgresql_guards() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {_KEYS}_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND current_setting('llm_ledger.erasing', true) = 'on' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION '{_KEYS}: % rejected (a key is deleted only by llm-ledger erase)', TG_OP;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {_ERASURES}_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{_ERASURES} is append-only: % rejected', TG_OP;
        END
        $$
        """
    )
    for table, guard in ((_KEYS, f"{_KEYS}_guard"), (_ERASURES, f"{_ERASURES}_reject_change")):
        op.execute(
            f"CREATE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {guard}()"
        )
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} EXECUTE FUNCTION {guard}()")
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_guard")
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate")
    schema, _ = _schema()
    for function in _functions(schema):
        op.execute(function)


def _functions(schema: str) -> tuple[str, ...]:
    """The erasure lock, the writer's key store and the eraser's erase: every name qualified with the
    ledger's schema and search_path pinned with pg_temp last (as 0008's), so that a SECURITY DEFINER function
    never runs a caller's object (a TEMP table of the same name) as the owner."""
    keys, erasures, events = f"{schema}.{_KEYS}", f"{schema}.{_ERASURES}", f"{schema}.{_EVENTS}"
    lock = f"{schema}.llm_ledger_erasure_lock"
    records = "jsonb_to_recordset(keys) AS k(tenant_id text, key_id text, subject_id text, session_id text,"
    records += " secret text, created_at text)"
    # A key made before an erasure of its session or subject (a journal replayed, a batch retried after the
    # erasure) stays erased: it is not stored. A NULL owner matches no erasure (SQL's NULL = NULL is unknown).
    erased_since = f"""EXISTS (
                SELECT FROM {erasures} x
                WHERE x.tenant_id = k.tenant_id AND x.erased_at >= k.created_at::timestamptz
                  AND (x.session_id = k.session_id OR x.subject_id = k.subject_id))"""
    return (
        # One lock per tenant and session and per tenant and subject: the key store and the erase of either
        # take it, so a key is either stored before an erasure (and destroyed by it) or checked after it.
        f"""
        CREATE FUNCTION {lock}(tenant text, kind text, owner text) RETURNS bigint
        LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
            SELECT hashtextextended('llm_ledger_erasure/' || tenant || '/' || kind || '/' || owner, 0)
        $$
        """,
        f"""
        CREATE FUNCTION {schema}.llm_ledger_store_content_keys(keys jsonb) RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            scope text := NULLIF(current_setting('llm_ledger.tenant_id', true), '');
            skipped integer;
        BEGIN
            -- A transaction scoped to a tenant stores that tenant's keys only.
            IF scope IS NOT NULL AND EXISTS (SELECT FROM {records} WHERE k.tenant_id IS DISTINCT FROM scope) THEN
                RAISE EXCEPTION 'llm_ledger_store_content_keys: a key of another tenant than %, which the transaction'
                    ' is scoped to', scope;
            END IF;
            -- In one order, whatever the batch: two writers never wait on each other crosswise.
            PERFORM pg_advisory_xact_lock(l.id) FROM (
                SELECT {lock}(k.tenant_id, 'session', k.session_id) AS id FROM {records} WHERE k.session_id IS NOT NULL
                UNION
                SELECT {lock}(k.tenant_id, 'subject', k.subject_id) FROM {records} WHERE k.subject_id IS NOT NULL
            ) AS l ORDER BY l.id;
            SELECT count(*) INTO skipped FROM {records} WHERE {erased_since};
            -- Each key destroyed on arrival is named by an erasure record too (the covering erasure's owner, by
            -- this login, no event stored yet), once: a key that no record names and no row holds is a loss.
            INSERT INTO {erasures} (erasure_id, tenant_id, subject_id, session_id, key_ids, key_count,
                                    events_affected, erased_at, erased_by)
            SELECT gen_random_uuid(), k.tenant_id, c.subject_id, c.session_id, jsonb_build_array(k.key_id), 1, 0,
                   clock_timestamp(), session_user
            FROM {records}
            CROSS JOIN LATERAL (
                SELECT x.subject_id, x.session_id FROM {erasures} x
                WHERE x.tenant_id = k.tenant_id AND x.erased_at >= k.created_at::timestamptz
                  AND (x.session_id = k.session_id OR x.subject_id = k.subject_id)
                ORDER BY x.erased_at DESC LIMIT 1
            ) AS c
            WHERE NOT EXISTS (SELECT FROM {erasures} y WHERE y.tenant_id = k.tenant_id AND y.key_ids ? k.key_id);
            INSERT INTO {keys} (tenant_id, key_id, subject_id, session_id, secret, created_at)
            SELECT k.tenant_id, k.key_id::uuid, k.subject_id, k.session_id, decode(k.secret, 'base64'),
                   k.created_at::timestamptz
            FROM {records}
            WHERE NOT {erased_since}
            ON CONFLICT (tenant_id, key_id) DO NOTHING;
            RETURN skipped;
        END
        $$
        """,
        # The only way to delete a key: deletes the keys of one session or subject and records exactly those
        # in the same step; the eraser may execute it and holds no DELETE of its own.
        f"""
        CREATE FUNCTION {schema}.llm_ledger_erase(tenant text, session text, subject text)
        RETURNS TABLE (erasure_id uuid, key_ids jsonb, events_affected integer, erased_at timestamptz)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            destroyed text[];
            sessions text[];
            with_null boolean;
            affected integer;
            made uuid := gen_random_uuid();
            at timestamptz;
        BEGIN
            IF tenant IS NULL OR tenant = '' OR (session IS NULL) = (subject IS NULL) THEN
                RAISE EXCEPTION 'llm_ledger_erase: name a tenant and one session or one subject';
            END IF;
            PERFORM set_config('llm_ledger.erasing', 'on', true);
            -- After the lock: a key stored before it is deleted here, one stored after it sees this record.
            IF session IS NOT NULL THEN
                PERFORM pg_advisory_xact_lock({lock}(tenant, 'session', session));
                WITH gone AS (
                    DELETE FROM {keys} c WHERE c.tenant_id = tenant AND c.session_id = session
                    RETURNING CAST(c.key_id AS text) AS key_id, c.session_id
                )
                SELECT array_agg(g.key_id ORDER BY g.key_id), array_agg(DISTINCT g.session_id),
                       bool_or(g.session_id IS NULL)
                INTO destroyed, sessions, with_null FROM gone g;
            ELSE
                PERFORM pg_advisory_xact_lock({lock}(tenant, 'subject', subject));
                WITH gone AS (
                    DELETE FROM {keys} c WHERE c.tenant_id = tenant AND c.subject_id = subject
                    RETURNING CAST(c.key_id AS text) AS key_id, c.session_id
                )
                SELECT array_agg(g.key_id ORDER BY g.key_id), array_agg(DISTINCT g.session_id),
                       bool_or(g.session_id IS NULL)
                INTO destroyed, sessions, with_null FROM gone g;
            END IF;
            PERFORM set_config('llm_ledger.erasing', 'off', true);
            at := clock_timestamp();  -- a key made before this moment and stored later stays erased
            IF destroyed IS NULL THEN
                RETURN;  -- nothing to destroy: nothing recorded
            END IF;
            SELECT count(*) INTO affected FROM {events} e
            WHERE e.tenant_id = tenant AND (e.session_id = ANY(sessions) OR (with_null AND e.session_id IS NULL))
              AND EXISTS (SELECT FROM jsonb_path_query(e.payload, 'lax $.**.encrypted.key_id') AS p(id)
                          WHERE p.id #>> '{{}}' = ANY(destroyed));
            INSERT INTO {erasures} (erasure_id, tenant_id, subject_id, session_id, key_ids, key_count,
                                    events_affected, erased_at, erased_by)
            VALUES (made, tenant, subject, session, to_jsonb(destroyed), cardinality(destroyed), affected, at,
                    session_user);
            RETURN QUERY SELECT made, to_jsonb(destroyed), affected, at;
        END
        $$
        """,
    )


def _postgresql_grants() -> None:
    _roles()
    for table in (_KEYS, _ERASURES):
        op.execute(f"REVOKE ALL ON TABLE {table} FROM PUBLIC")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        # The functions above run as the owner, whom FORCE subjects to the policies: without a policy of
        # its own, a non-superuser owner (the deploy's migrating login) would insert and see no row in them.
        op.execute(f"CREATE POLICY {table}_owner ON {table} FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true)")
    # The erase counts the events of the sessions it erased, as the owner (a SELECT only, and only the
    # owner, who could lift the FORCE anyway).
    op.execute(f"CREATE POLICY {_EVENTS}_owner_select ON {_EVENTS} FOR SELECT TO CURRENT_USER USING (true)")
    for function, roles in (
        ("llm_ledger_store_content_keys(jsonb)", "llm_ledger_writer, llm_ledger_ingest"),
        ("llm_ledger_erase(text, text, text)", "llm_ledger_eraser"),
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {roles}")
    op.execute(f"GRANT SELECT ON TABLE {_KEYS} TO llm_ledger_keyholder")
    op.execute(
        f"CREATE POLICY {_KEYS}_keyholder_select ON {_KEYS} FOR SELECT TO llm_ledger_keyholder"
        f" USING (tenant_id = {_TENANT})"
    )
    owner_columns = "tenant_id, key_id, subject_id, session_id, created_at"  # not the secret
    op.execute(f"GRANT SELECT ({owner_columns}) ON TABLE {_KEYS} TO llm_ledger_eraser")
    # The auditor sees whether a key is kept (audit_content's key_state: kept, erased or missing), never it.
    op.execute(f"GRANT SELECT (tenant_id, key_id) ON TABLE {_KEYS} TO llm_ledger_auditor")
    op.execute(f"CREATE POLICY {_KEYS}_auditor_select ON {_KEYS} FOR SELECT TO llm_ledger_auditor USING (true)")
    op.execute(
        f"CREATE POLICY {_KEYS}_eraser_select ON {_KEYS} FOR SELECT TO llm_ledger_eraser USING (tenant_id = {_TENANT})"
    )
    op.execute(f"GRANT SELECT ON TABLE {_EVENTS} TO llm_ledger_eraser")
    op.execute(
        f"CREATE POLICY {_EVENTS}_eraser_select ON {_EVENTS} FOR SELECT TO llm_ledger_eraser"
        f" USING (tenant_id = {_TENANT})"
    )
    # A keyholder reads its tenant's erasure records to tell an erased key from a missing one.
    op.execute(f"GRANT SELECT ON TABLE {_ERASURES} TO llm_ledger_eraser, llm_ledger_keyholder, llm_ledger_auditor")
    op.execute(
        f"CREATE POLICY {_ERASURES}_tenant_select ON {_ERASURES} FOR SELECT TO llm_ledger_eraser, llm_ledger_keyholder"
        f" USING (tenant_id = {_TENANT})"
    )
    op.execute(f"CREATE POLICY {_ERASURES}_auditor_select ON {_ERASURES} FOR SELECT TO llm_ledger_auditor USING (true)")


def _content_view(on_postgresql: bool) -> str:
    """One row per encrypted text; ``erased`` when an erasure record names its key."""
    if on_postgresql:
        places = f"""
            SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at,
                   p.field, p.rec
            FROM {_EVENTS} e
            CROSS JOIN LATERAL (VALUES ('input', e.payload -> 'input'), ('output', e.payload -> 'output'),
                                       ('arguments', e.payload -> 'arguments'), ('result', e.payload -> 'result'))
                AS p(field, rec)
            WHERE p.rec ? 'encrypted'
            UNION ALL
            SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at,
                   'tool_calls.' || (t.n - 1) || '.arguments', t.call -> 'arguments'
            FROM {_EVENTS} e
            CROSS JOIN LATERAL jsonb_array_elements(
                CASE WHEN jsonb_typeof(e.payload -> 'tool_calls') = 'array' THEN e.payload -> 'tool_calls'
                     ELSE '[]'::jsonb END) WITH ORDINALITY AS t(call, n)
            WHERE (t.call -> 'arguments') ? 'encrypted'
        """
        texts = f"""
            SELECT c.tenant_id, c.session_id, c.stream_id, c.event_id, c.event_type, c.occurred_at, c.field,
                   CAST(c.rec ->> 'chars' AS bigint) AS chars, CAST(c.rec ->> 'bytes' AS bigint) AS bytes,
                   COALESCE(c.rec ->> 'digest', c.rec ->> 'sha256') AS digest,
                   CASE WHEN c.rec ->> 'digest' IS NOT NULL THEN c.rec ->> 'digest_alg'
                        WHEN c.rec ->> 'sha256' IS NOT NULL THEN 'sha256' END AS digest_alg,
                   c.rec ->> 'key_id' AS digest_key_id, c.rec #>> '{{encrypted,key_id}}' AS key_id,
                   EXISTS (SELECT 1 FROM {_ERASURES} x
                           WHERE x.tenant_id = c.tenant_id AND x.key_ids ? (c.rec #>> '{{encrypted,key_id}}')) AS erased
            FROM ({places}) c
        """
        return _with_key_state(texts, "CAST(k.key_id AS text)")
    places = f"""
        SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at, f.field,
               json_extract(e.payload, '$.' || f.field) AS rec
        FROM {_EVENTS} e, (SELECT 'input' AS field UNION ALL SELECT 'output' UNION ALL SELECT 'arguments'
                           UNION ALL SELECT 'result') f
        WHERE json_extract(e.payload, '$.' || f.field || '.encrypted.key_id') IS NOT NULL
        UNION ALL
        SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at,
               'tool_calls.' || t.key || '.arguments', json_extract(t.value, '$.arguments')
        FROM {_EVENTS} e, json_each(e.payload, '$.tool_calls') t
        WHERE json_extract(t.value, '$.arguments.encrypted.key_id') IS NOT NULL
    """
    texts = f"""
        SELECT c.tenant_id, c.session_id, c.stream_id, c.event_id, c.event_type, c.occurred_at, c.field,
               json_extract(c.rec, '$.chars') AS chars, json_extract(c.rec, '$.bytes') AS bytes,
               COALESCE(json_extract(c.rec, '$.digest'), json_extract(c.rec, '$.sha256')) AS digest,
               CASE WHEN json_extract(c.rec, '$.digest') IS NOT NULL THEN json_extract(c.rec, '$.digest_alg')
                    WHEN json_extract(c.rec, '$.sha256') IS NOT NULL THEN 'sha256' END AS digest_alg,
               json_extract(c.rec, '$.key_id') AS digest_key_id, json_extract(c.rec, '$.encrypted.key_id') AS key_id,
               EXISTS (SELECT 1 FROM {_ERASURES} x, json_each(x.key_ids) j
                       WHERE x.tenant_id = c.tenant_id AND j.value = json_extract(c.rec, '$.encrypted.key_id'))
                   AS erased
        FROM ({places}) c
    """
    return _with_key_state(texts, "k.key_id")


def _with_key_state(texts: str, key_id: str) -> str:
    """``texts`` and each one's ``key_state``: ``erased`` (an erasure record names its key), ``kept`` (its key
    is stored) or ``missing`` (neither: a loss, not an erasure)."""
    return f"""
        SELECT t.*,
               CASE WHEN t.erased THEN 'erased'
                    WHEN EXISTS (SELECT 1 FROM {_KEYS} k WHERE k.tenant_id = t.tenant_id AND {key_id} = t.key_id)
                        THEN 'kept'
                    ELSE 'missing' END AS key_state
        FROM ({texts}) t
    """


_ERASURES_VIEW = f"""
    SELECT erasure_id, tenant_id, subject_id, session_id, key_count, events_affected, key_ids, erased_at, erased_by
    FROM {_ERASURES}
"""


def _sqlite_upgrade() -> None:
    op.execute(
        f"CREATE TRIGGER {_KEYS}_reject_update BEFORE UPDATE ON {_KEYS}"
        f" BEGIN SELECT RAISE(ABORT, '{_KEYS}: UPDATE rejected'); END"
    )
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {_ERASURES}_reject_{operation.lower()} BEFORE {operation} ON {_ERASURES}"
            f" BEGIN SELECT RAISE(ABORT, '{_ERASURES} is append-only: {operation} rejected'); END"
        )
    op.execute(f"CREATE VIEW audit_content AS {_content_view(False)}")
    op.execute(f"CREATE VIEW audit_erasures AS {_ERASURES_VIEW}")


def upgrade() -> None:
    _tables()
    if op.get_context().dialect.name != "postgresql":
        _sqlite_upgrade()
        return
    _postgresql_guards()
    _postgresql_grants()
    op.execute(f"CREATE VIEW audit_content WITH (security_invoker = true) AS {_content_view(True)}")
    op.execute(f"CREATE VIEW audit_erasures WITH (security_invoker = true) AS {_ERASURES_VIEW}")
    for view in _VIEWS:
        op.execute(f"REVOKE ALL ON TABLE {view} FROM PUBLIC")
        op.execute(f"GRANT SELECT ON TABLE {view} TO llm_ledger_auditor")


def downgrade() -> None:
    # Dropping the keys would erase every content they protect, dropping the erasures their record, and the
    # events kept encrypted would lose the views that explain them: refused while there is any of these.
    if context.is_offline_mode():
        raise DowngradeRefusedError(
            "downgrade of 0011 must see its tables and the events to know they are empty: run it online"
        )
    bind = op.get_bind()
    for what, relation in (
        ("holds data keys", _KEYS),
        ("holds erasure records", _ERASURES),
        ("holds events whose content is encrypted (audit_content lists them)", "audit_content"),
    ):
        # The owner's policies (above) let a non-superuser owner see these rows.
        if bind.execute(sa.select(sa.exists().select_from(sa.table(relation)))).scalar():
            raise DowngradeRefusedError(
                f"{relation} {what}: downgrading below 0011 would erase content or its record, and is refused"
            )
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    if op.get_context().dialect.name != "postgresql":
        op.execute(f"DROP TABLE {_ERASURES}")
        op.execute(f"DROP TABLE {_KEYS}")
        return
    op.execute(f"DROP POLICY IF EXISTS {_EVENTS}_eraser_select ON {_EVENTS}")
    op.execute(f"DROP POLICY IF EXISTS {_EVENTS}_owner_select ON {_EVENTS}")
    op.execute(f"REVOKE ALL ON TABLE {_EVENTS} FROM llm_ledger_eraser")
    op.execute("DROP FUNCTION llm_ledger_erase(text, text, text)")
    op.execute("DROP FUNCTION llm_ledger_store_content_keys(jsonb)")
    op.execute("DROP FUNCTION llm_ledger_erasure_lock(text, text, text)")
    op.execute(f"DROP TABLE {_ERASURES}")
    op.execute(f"DROP TABLE {_KEYS}")
    op.execute(f"DROP FUNCTION {_KEYS}_guard()")
    op.execute(f"DROP FUNCTION {_ERASURES}_reject_change()")
    # The roles stay: they are the cluster's, and another database may use them (as 0001 leaves its own).
