"""The README's "Try it" commands work in a newcomer's shell: a new HOME, nothing configured."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from llm_ledger.demo import TENANT_AGENTS
from tests.demo.ledger import check_streams

ROOT = Path(__file__).resolve().parents[2]
LLM_LEDGER = Path(sys.executable).parent / "llm-ledger"


def try_it_commands() -> list[list[str]]:
    """The arguments of every ``llm-ledger`` command in the section's shell blocks (not the test command)."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for marker, block in re.findall(r"(<!-- test-command -->\n)?```bash\n(.*?)```", section, re.S):
        if marker:
            continue
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0].endswith("/llm-ledger"):
                    commands.append(words[1:])
    return commands


def test_the_try_it_commands_run_from_a_clean_home(clean_environment: Callable[..., dict[str, str]]) -> None:
    commands = try_it_commands()
    assert commands[0][0] == "demo" and ["dashboard"] in commands
    env = clean_environment()
    for arguments in commands:
        if arguments == ["dashboard"]:
            continue  # it serves until stopped: tests/dashboard run it
        if arguments[0] == "demo":
            arguments = [*arguments, "--sessions", "4", "--latency-scale", "0"]
        result = subprocess.run(
            [str(LLM_LEDGER), *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (arguments, result.stdout, result.stderr)
        if arguments[0] == "demo":
            assert "llm-ledger dashboard" in result.stdout.split("what to run next:")[1]

    ledger = Path(env["HOME"]) / ".llm-ledger" / "ledger.db"
    shape = check_streams(f"sqlite:///{ledger}")
    assert shape.sessions == 4 and shape.tenants == set(TENANT_AGENTS)
