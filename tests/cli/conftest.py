"""The command line run as a user runs it, with the store's databases (``tests/store/conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_ledger.cli import main
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
    empty_postgres_url,
    ledger_login,
    postgres_migrated_url,
    postgres_url,
    sqlite_url,
)

UNREACHABLE_URL = "postgresql://postgres:not-shown-anywhere@127.0.0.1:1/ledger"
"""Nothing listens on port 1: the connection is refused at once."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command left: its exit status and what it printed."""

    status: int
    out: str
    err: str


@pytest.fixture
def llm_ledger(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """``llm_ledger("db", "current", ...)`` runs the CLI's ``main`` as the console script does: a usage error's
    ``SystemExit`` is its status, and an exception escaping ``main`` is printed as Python would print it (so
    a test that asserts no traceback in stderr sees one). ``dashboard`` runs in a process of its own: when it
    starts, Streamlit replaces the process."""

    def run(*argv: str) -> Outcome:
        if argv[:1] == ("dashboard",):
            return run_in_a_process(*argv)
        capsys.readouterr()
        try:
            status = int(main(list(argv)))
        except SystemExit as exited:
            status = exited.code if isinstance(exited.code, int) else 1
        except Exception:  # noqa: BLE001  (what the interpreter would print, then exit 1)
            captured = capsys.readouterr()
            return Outcome(1, captured.out, captured.err + traceback.format_exc())
        captured = capsys.readouterr()
        return Outcome(status, captured.out, captured.err)

    return run


def run_in_a_process(*argv: str) -> Outcome:
    """The CLI in a process of its own; one still running after two minutes is a server that started."""
    command = [sys.executable, "-m", "llm_ledger.cli", *argv]
    try:
        completed = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return Outcome(-1, "", f"{' '.join(argv)} was still running after 120 s: it started instead of refusing")
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def missing_sqlite_file(tmp_path: Path) -> Path:
    """An SQLite path in a directory that does not exist either: a command that creates neither passes."""
    return tmp_path / "nowhere" / "ledger.db"


@pytest.fixture
def ledger_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty ``LLM_LEDGER_HOME`` and no ``LLM_LEDGER_DATABASE_URL``: the embedded default, not created yet."""
    home = tmp_path / "home"
    monkeypatch.setenv("LLM_LEDGER_HOME", str(home))
    monkeypatch.delenv("LLM_LEDGER_DATABASE_URL", raising=False)
    yield home
