"""The exit codes of every ``llm-ledger`` command: one table, shown by ``llm-ledger --help``."""

from __future__ import annotations

import textwrap
from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status says; ``audit verify``'s 0 clean, 1 broken are the same codes."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NO_LEDGER = 3
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done (audit verify: the ledger is clean)",
    ExitCode.FAILED: "the command ran and found a problem: audit verify found the ledger broken, db current found"
    " its schema behind, db downgrade refused to drop recorded events, the demo's checks failed, erase had nothing to"
    " destroy, or left texts stored in plain it cannot erase or could not check for them",
    ExitCode.USAGE: "usage or configuration error (audit verify: could not check): an argument, option value,"
    " environment variable, key or configuration file that cannot be used, or a ledger whose schema is older than"
    " the command needs (run llm-ledger db upgrade)",
    ExitCode.NO_LEDGER: "the database cannot be reached, or there is no ledger there: an SQLite file that does not"
    " exist (only db upgrade and demo create one), a database never migrated (audit verify: could not check)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_table() -> str:
    """The table as ``llm-ledger --help`` prints it."""
    rows = (
        textwrap.fill(code.meaning, width=100, initial_indent=f"  {code.value:<5}", subsequent_indent=" " * 7)
        for code in ExitCode
    )
    return "exit codes:\n" + "\n".join(rows)
