"""One table of exit codes: the CLI's ``ExitCode``, printed by ``llm-ledger --help`` and the README's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from llm_ledger.exit_codes import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_help_ends_with_the_table_of_exit_codes() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "llm_ledger.cli", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    table = completed.stdout.split("exit codes:\n", 1)[1]
    listed = [int(code) for code in re.findall(r"^  (\d+) ", table, flags=re.MULTILINE)]
    assert listed == [code.value for code in ExitCode]
    assert "audit verify: could not check" in table


def test_the_readme_documents_the_same_codes() -> None:
    section = README.read_text().split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    documented = [int(code) for code in re.findall(r"^\| `(\d+)` \|", section, flags=re.MULTILINE)]
    assert documented == [code.value for code in ExitCode]


def test_audit_verify_keeps_0_clean_and_1_broken() -> None:
    assert (ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE) == (0, 1, 2)
