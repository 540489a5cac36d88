"""A database that cannot be reached, or a migration target that does not exist: one line naming the problem,
the exit code from the table, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_ledger.exit_codes import ExitCode
from llm_ledger.store import migrate
from tests.cli.conftest import UNREACHABLE_URL, Outcome

COMMANDS_ON_A_DATABASE = [
    ["db", "upgrade"],
    ["db", "downgrade", "base"],
    ["db", "current"],
    ["project"],
    ["project", "--rebuild"],
    ["audit", "verify"],
    ["audit", "seal"],
    ["retention", "plan", "--older-than", "400d"],
    ["retention", "apply", "--older-than", "400d", "--archive", "archive"],
]


@pytest.mark.parametrize("command", COMMANDS_ON_A_DATABASE, ids=" ".join)
def test_an_unreachable_database_is_named_and_exits_3(command: list[str], llm_ledger: Callable[..., Outcome]) -> None:
    outcome = llm_ledger(*command, "--database-url", UNREACHABLE_URL)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.NO_LEDGER, outcome.err
    assert "postgresql+psycopg://postgres:***@127.0.0.1:1/ledger cannot be reached" in outcome.err
    assert "Connection refused" in outcome.err
    assert "not-shown-anywhere" not in outcome.err


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"], ["project"]], ids=" ".join)
def test_a_postgresql_database_that_does_not_exist_is_named(
    command: list[str], empty_postgres_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    missing = empty_postgres_url.rsplit("/", 1)[0] + "/llm_ledger_test_never_created"

    outcome = llm_ledger(*command, "--database-url", missing)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.NO_LEDGER, outcome.err
    assert 'database "llm_ledger_test_never_created" does not exist' in outcome.err


def test_the_console_script_prints_no_traceback() -> None:
    # The installed entry point itself, in its own process: sys.exit(main()) with the table's code.
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "llm-ledger"), "db", "upgrade", "--database-url", UNREACHABLE_URL],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in completed.stderr
    assert completed.returncode == ExitCode.NO_LEDGER
    assert completed.stderr.startswith("llm-ledger: postgresql+psycopg://postgres:***@127.0.0.1:1/ledger cannot be")


@pytest.mark.parametrize("revision", ["bogus", "9999", "", "+99"])
def test_db_upgrade_to_a_revision_that_does_not_exist_is_a_usage_error(
    revision: str, sqlite_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    outcome = llm_ledger("db", "upgrade", revision, "--database-url", sqlite_url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE, outcome.err
    assert f"revision {revision!r}" in outcome.err


def test_an_unknown_revision_creates_no_file(sqlite_url: str, llm_ledger: Callable[..., Outcome]) -> None:
    outcome = llm_ledger("db", "upgrade", "bogus", "--database-url", sqlite_url)

    assert "known: base, 0001, " in outcome.err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("revision", ["bogus", "head"])
def test_db_downgrade_to_a_revision_it_cannot_reach_is_a_usage_error(
    revision: str, sqlite_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    migrate.upgrade(sqlite_url, "0003")

    outcome = llm_ledger("db", "downgrade", revision, "--database-url", sqlite_url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE, outcome.err
    assert f"revision {revision!r}" in outcome.err
    assert migrate.current(sqlite_url) == "0003"


def test_db_current_behind_head_is_a_failed_check(sqlite_url: str, llm_ledger: Callable[..., Outcome]) -> None:
    migrate.upgrade(sqlite_url, "0003")

    outcome = llm_ledger("db", "current", "--database-url", sqlite_url)

    assert outcome.status == ExitCode.FAILED
    assert "0003 (behind head" in outcome.out


def test_db_upgrade_into_a_directory_it_cannot_create_is_a_usage_error(
    tmp_path: Path, llm_ledger: Callable[..., Outcome]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    outcome = llm_ledger("db", "upgrade", "--database-url", f"sqlite:///{blocker}/sub/ledger.db")

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE, outcome.err
    assert f"cannot create {blocker}/sub" in outcome.err


@pytest.mark.parametrize(
    "url", ["postgresql://postgres@127.0.0.1:abc/ledger", "postgresql://postgres@[::1/ledger", "garbage"]
)
def test_a_url_that_cannot_be_parsed_is_a_usage_error_naming_it(url: str, llm_ledger: Callable[..., Outcome]) -> None:
    outcome = llm_ledger("db", "current", "--database-url", url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE, outcome.err
    assert f"not a database URL: {url!r}" in outcome.err


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("LLM_LEDGER_HOME", "~no-such-user-llm-ledger", "LLM_LEDGER_HOME"),
        ("LLM_LEDGER_SPOOL_DIR", "~no-such-user-llm-ledger/spool", "LLM_LEDGER_SPOOL_DIR"),
        ("LLM_LEDGER_DATABASE_URL", "sqlite:///~no-such-user-llm-ledger/ledger.db", "sqlite:///~no-such-user"),
    ],
)
def test_a_tilde_of_a_user_without_a_home_is_a_usage_error_naming_where(
    variable: str, value: str, named: str, llm_ledger: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_LEDGER_DATABASE_URL", raising=False)
    monkeypatch.setenv(variable, value)

    outcome = llm_ledger("db", "current")

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE, outcome.err
    assert named in outcome.err and "home directory is not known" in outcome.err


def test_a_url_that_cannot_be_parsed_is_named_without_its_password(llm_ledger: Callable[..., Outcome]) -> None:
    outcome = llm_ledger("db", "current", "--database-url", "postgresql://postgres:not-shown-anywhere@127.0.0.1:x/l")

    assert outcome.status == ExitCode.USAGE, outcome.err
    assert "not a database URL: 'postgresql://postgres:***@127.0.0.1:x/l'" in outcome.err
    assert "not-shown-anywhere" not in outcome.err


def test_db_upgrade_of_a_directory_says_it_is_one(tmp_path: Path, llm_ledger: Callable[..., Outcome]) -> None:
    outcome = llm_ledger("db", "upgrade", "--database-url", f"sqlite:///{tmp_path}")

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE, outcome.err
    assert f"{tmp_path} is a directory: name the ledger's file in it, e.g. {tmp_path / 'ledger.db'}" in outcome.err


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_db_upgrade_of_an_in_memory_database_is_a_usage_error(url: str, llm_ledger: Callable[..., Outcome]) -> None:
    # It would migrate a database that vanishes as the command ends, then report "at revision None".
    outcome = llm_ledger("db", "upgrade", "--database-url", url)

    assert outcome.status == ExitCode.USAGE, outcome.out + outcome.err
    assert "is an in-memory database, gone when the command ends: name a file" in outcome.err
