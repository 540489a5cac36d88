"""Migration 0012: the digest columns of audit_executions and audit_tool_calls, each digest labelled by its
algorithm (``hmac-sha256`` under the tenant's key, or an older event's plain ``sha256``) and key id; on both
dialects, over the audited dataset, which holds both kinds. The downgrade gives the views their earlier
columns back and leaves the events alone; on PostgreSQL the views keep their grants and a view reading
them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.pool import NullPool

from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.schema import events
from tests.audit_sql import truth
from tests.audit_sql.conftest import AuditedLedger
from tests.audit_sql.test_views import project, view_rows
from tests.digests import key_id, tenant_key

EXECUTION_COLUMNS = [f"{p}_{s}" for p in ("input", "output") for s in ("digest", "digest_alg", "key_id")]
TOOL_COLUMNS = [f"{p}_{s}" for p in ("arguments", "result") for s in ("digest", "digest_alg", "key_id")]


def columns(engine: Engine, view: str) -> list[str]:
    return [column["name"] for column in inspect(engine).get_columns(view)]


def test_the_views_label_each_digest_by_its_algorithm_and_key(
    audited: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    engine = engine_of(audited.url)
    executions = {row["execution_id"]: row for row in view_rows(engine, "audit_executions")}
    assert columns(engine, "audit_executions")[-6:] == EXECUTION_COLUMNS, "added after the columns it had"
    assert Counter(row["input_digest_alg"] for row in executions.values()).keys() == {"hmac-sha256", "sha256"}
    for row in executions.values():
        if row["input_digest_alg"] == "hmac-sha256":
            assert row["input_sha256"] is None
            assert row["input_key_id"] == key_id(tenant_key(row["tenant_id"])), "each tenant's own key"
        else:
            assert (row["input_digest"], row["input_key_id"]) == (row["input_sha256"], None)
    legacy = executions[str(audited.extras.legacy_execution)]
    assert (legacy["input_digest_alg"], legacy["output_digest_alg"]) == ("sha256", "sha256")
    keyed = executions[str(audited.extras.digest_execution)]
    assert (keyed["input_digest_alg"], keyed["output_digest_alg"]) == ("hmac-sha256", "hmac-sha256")
    assert keyed["input_digest"] != legacy["input_digest"], "the same messages, a keyed and a plain digest"

    tools = view_rows(engine, "audit_tool_calls")
    assert columns(engine, "audit_tool_calls")[-9:-3] == TOOL_COLUMNS, "0014's three after them"
    assert {row["arguments_digest_alg"] for row in tools} == {"hmac-sha256", "sha256"}
    assert {row["result_digest_alg"] for row in tools} >= {"hmac-sha256", "sha256", None}, "none: no result"
    expected = truth.tool_calls(audited.events)
    for row in tools:
        assert project(row, TOOL_COLUMNS) == project(expected[row["tool_execution_id"]], TOOL_COLUMNS)


def _rows(engine: Engine, view: str) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in row.items() if k != "age_seconds"} for row in view_rows(engine, view)), key=str)


def test_0012_adds_the_columns_and_its_downgrade_restores_0009(
    unmigrated_url: str, audited_sqlite: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    migrate.upgrade(unmigrated_url, "0009")
    store = EventStore(unmigrated_url)
    try:
        stored = store.append(audited_sqlite.events).stored
    finally:
        store.close()
    engine = engine_of(unmigrated_url)
    before = {view: (columns(engine, view), _rows(engine, view)) for view in ("audit_executions", "audit_tool_calls")}
    assert not set(EXECUTION_COLUMNS) & set(before["audit_executions"][0])

    migrate.upgrade(unmigrated_url, "0012")

    executions = view_rows(engine, "audit_executions")
    assert columns(engine, "audit_executions") == before["audit_executions"][0] + EXECUTION_COLUMNS
    assert columns(engine, "audit_tool_calls") == before["audit_tool_calls"][0] + TOOL_COLUMNS
    expected = truth.executions(audited_sqlite.events)
    for row in executions:
        assert project(row, EXECUTION_COLUMNS) == project(expected[row["execution_id"]], EXECUTION_COLUMNS)

    migrate.downgrade(unmigrated_url, "0009")

    for view, (names, rows) in before.items():
        assert columns(engine, view) == names
        assert _rows(engine, view) == rows
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar_one() == stored
    migrate.upgrade(unmigrated_url)
    assert columns(engine, "audit_executions")[-6:] == EXECUTION_COLUMNS


GRANTS = (
    "SELECT has_table_privilege('llm_ledger_reader', 'audit_executions', 'SELECT'),"
    " has_table_privilege('llm_ledger_auditor', 'audit_tool_calls', 'SELECT'),"
    " (SELECT reloptions::text FROM pg_class WHERE oid = 'audit_executions'::regclass),"
    " (SELECT reloptions::text FROM pg_class WHERE oid = 'audit_tool_calls'::regclass),"
    " obj_description('analyst_executions'::regclass, 'pg_class')"
)


def test_the_downgrade_on_postgresql_keeps_the_grants_options_and_a_view_reading_them(empty_postgres_url: str) -> None:
    migrate.upgrade(empty_postgres_url)
    engine = create_store_engine(empty_postgres_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("CREATE VIEW analyst_executions AS SELECT execution_id, input_sha256 FROM audit_executions")
            )
            connection.execute(text("COMMENT ON VIEW analyst_executions IS 'for analysts'"))
        with engine.connect() as connection:
            before = connection.execute(text(GRANTS)).one()
        assert before[:2] == (True, True) and "security_invoker=true" in before[2] and before[4] == "for analysts"

        migrate.downgrade(empty_postgres_url, "0009")

        with engine.connect() as connection:
            assert connection.execute(text(GRANTS)).one() == before
        assert "input_digest" not in columns(engine, "audit_executions")
        migrate.upgrade(empty_postgres_url)
        with engine.connect() as connection:
            assert connection.execute(text(GRANTS)).one() == before
    finally:
        engine.dispose()
