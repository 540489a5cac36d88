"""The public API is a contract (as httpx keeps its own): ``llm_ledger.__all__`` is sorted, lists exactly what the
package exposes, documents every name, and ``__version__`` is the installed distribution's. The sub-packages'
``__all__`` are held to the first two."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import llm_ledger

SUB_PACKAGES = sorted(
    info.name
    for info in pkgutil.walk_packages(llm_ledger.__path__, f"{llm_ledger.__name__}.")
    if info.ispkg and hasattr(importlib.import_module(info.name), "__all__")
)
"""Every sub-package that declares an ``__all__`` (found, not listed: a new one is held to it too)."""
PUBLIC_DUNDERS = {"llm_ledger": {"__version__"}}
"""Names starting with ``_`` that a package exports on purpose."""


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps an ``__all__`` in: CONSTANTS, then Classes, then everything else."""
    if len(name) > 1 and name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def exposed(module: ModuleType) -> set[str]:
    """What ``from module import *`` would give without an ``__all__``: every public name but the modules."""
    return {
        name for name, value in vars(module).items() if not name.startswith("_") and not isinstance(value, ModuleType)
    } | PUBLIC_DUNDERS.get(module.__name__, set())


def value_docstring(module_name: str, name: str) -> str | None:
    """The string literal after ``name = ...`` where it is assigned, following the ``from ... import``s there."""
    module = importlib.import_module(module_name)
    statements = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8")).body
    for statement, following in zip(statements, [*statements[1:], None], strict=True):
        source = _imported_from(statement, name)
        if source is not None:
            return value_docstring(source, name)
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            docstring = following.value if isinstance(following, ast.Expr) else None
            return docstring.value if isinstance(docstring, ast.Constant) and isinstance(docstring.value, str) else None
    return None


def _imported_from(statement: ast.stmt, name: str) -> str | None:
    """The module that ``statement`` imports ``name`` from, when it is a ``from package.module import name``."""
    if not isinstance(statement, ast.ImportFrom) or statement.level != 0:
        return None
    return statement.module if any((alias.asname or alias.name) == name for alias in statement.names) else None


def documentation(module: ModuleType, name: str) -> str | None:
    """A class's or a function's own docstring (not a base's, nor the signature a dataclass writes for itself);
    the docstring written after a value's assignment."""
    value = getattr(module, name)
    if isinstance(value, type):
        doc = value.__dict__.get("__doc__") or ""
        return None if doc.startswith(f"{value.__name__}(") else doc.strip() or None
    if inspect.isfunction(value):
        return (value.__doc__ or "").strip() or None
    return value_docstring(module.__name__, name)


@pytest.mark.parametrize("name", ["llm_ledger", *SUB_PACKAGES])
def test_all_is_sorted(name: str) -> None:
    exported = importlib.import_module(name).__all__

    assert exported == sorted(exported, key=isort_style)


@pytest.mark.parametrize("name", ["llm_ledger", *SUB_PACKAGES])
def test_all_lists_what_the_package_exposes(name: str) -> None:
    module = importlib.import_module(name)

    assert set(module.__all__) == exposed(module)
    assert len(module.__all__) == len(set(module.__all__))


def test_the_sub_packages_are_found() -> None:
    assert {"llm_ledger.audit", "llm_ledger.executor", "llm_ledger.store", "llm_ledger.telemetry"} <= set(SUB_PACKAGES)


def test_the_api_exports_the_error_root() -> None:
    from llm_ledger.errors import LedgerError

    assert llm_ledger.LedgerError is LedgerError
    assert issubclass(llm_ledger.ProviderError, llm_ledger.LedgerError)


def test_every_name_of_the_api_is_documented() -> None:
    undocumented = [
        name for name in llm_ledger.__all__ if name != "__version__" and documentation(llm_ledger, name) is None
    ]

    assert undocumented == []


def test_version_is_the_installed_distributions() -> None:
    assert llm_ledger.__version__ == importlib.metadata.version("llm-ledger")


def test_version_is_read_from_the_metadata_not_written_in_the_source() -> None:
    # The check above passes for a literal equal to today's version too: install another one and look again.
    script = (
        "import importlib.metadata\n"
        "importlib.metadata.version = lambda name: '9.9.9' if name == 'llm-ledger' else None\n"
        "import llm_ledger\n"
        "print(llm_ledger.__version__)\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)

    assert shown.stdout.strip() == "9.9.9"
