"""The application image's Dockerfile (read, not built: no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _arguments(instruction: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == instruction]


def _pip_install_targets(text: str) -> list[str]:
    """What each ``pip install`` in ``text`` installs (options left out)."""
    targets = []
    for match in re.finditer(r"pip install ([^&|;\n`]+)", text):
        words = [w for w in shlex.split(match[1].split("#")[0]) if not w.startswith("-")]
        targets.extend(words[:1])
    return targets


def test_the_image_installs_the_package_with_the_dashboard_and_the_archive_the_way_the_readme_does() -> None:
    readme_targets = set(_pip_install_targets((ROOT / "README.md").read_text()))
    assert {".", ".[dashboard]", "llm-ledger[archive]"} <= readme_targets
    image_targets = [t for run in _arguments("RUN") for t in _pip_install_targets(run)]
    # The archive extra for the retention service: pyarrow, which Streamlit brings today but need not.
    assert image_targets == [".[dashboard,archive]"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"dashboard", "archive"} <= set(extras)


def test_the_image_copies_what_the_package_build_needs_before_installing_it() -> None:
    copied: set[str] = set()
    for name, arguments in _instructions():
        if name == "COPY":
            *sources, _destination = shlex.split(arguments)
            copied.update(source.rstrip("/") for source in sources)
        if name == "RUN" and "pip install" in arguments:
            break
    # pyproject.toml names README.md as the long description: the build fails without it.
    assert {"pyproject.toml", "README.md", "llm_ledger"} <= copied


def test_the_build_context_keeps_every_file_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    package_files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "llm_ledger").rglob("*") if p.is_file()]
    needed = ["pyproject.toml", "README.md"] + [
        path for path in package_files if "__pycache__" not in path and not path.endswith(".pyc")
    ]
    # Package data (pyproject's package-data) is among what the image needs: the migration template, py.typed.
    assert "llm_ledger/py.typed" in needed and any(path.endswith(".mako") for path in needed)
    ignored = [path for path in needed if any(_ignores(pattern, path) for pattern in patterns)]
    assert ignored == []


def _ignores(pattern: str, path: str) -> bool:
    """A .dockerignore pattern against a context path (Go filepath.Match rules, plus ``**/``; a pattern
    naming a directory ignores what is inside it)."""
    if pattern.startswith("**/"):
        return any(_ignores(pattern[3:], "/".join(path.split("/")[i:])) for i in range(len(path.split("/"))))
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts)))


def test_the_image_runs_the_cli_as_a_user_who_is_not_root() -> None:
    users = _arguments("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert json.loads(_arguments("ENTRYPOINT")[-1]) == ["llm-ledger"]
    assert [name for name, _ in _instructions()].index("USER") > max(
        i for i, (name, _) in enumerate(_instructions()) if name == "RUN"
    )


def test_nothing_in_the_image_phones_home() -> None:
    environment = " ".join(_arguments("ENV"))
    assert "AGNO_TELEMETRY=false" in environment
    assert "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false" in environment
