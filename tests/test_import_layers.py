"""The layers of docs/ARCHITECTURE.md hold: every contract of ``[tool.importlinter]`` in pyproject.toml, checked
by ``lint-imports`` over the package as it is on disk (function-level imports included). One run of the
linter; one test per contract, so a broken rule is named by the failing test, with the chains that break it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS: list[dict[str, Any]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]


ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


@pytest.fixture(scope="module")
def report() -> str:
    # Wide enough that no contract's name is wrapped: each is then one line ending in KEPT or BROKEN.
    environment = os.environ | {"COLUMNS": "1000"}
    checked = subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return checked.stdout + checked.stderr


def test_the_package_has_contracts() -> None:
    assert {contract["type"] for contract in CONTRACTS} >= {"layers", "forbidden"}


@pytest.mark.parametrize("contract", CONTRACTS, ids=[contract["id"] for contract in CONTRACTS])
def test_the_import_contract_is_kept(report: str, contract: dict[str, str]) -> None:
    verdicts = [line for line in report.splitlines() if line.startswith(f"{contract['name']} ")]
    assert len(verdicts) == 1, f"lint-imports did not check {contract['id']!r}:\n{report}"
    verdict = verdicts[0].removeprefix(contract["name"]).split()[0]
    assert verdict == "KEPT", f"{contract['id']!r} is {verdict}:\n{report}"


def test_the_architecture_names_every_layer_of_the_contract() -> None:
    """The Layers table of docs/ARCHITECTURE.md is the rule a reader sees: each module the layers contract
    places is in it."""
    section = ARCHITECTURE.read_text().split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    (layers,) = [contract for contract in CONTRACTS if contract["type"] == "layers"]
    placed = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    missing = sorted(name for name in placed if f"`llm_ledger.{name}`" not in section)
    assert not missing, f"docs/ARCHITECTURE.md's Layers table does not name: {missing}"
