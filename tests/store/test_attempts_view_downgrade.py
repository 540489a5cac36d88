"""Migration 0009's downgrade on PostgreSQL gives ``audit_attempts`` its 0004 columns back without losing what
an operator gave the view: another role's grant (a column grant too), its comment, its owner, and a view
reading it (owned by that role), which is created again."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from llm_ledger.store import create_store_engine, migrate

STATE = (
    "SELECT (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'audit_attempts'::regclass),"
    " (SELECT relacl::text FROM pg_class WHERE oid = 'audit_attempts'::regclass),"
    " (SELECT attacl::text FROM pg_attribute WHERE attrelid = 'audit_attempts'::regclass"
    "  AND attname = 'latency_ms'),"
    " obj_description('audit_attempts'::regclass, 'pg_class'),"
    " col_description('audit_attempts'::regclass, (SELECT attnum FROM pg_attribute"
    "  WHERE attrelid = 'audit_attempts'::regclass AND attname = 'latency_ms')),"
    " (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'analyst_attempts'::regclass),"
    " obj_description('analyst_attempts'::regclass, 'pg_class')"
)


def test_the_downgrade_keeps_the_views_grants_comments_owner_and_readers(
    empty_postgres_url: str, ledger_login: Callable[..., str]
) -> None:
    analyst = make_url(ledger_login(database=empty_postgres_url)).username
    migrate.upgrade(empty_postgres_url)
    engine = create_store_engine(empty_postgres_url, poolclass=NullPool)
    setup = (
        f'GRANT SELECT ON audit_attempts TO "{analyst}"',
        f'GRANT SELECT (latency_ms) ON audit_attempts TO "{analyst}"',
        "COMMENT ON VIEW audit_attempts IS 'one row an attempt'",
        "COMMENT ON COLUMN audit_attempts.latency_ms IS 'milliseconds'",
        "CREATE VIEW analyst_attempts AS SELECT execution_id, latency_ms FROM audit_attempts",
        f'ALTER VIEW analyst_attempts OWNER TO "{analyst}"',
        "COMMENT ON VIEW analyst_attempts IS 'attempts for analysts'",
    )
    try:
        with engine.begin() as connection:
            for statement in setup:
                connection.execute(text(statement))
        with engine.connect() as connection:
            before = connection.execute(text(STATE)).one()
        assert None not in before

        migrate.downgrade(empty_postgres_url, "0008")

        with engine.connect() as connection:
            assert connection.execute(text(STATE)).one() == before
        columns = {column["name"] for column in inspect(engine).get_columns("audit_attempts")}
        assert "latency_ms" in columns and "time_to_first_chunk_ms" not in columns
        migrate.upgrade(empty_postgres_url)
        with engine.connect() as connection:
            assert connection.execute(text(STATE)).one() == before
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP VIEW IF EXISTS analyst_attempts"))
            connection.execute(text(f'REVOKE ALL ON audit_attempts FROM "{analyst}"'))
        engine.dispose()
