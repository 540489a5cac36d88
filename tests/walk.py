"""Every module of ``llm_ledger``, imported, and the exception classes they define: what the error tests read."""

from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import llm_ledger

PACKAGE_DIR = Path(llm_ledger.__file__).resolve().parent

NOT_IMPORTED = {
    "dashboard/app.py": "a Streamlit script: importing it draws the dashboard (its last line runs main())",
    "migrations/env.py": "Alembic's environment script: importing it runs a migration",
    "migrations/versions/*.py": "Alembic's revisions, loaded by Alembic from their files (migrations is no package)",
}
"""The package's files that the walk does not import, and why; ``source_exception_classes`` reads them instead."""

_EXCEPTION_NAME = re.compile(r"(Error|Exception|Conflict|Warning|Interrupt|Exit)$")


@functools.cache
def package_modules() -> tuple[ModuleType, ...]:
    """Every module of the package but ``NOT_IMPORTED``'s, imported."""
    modules = [llm_ledger]
    for info in pkgutil.walk_packages(llm_ledger.__path__, f"{llm_ledger.__name__}."):
        if not is_not_imported(module_path(info.name)):
            modules.append(importlib.import_module(info.name))
    return tuple(modules)


def module_path(name: str) -> Path:
    """Where the module named ``name`` lives, found from its name only (without importing it)."""
    relative = Path(*name.split(".")[1:])
    package = PACKAGE_DIR / relative / "__init__.py"
    return package if package.exists() else (PACKAGE_DIR / relative).with_suffix(".py")


def is_not_imported(path: Path) -> bool:
    relative = path.relative_to(PACKAGE_DIR)
    return any(relative.match(pattern) for pattern in NOT_IMPORTED)


@functools.cache
def package_exception_classes() -> tuple[type[BaseException], ...]:
    """Every exception class the package's modules define (at module level or not), once they are imported."""
    package_modules()
    found: list[type[BaseException]] = []
    pending: list[type[BaseException]] = [BaseException]
    while pending:
        cls = pending.pop()
        pending.extend(type.__subclasses__(cls))
        if cls.__module__.split(".")[0] == llm_ledger.__name__ and cls not in found:
            found.append(cls)
    return tuple(sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__)))


def source_exception_classes(path: Path) -> list[str]:
    """The classes in a file's source whose base is named like an exception class (``...Error``, ...), at any
    depth, by qualified name (``f.<locals>.X`` for one defined in a function ``f``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return list(_exception_classes_in(tree, ""))


def _exception_classes_in(node: ast.AST, prefix: str) -> Iterator[str]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            if any(_EXCEPTION_NAME.search(ast.unparse(base)) for base in child.bases):
                yield f"{prefix}{child.name}"
            yield from _exception_classes_in(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _exception_classes_in(child, f"{prefix}{child.name}.<locals>.")
        else:
            yield from _exception_classes_in(child, prefix)
