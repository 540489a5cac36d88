"""The CLI maps errors to exit codes in one place: ``llm_ledger/cli_errors.py``'s table, resolved along an error's
MRO. ``cli.py`` names no exit code of an error itself."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_ledger import cli
from llm_ledger.audit import AuditConfigurationError, SealRefusedError
from llm_ledger.audit.erasure import NothingToEraseError, UnknownErasureTargetError
from llm_ledger.cli_errors import EXITS, UsageError, exit_code, report
from llm_ledger.errors import LedgerError
from llm_ledger.executor import ConfigurationError, InvalidInputError, RateLimitError
from llm_ledger.exit_codes import ExitCode
from llm_ledger.projections import PriceTableError, TenantNotAllowedError
from llm_ledger.store import StoreConfigurationError, StoreUnavailableError, UnreadableEventError, migrate
from llm_ledger.store.migrate import DowngradeRefusedError, NoLedgerError, RevisionError, RevisionUnreadableError
from tests.cli.conftest import Outcome
from tests.walk import package_exception_classes

CODES_OF_THE_COMMANDS: list[tuple[type[LedgerError] | type[KeyboardInterrupt], ExitCode]] = [
    (NoLedgerError, ExitCode.NO_LEDGER),
    (StoreUnavailableError, ExitCode.NO_LEDGER),
    (StoreConfigurationError, ExitCode.USAGE),
    (RevisionUnreadableError, ExitCode.USAGE),  # a StoreConfigurationError: its row, not StoreError's default
    (RevisionError, ExitCode.USAGE),
    (PriceTableError, ExitCode.USAGE),
    (AuditConfigurationError, ExitCode.USAGE),
    (UsageError, ExitCode.USAGE),
    (DowngradeRefusedError, ExitCode.FAILED),
    (SealRefusedError, ExitCode.FAILED),
    (NothingToEraseError, ExitCode.FAILED),
    (UnknownErasureTargetError, ExitCode.USAGE),
    (KeyboardInterrupt, ExitCode.INTERRUPTED),
    # No row of their own: a LedgerError's, as a traceback's exit status was.
    (ConfigurationError, ExitCode.FAILED),
    (InvalidInputError, ExitCode.FAILED),
    (RateLimitError, ExitCode.FAILED),
    (UnreadableEventError, ExitCode.FAILED),
    (TenantNotAllowedError, ExitCode.FAILED),
]
"""The code each error ended a command with before the table existed (tests/cli checks the messages). One
command exits otherwise: ``demo`` did not catch a ``PriceTableError`` (a traceback, status 1) and now exits 2
for it, as ``project`` always did and the README's table says of a configuration file that cannot be used."""


def _id(value: object) -> str:
    return str(getattr(value, "__name__", None) or getattr(value, "name", value))


@pytest.mark.parametrize(("error", "code"), CODES_OF_THE_COMMANDS, ids=_id)
def test_an_error_exits_with_the_code_it_always_had(
    error: type[LedgerError] | type[KeyboardInterrupt], code: ExitCode
) -> None:
    assert exit_code(error) == code


def test_every_ledger_error_resolves_to_an_exit_code_of_a_failure() -> None:
    ledger_errors = [cls for cls in package_exception_classes() if issubclass(cls, LedgerError)]

    codes = {cls.__qualname__: exit_code(cls) for cls in ledger_errors}

    assert len(codes) >= 35
    assert {name: code for name, code in codes.items() if code not in set(ExitCode) - {ExitCode.OK}} == {}


def test_the_table_lists_only_the_librarys_errors_and_ctrl_c() -> None:
    assert all(issubclass(cls, LedgerError | KeyboardInterrupt) for cls in EXITS)


def test_a_downgrade_refusal_is_said_as_one_and_ctrl_c_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert report(DowngradeRefusedError("0003 holds 12 events")) == ExitCode.FAILED
    assert report(KeyboardInterrupt()) == ExitCode.INTERRUPTED
    assert report(ConfigurationError("pipeline.toml: no [pipeline.plan]")) == ExitCode.FAILED

    assert capsys.readouterr().err == "refused: 0003 holds 12 events\nllm-ledger: pipeline.toml: no [pipeline.plan]\n"


def _cli_tree() -> ast.Module:
    return ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))


def _is_int_literal(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def test_cli_returns_and_exits_with_no_literal_code() -> None:
    literals = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(_cli_tree())
        if (isinstance(node, ast.Return) and _is_int_literal(node.value))
        or (
            isinstance(node, ast.Call)
            and any(_is_int_literal(argument) for argument in node.args)
            and ast.unparse(node.func) in {"sys.exit", "exit", "SystemExit", "ExitCode", "os._exit"}
        )
    ]

    assert literals == []


def test_cli_names_only_the_codes_of_a_command_that_ran() -> None:
    # OK and FAILED are what a command found (verify: clean or broken; db current: at head or behind); every
    # other code is an error's, chosen by the table.
    named = {
        node.attr
        for node in ast.walk(_cli_tree())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ExitCode"
    }

    assert named <= {"OK", "FAILED"}


def test_no_except_clause_of_the_cli_chooses_a_code() -> None:
    chosen = [
        f"line {handler.lineno}: {ast.unparse(handler).splitlines()[0]}"
        for handler in ast.walk(_cli_tree())
        if isinstance(handler, ast.ExceptHandler)
        and any(isinstance(node, ast.Name) and node.id == "ExitCode" for node in ast.walk(handler))
    ]

    assert chosen == []


def _raising(error: BaseException) -> Callable[[str], None]:
    def require_ledger(url: str) -> None:
        raise error

    return require_ledger


def test_a_bug_still_shows_its_traceback(
    llm_ledger: Callable[..., Outcome], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not the library's error: main lets it through, and the interpreter prints it and exits 1.
    monkeypatch.setattr(migrate, "require_ledger", _raising(RuntimeError("a bug")))

    outcome = llm_ledger("project", "--database-url", sqlite_url)

    assert outcome.status == 1
    assert "Traceback" in outcome.err
    assert outcome.err.rstrip().splitlines()[-1] == "RuntimeError: a bug"  # the bug itself, not what handling it hit


def test_a_ledger_error_without_a_row_exits_1_in_one_line(
    llm_ledger: Callable[..., Outcome], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table's one change: such an error was a traceback (status 1 too), it is now said in one line.
    monkeypatch.setattr(migrate, "require_ledger", _raising(UnreadableEventError("event 42 no longer parses")))

    outcome = llm_ledger("project", "--database-url", sqlite_url)

    assert (outcome.status, outcome.err) == (1, "llm-ledger: event 42 no longer parses\n")
