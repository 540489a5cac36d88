"""Migration 0004: the four audit views come with the upgrade and go with a downgrade to 0003, which
leaves the events alone; on both dialects."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, inspect, select, text

from llm_ledger.store import EventStore, migrate
from llm_ledger.store.schema import events
from tests.audit_sql.conftest import AuditedLedger

VIEWS = {"audit_executions", "audit_attempts", "audit_fallbacks", "audit_incomplete"}


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

    assert views(engine_of(unmigrated_url)) >= VIEWS


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
