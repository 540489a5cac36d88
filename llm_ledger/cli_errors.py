"""How an ``llm-ledger`` command that ends on an error exits: the one table from error class to exit code,
and the one line on stderr that says why, never a traceback.

Every command lets the library's errors (``LedgerError``) and Ctrl-C reach ``main``, which asks ``report``.
The most specific class of the error that the table lists decides (along its MRO), so a new subclass exits
as its base does until it is given a row of its own; a ``LedgerError`` no row names exits ``FAILED``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from llm_ledger.audit import AuditConfigurationError, SealRefusedError
from llm_ledger.audit.erasure import NothingToEraseError, UnknownErasureTargetError
from llm_ledger.dashboard.login import LoginConfigurationError
from llm_ledger.errors import LedgerError
from llm_ledger.executor.digest_secret import DigestSecretError
from llm_ledger.exit_codes import ExitCode
from llm_ledger.projections import PriceTableError
from llm_ledger.store import StoreConfigurationError, StoreUnavailableError
from llm_ledger.store.migrate import DowngradeRefusedError, NoLedgerError, RevisionError


class UsageError(LedgerError):
    """Raised by a command for an option or a ledger it cannot use (found before it starts its work)."""


@dataclass(frozen=True, slots=True)
class Exit:
    """What a command ending on an error exits with, and what its line on stderr starts with (``None``:
    it prints nothing)."""

    code: ExitCode
    prefix: str | None = "llm-ledger"


EXITS: dict[type[LedgerError] | type[KeyboardInterrupt], Exit] = {
    NoLedgerError: Exit(ExitCode.NO_LEDGER),
    StoreUnavailableError: Exit(ExitCode.NO_LEDGER),
    StoreConfigurationError: Exit(ExitCode.USAGE),
    RevisionError: Exit(ExitCode.USAGE),
    PriceTableError: Exit(ExitCode.USAGE),
    # Not FAILED: nothing was found broken, the ledger could not be checked.
    AuditConfigurationError: Exit(ExitCode.USAGE),
    UsageError: Exit(ExitCode.USAGE),
    LoginConfigurationError: Exit(ExitCode.USAGE),
    DigestSecretError: Exit(ExitCode.USAGE),
    DowngradeRefusedError: Exit(ExitCode.FAILED, prefix="refused"),
    # `audit seal` says each refusal itself (escaped: a tenant id is not trusted text) and goes on sealing.
    SealRefusedError: Exit(ExitCode.FAILED),
    # The message says "nothing to erase: ..." itself.
    NothingToEraseError: Exit(ExitCode.FAILED),
    UnknownErasureTargetError: Exit(ExitCode.USAGE),
    LedgerError: Exit(ExitCode.FAILED),
    KeyboardInterrupt: Exit(ExitCode.INTERRUPTED, prefix=None),
}


def exit_for(error: type[LedgerError | KeyboardInterrupt]) -> Exit:
    """The row of the most specific class of ``error`` that the table lists."""
    return next(EXITS[cls] for cls in error.__mro__ if cls in EXITS)


def exit_code(error: type[LedgerError | KeyboardInterrupt]) -> ExitCode:
    """The exit code of a command that ends on ``error``."""
    return exit_for(error).code


def report(error: LedgerError | KeyboardInterrupt) -> ExitCode:
    """Say on stderr why the command ends (in one line, unless its row says nothing), and return its code."""
    row = exit_for(type(error))
    if row.prefix is not None:
        print(f"{row.prefix}: {error}", file=sys.stderr)
    return row.code
