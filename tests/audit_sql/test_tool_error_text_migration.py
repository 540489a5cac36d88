"""Migration 0014: a failed tool's exception text (``ToolCallFailed.error_text``) in the audit views:
audit_content lists it among the encrypted texts, audit_tool_calls gains its digest; on both dialects. The
downgrade gives both views 0012's columns and rows back (audit_content's 0011 definition) and leaves the
events alone; on PostgreSQL the views keep their grants and options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text

from llm_ledger.store import migrate
from llm_ledger.store.schema import events
from tests.audit_sql.test_keyed_digests_migration import columns
from tests.audit_sql.test_views import view_rows
from tests.digests import keyed
from tests.erasure.conftest import record, tool_error

ERROR_TEXT_COLUMNS = ["error_text_digest", "error_text_digest_alg", "error_text_key_id"]
GRANTS = (
    "SELECT has_table_privilege('llm_ledger_auditor', 'audit_content', 'SELECT'),"
    " has_table_privilege('llm_ledger_auditor', 'audit_tool_calls', 'SELECT'),"
    " (SELECT reloptions::text FROM pg_class WHERE oid = 'audit_content'::regclass),"
    " (SELECT reloptions::text FROM pg_class WHERE oid = 'audit_tool_calls'::regclass)"
)


def _content(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        query = text("SELECT session_id, event_type, field, chars, key_state FROM audit_content")
        return sorted(tuple(row) for row in connection.execute(query))


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


def _grants(engine: Engine) -> tuple[Any, ...] | None:
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        return tuple(connection.execute(text(GRANTS)).one())


def test_0014_lists_the_exception_text_and_its_downgrade_restores_0013(
    unmigrated_url: str, engine_of: Callable[[str], Engine], tmp_path: Path
) -> None:
    migrate.upgrade(unmigrated_url)
    record(unmigrated_url, tmp_path / "spool", "acme", {"s": "full", "h": "hash"}, executions=1)
    engine = engine_of(unmigrated_url)
    content, grants, stored = _content(engine), _grants(engine), _count(engine)
    assert ("s", "ToolCallFailed", "error_text", len(tool_error("s")), "kept") in content
    assert not any(row[0] == "h" for row in content), "capture hash encrypts nothing"
    tools = view_rows(engine, "audit_tool_calls")
    assert columns(engine, "audit_tool_calls")[-3:] == ERROR_TEXT_COLUMNS, "added after the columns it had"
    failed = {row["session_id"]: row for row in tools if row["outcome"] == "failed"}
    for session in ("s", "h"):
        assert failed[session]["error_text_digest"] == keyed("acme", tool_error(session).encode())
        assert failed[session]["error_text_digest_alg"] == "hmac-sha256"
    assert {row["error_text_digest"] for row in tools if row["outcome"] == "succeeded"} == {None}

    migrate.downgrade(unmigrated_url, "0013")

    assert _content(engine) == [row for row in content if row[2] != "error_text"]
    assert not set(ERROR_TEXT_COLUMNS) & set(columns(engine, "audit_tool_calls"))
    assert len(view_rows(engine, "audit_tool_calls")) == len(tools)
    assert _grants(engine) == grants
    assert _count(engine) == stored, "the events are left alone"

    migrate.upgrade(unmigrated_url)
    assert _content(engine) == content and columns(engine, "audit_tool_calls")[-3:] == ERROR_TEXT_COLUMNS
    assert _grants(engine) == grants
