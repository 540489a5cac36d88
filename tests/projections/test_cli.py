"""``llm-ledger project``: catch up, rebuild with progress, and a plain word on an unmigrated database."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from llm_ledger.cli import main
from llm_ledger.events import Event
from llm_ledger.projections import Projector
from llm_ledger.store import EventStore, migrate
from tests.projections.conftest import store_events
from tests.projections.ground_truth import assert_read_models_equal_truth
from tests.projections.projecting import as_an_older_projector_left_them


@pytest.fixture
def sqlite_workload_url(sqlite_url: str, recorded_events: list[Event]) -> str:
    migrate.upgrade(sqlite_url)
    store_events(sqlite_url, recorded_events)
    return sqlite_url


def applied(url: str) -> int:
    projector = Projector(url)
    try:
        return projector.status().events_applied
    finally:
        projector.close()


def stored(url: str) -> int:
    store = EventStore(url)
    try:
        return store.count()
    finally:
        store.close()


def test_project_catches_the_read_models_up(
    sqlite_workload_url: str, tenants: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["project", "--database-url", sqlite_workload_url]) == 0

    out = capsys.readouterr().out
    assert f"applied {stored(sqlite_workload_url):,} events" in out
    assert applied(sqlite_workload_url) == stored(sqlite_workload_url)
    engine = create_engine(sqlite_workload_url)
    try:
        assert_read_models_equal_truth(engine, tenants)
    finally:
        engine.dispose()


def test_project_says_when_an_older_projector_built_the_read_models(
    sqlite_workload_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    older = "llm-ledger: read models were built by an older projector (mock/<provider>-... models counted under"
    assert main(["project", "--database-url", sqlite_workload_url]) == 0
    assert older not in capsys.readouterr().err
    as_an_older_projector_left_them(sqlite_workload_url)

    assert main(["project", "--database-url", sqlite_workload_url]) == 0
    assert f"{older} provider mock): run llm-ledger project --rebuild\n" in capsys.readouterr().err

    assert main(["project", "--rebuild", "--database-url", sqlite_workload_url]) == 0
    assert main(["project", "--database-url", sqlite_workload_url]) == 0
    assert older not in capsys.readouterr().err


def test_project_on_a_postgresql_database_catches_up(
    fresh_postgres_url: str, recorded_events: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    store_events(fresh_postgres_url, recorded_events[:200])

    assert main(["project", "--database-url", fresh_postgres_url]) == 0

    assert "the read models now hold" in capsys.readouterr().out


def test_project_rebuild_replays_every_event_with_a_progress_line(
    sqlite_workload_url: str, tenants: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["project", "--database-url", sqlite_workload_url]) == 0
    capsys.readouterr()

    assert main(["project", "--rebuild", "--batch-size", "500", "--database-url", sqlite_workload_url]) == 0

    captured = capsys.readouterr()
    total = stored(sqlite_workload_url)
    assert f"rebuilt the read models from {total:,} events" in captured.out
    assert f"{total:,}/{total:,} events" in captured.err
    assert applied(sqlite_workload_url) == total
    engine = create_engine(sqlite_workload_url)
    try:
        assert_read_models_equal_truth(engine, tenants)
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_project_on_an_unmigrated_database_says_to_run_db_upgrade(
    request: pytest.FixtureRequest, dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url: str = request.getfixturevalue("empty_postgres_url" if dialect == "postgresql" else "sqlite_url")

    assert main(["project", "--database-url", url]) == 3  # no ledger there (tests/cli)

    assert "llm-ledger db upgrade" in capsys.readouterr().err


def test_project_on_a_database_behind_head_says_to_run_db_upgrade(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate.upgrade(sqlite_url, "0001")

    assert main(["project", "--database-url", sqlite_url]) == 2

    assert "llm-ledger db upgrade" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "-5", "many"])
def test_project_with_a_bad_batch_size_is_a_usage_error_naming_the_option(
    size: str, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["project", "--batch-size", size, "--database-url", sqlite_url])
    assert exited.value.code == 2
    assert "argument --batch-size:" in capsys.readouterr().err
