"""Migration 0004: the four audit views come with the upgrade and go with a downgrade to 0003, which
leaves the events alone; migration 0007: audit_tool_calls, audit_incomplete over tool executions too, and
the tool-call read model, undone by a downgrade to 0006; on both dialects."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, inspect, select, text

from llm_ledger.store import EventStore, migrate
from llm_ledger.store.schema import events
from tests.audit_sql.conftest import AuditedLedger

VIEWS = {"audit_executions", "audit_attempts", "audit_fallbacks", "audit_incomplete"}
TOOL_VIEW = "audit_tool_calls"


def views(engine: Engine) -> set[str]:
    return set(inspect(engine).get_view_names())


def store_some_events(url: str, ledger: AuditedLedger) -> int:
    store = EventStore(url)
    try:
        return store.append(ledger.events[:300]).stored
    finally:
        store.close()


def executions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_executions")).scalar_one())


def test_upgrade_to_head_creates_the_audit_views(unmigrated_url: str, engine_of: Callable[[str], Engine]) -> None:
    migrate.upgrade(unmigrated_url)

    assert views(engine_of(unmigrated_url)) >= VIEWS | {TOOL_VIEW}


def _incomplete(engine: Engine) -> list[dict[str, object]]:
    """The view's rows but their age (which grows while the test runs)."""
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(text("SELECT * FROM audit_incomplete"))]
    return [{column: value for column, value in row.items() if column != "age_seconds"} for row in rows]


def test_0007_shows_tool_executions_and_its_downgrade_restores_0006(
    unmigrated_url: str, audited_sqlite: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    migrate.upgrade(unmigrated_url, "0006")
    store = EventStore(unmigrated_url)
    try:
        stored = store.append(audited_sqlite.events).stored
    finally:
        store.close()
    engine = engine_of(unmigrated_url)
    before = _incomplete(engine)
    assert {row["execution_id"] for row in before} == {str(s) for s in audited_sqlite.extras.incomplete}

    migrate.upgrade(unmigrated_url)

    with engine.connect() as connection:
        tool_calls = {str(r[0]) for r in connection.execute(text(f"SELECT tool_execution_id FROM {TOOL_VIEW}"))}
    # One row per tool stream: those the dataset added and the demo's own (its generation step calls tools).
    started = {str(e.stream_id) for e in audited_sqlite.events if e.event_type == "ToolCallStarted"}
    assert tool_calls == started and tool_calls >= {str(s) for s in audited_sqlite.extras.tool_calls}
    kinds = {row["execution_id"]: row["kind"] for row in _incomplete(engine)}
    assert kinds == {
        **{str(s): "execution" for s in audited_sqlite.extras.incomplete},
        **{str(s): "tool_call" for s in audited_sqlite.extras.incomplete_tool_calls},
    }
    assert "llm_ledger_tool_stats" in inspect(engine).get_table_names()

    migrate.downgrade(unmigrated_url, "0006")

    inspector = inspect(engine)
    assert TOOL_VIEW not in inspector.get_view_names() and views(engine) >= VIEWS
    assert "llm_ledger_tool_stats" not in inspector.get_table_names()
    assert sorted(_incomplete(engine), key=str) == sorted(before, key=str)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar_one() == stored
    migrate.upgrade(unmigrated_url)
    assert views(engine) >= VIEWS | {TOOL_VIEW}


def test_downgrade_to_0003_drops_the_views_and_keeps_the_events(
    unmigrated_url: str, audited_sqlite: AuditedLedger, engine_of: Callable[[str], Engine]
) -> None:
    migrate.upgrade(unmigrated_url, "0004")
    stored = store_some_events(unmigrated_url, audited_sqlite)
    engine = engine_of(unmigrated_url)
    before = executions(engine)

    migrate.downgrade(unmigrated_url, "0003")

    assert migrate.current(unmigrated_url) == "0003"
    assert not views(engine) & VIEWS
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar_one() == stored
    migrate.upgrade(unmigrated_url, "0004")
    assert views(engine) >= VIEWS
    assert executions(engine) == before > 0
