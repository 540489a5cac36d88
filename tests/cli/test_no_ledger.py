"""Only ``db upgrade``, ``demo`` and the embedded default create an SQLite file; every other command given a
missing one says there is no ledger there, and how to make one, and leaves the disk as it was."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_ledger.exit_codes import ExitCode
from llm_ledger.store import migrate
from tests.cli.conftest import Outcome

COMMANDS_THAT_NEED_A_LEDGER = [
    ["project"],
    ["project", "--follow"],
    ["audit", "verify"],
    ["audit", "seal"],
    ["audit", "seal", "--follow"],
    ["db", "current"],
    ["db", "downgrade", "base"],
    ["dashboard"],
]


def assert_says_no_ledger_at(outcome: Outcome, where: str) -> None:
    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.NO_LEDGER, outcome.err
    assert f"there is no ledger at {where} (no such file)" in outcome.err
    assert "create one with `llm-ledger db upgrade`" in outcome.err


@pytest.mark.parametrize("command", COMMANDS_THAT_NEED_A_LEDGER, ids=" ".join)
def test_a_missing_sqlite_file_is_no_ledger_and_is_not_created(
    command: list[str], missing_sqlite_file: Path, llm_ledger: Callable[..., Outcome]
) -> None:
    outcome = llm_ledger(*command, "--database-url", f"sqlite:///{missing_sqlite_file}")

    assert_says_no_ledger_at(outcome, str(missing_sqlite_file))
    assert not missing_sqlite_file.parent.exists(), "neither the file nor its directory is created"


@pytest.mark.parametrize("command", COMMANDS_THAT_NEED_A_LEDGER, ids=" ".join)
def test_the_embedded_default_is_not_created_by_a_command_that_reads_it(
    command: list[str], ledger_home: Path, llm_ledger: Callable[..., Outcome]
) -> None:
    outcome = llm_ledger(*command)

    assert_says_no_ledger_at(outcome, str(ledger_home / "ledger.db"))
    assert not ledger_home.exists()


def test_db_upgrade_creates_the_embedded_ledger(ledger_home: Path, llm_ledger: Callable[..., Outcome]) -> None:
    assert llm_ledger("db", "upgrade").status == ExitCode.OK

    assert (ledger_home / "ledger.db").is_file()
    assert llm_ledger("db", "current").status == ExitCode.OK


@pytest.mark.parametrize("command", COMMANDS_THAT_NEED_A_LEDGER[:-1], ids=" ".join)
def test_a_postgresql_database_never_migrated_is_no_ledger(
    command: list[str], empty_postgres_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    outcome = llm_ledger(*command, "--database-url", empty_postgres_url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.NO_LEDGER, outcome.err
    assert "it was never migrated; create one with `llm-ledger db upgrade`" in outcome.err
    assert migrate.current(empty_postgres_url) is None, "nothing was migrated"


def test_a_file_that_is_not_a_database_is_said_so(tmp_path: Path, llm_ledger: Callable[..., Outcome]) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a ledger\n")

    outcome = llm_ledger("project", "--database-url", f"sqlite:///{path}")

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.NO_LEDGER
    assert "file is not a database" in outcome.err
    assert path.read_text() == "not a ledger\n"


@pytest.mark.parametrize("command", COMMANDS_THAT_NEED_A_LEDGER, ids=" ".join)
def test_an_empty_file_is_no_ledger_and_is_left_empty(
    command: list[str], tmp_path: Path, llm_ledger: Callable[..., Outcome]
) -> None:
    path = tmp_path / "ledger.db"
    path.touch()

    outcome = llm_ledger(*command, "--database-url", f"sqlite:///{path}")

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.NO_LEDGER, outcome.err
    assert "it was never migrated" in outcome.err
    assert path.stat().st_size == 0, "a command that only reads wrote an SQLite header into the file"


def test_another_applications_sqlite_database_is_left_in_its_journal_mode(
    tmp_path: Path, llm_ledger: Callable[..., Outcome]
) -> None:
    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("CREATE TABLE notes (body TEXT)")
        other.commit()

    outcome = llm_ledger("audit", "verify", "--database-url", f"sqlite:///{path}")

    assert outcome.status == ExitCode.NO_LEDGER, outcome.err
    with contextlib.closing(sqlite3.connect(path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("delete",), "switched to WAL by a read"
