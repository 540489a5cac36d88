"""Migration 0002: the read models come with ``upgrade head`` and go with a downgrade to 0001, which
leaves the events alone; a downgrade that would drop events is refused and leaves everything at head."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, inspect, select, text

from llm_ledger.events import Event
from llm_ledger.projections.schema import READ_MODELS, checkpoints
from llm_ledger.store import create_store_engine, migrate
from llm_ledger.store.schema import EVENTS_TABLE, events
from tests.projections.conftest import store_events
from tests.projections.ground_truth import assert_read_models_equal_truth
from tests.projections.projecting import project_url

PROJECTION_TABLES = {table.name for table in (*READ_MODELS, checkpoints)}


@pytest.fixture(params=["postgresql", "sqlite"])
def unmigrated_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("empty_postgres_url" if request.param == "postgresql" else "sqlite_url")
    return url


def tables(url: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def count_events(url: str) -> int:
    engine: Engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(events)).scalar_one())
    finally:
        engine.dispose()


def test_upgrade_to_head_creates_the_read_models(unmigrated_url: str) -> None:
    migrate.upgrade(unmigrated_url)

    assert migrate.current(unmigrated_url) == migrate.head()
    assert tables(unmigrated_url) >= PROJECTION_TABLES


def test_upgrade_to_head_creates_the_histogram_merge_function_on_postgresql(empty_postgres_url: str) -> None:
    migrate.upgrade(empty_postgres_url)

    engine = create_store_engine(empty_postgres_url)
    try:
        with engine.connect() as connection:
            merged = connection.execute(
                text("""SELECT llm_ledger_hist_merge('{"3": 1, "5": 2}'::jsonb, '{"5": 1}'::jsonb)""")
            ).scalar_one()
    finally:
        engine.dispose()
    assert merged == {"3": 1, "5": 3}


def test_downgrade_to_0001_drops_the_read_models_and_keeps_the_events(
    unmigrated_url: str, recorded_events: list[Event]
) -> None:
    migrate.upgrade(unmigrated_url)
    store_events(unmigrated_url, recorded_events[:100])

    migrate.downgrade(unmigrated_url, "0001")

    assert migrate.current(unmigrated_url) == "0001"
    assert not PROJECTION_TABLES & tables(unmigrated_url)
    assert EVENTS_TABLE in tables(unmigrated_url)
    assert count_events(unmigrated_url) == 100
    migrate.upgrade(unmigrated_url)
    assert tables(unmigrated_url) >= PROJECTION_TABLES


def test_a_refused_downgrade_leaves_the_read_models_and_the_events_at_head(
    unmigrated_url: str, recorded_events: list[Event]
) -> None:
    migrate.upgrade(unmigrated_url)
    store_events(unmigrated_url, recorded_events[:100])

    with pytest.raises(migrate.DowngradeRefusedError):
        migrate.downgrade(unmigrated_url, "base")

    assert migrate.current(unmigrated_url) == migrate.head()
    assert count_events(unmigrated_url) == 100
    assert tables(unmigrated_url) >= PROJECTION_TABLES


def _tool_calls_counted(engine: Engine) -> int:
    with engine.connect() as connection:
        counted = text("SELECT sum(calls) FROM llm_ledger_tool_stats WHERE grain_seconds = 86400")
        return int(connection.execute(counted).scalar_one() or 0)


def test_upgrading_to_0007_past_projected_tool_events_has_them_counted(
    unmigrated_url: str, recorded_events: list[Event], tenants: tuple[str, ...], engine_of: Callable[[str], Engine]
) -> None:
    # Tool events that a projector applied while the database was at 0006 (a downgrade of 0007, or writers
    # upgraded before the database) are past the checkpoint when 0007 creates the empty tool read model:
    # the upgrade must have the next catch-up count them, not leave the model empty for good.
    ended = sum(e.event_type in ("ToolCallSucceeded", "ToolCallFailed") for e in recorded_events)
    assert ended > 0
    migrate.upgrade(unmigrated_url)
    store_events(unmigrated_url, recorded_events)
    project_url(unmigrated_url)
    engine = engine_of(unmigrated_url)
    assert _tool_calls_counted(engine) == ended

    migrate.downgrade(unmigrated_url, "0006")
    migrate.upgrade(unmigrated_url)
    project_url(unmigrated_url)

    assert _tool_calls_counted(engine) == ended
    assert_read_models_equal_truth(engine, tenants)


def test_upgrading_to_0013_fills_the_fallbacks_from_the_stored_events_and_the_projector_adds_none_twice(
    unmigrated_url: str, recorded_events: list[Event], tenants: tuple[str, ...]
) -> None:
    # Half the events projected, 0013 taken away and the other half stored without it: the upgrade fills the
    # new read model from every stored fallback (the projected half's and the half past the checkpoint),
    # and the catch-up that follows folds the second half again into rows already there.
    half = len(recorded_events) // 2
    fallbacks = sum(e.event_type == "FallbackTriggered" and e.session_id is not None for e in recorded_events)
    later = sum(e.event_type == "FallbackTriggered" and e.session_id is not None for e in recorded_events[half:])
    assert 0 < later < fallbacks
    migrate.upgrade(unmigrated_url)
    store_events(unmigrated_url, recorded_events[:half])
    project_url(unmigrated_url)
    migrate.downgrade(unmigrated_url, "0012")
    assert "llm_ledger_fallbacks" not in tables(unmigrated_url)
    store_events(unmigrated_url, recorded_events[half:])

    migrate.upgrade(unmigrated_url)
    project_url(unmigrated_url)

    engine = create_store_engine(unmigrated_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM llm_ledger_fallbacks")).scalar_one()
        assert stored == fallbacks
        assert_read_models_equal_truth(engine, tenants)
    finally:
        engine.dispose()
