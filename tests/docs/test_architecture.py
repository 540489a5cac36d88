"""docs/ARCHITECTURE.md is the project's map, and nothing in the project points outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
# Spelled in pieces so that this file does not name them itself (nor match a grep for either).
OUTSIDE = ("DES" + "IGN", ".." + "/shared")
_PATH = re.compile(r"(?<![\w./-])((?:llm_ledger|tests|bench|docs|deploy|examples|\.ci)/[\w./-]*[\w/])")


def project_files() -> list[Path]:
    """Every file of the project, tracked or new (not ignored): what a clone carries."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist)
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not _hidden(p.relative_to(ROOT))]
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def _hidden(path: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.parts)


def test_nothing_in_the_project_points_outside_it() -> None:
    files = project_files()
    assert ROOT / "README.md" in files and ARCHITECTURE in files
    pointing = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            pointing += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for name in OUTSIDE if name in line]
    assert pointing == [], "the project must stand alone; say it here or in docs/ARCHITECTURE.md:\n" + "\n".join(
        pointing
    )


def test_every_path_the_architecture_names_exists() -> None:
    named = sorted(set(_PATH.findall(ARCHITECTURE.read_text(encoding="utf-8"))))
    assert "llm_ledger/executor/execution.py" in named and "llm_ledger/environment.py" in named
    missing = [path for path in named if not (ROOT / path).exists()]
    assert missing == [], f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_the_readme_and_each_package_point_to_the_architecture() -> None:
    assert "docs/ARCHITECTURE.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    packages = sorted(p.parent.name for p in (ROOT / "llm_ledger").glob("*/__init__.py"))
    unpointed = [
        name
        for name in packages
        if "docs/ARCHITECTURE.md" not in (ROOT / "llm_ledger" / name / "__init__.py").read_text(encoding="utf-8")
    ]
    assert unpointed == [], f"these packages' docstrings do not point to docs/ARCHITECTURE.md: {unpointed}"
