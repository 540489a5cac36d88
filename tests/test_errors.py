"""One error root: every exception class llm_ledger defines is a ``LedgerError``, so ``except LedgerError`` catches
whatever the library raises, and each keeps the builtin base its callers' ``except ValueError`` relies on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llm_ledger.audit import AuditConfigurationError, AuditError, SealRefusedError, parse_since
from llm_ledger.cli_errors import UsageError
from llm_ledger.dashboard.source import LedgerNotReadyError
from llm_ledger.errors import LedgerError
from llm_ledger.events import CanonicalizationError, canonical_json
from llm_ledger.executor import (
    ConfigurationError,
    InvalidInputError,
    ProviderError,
    TimeoutError,
    parse_model_string,
)
from llm_ledger.projections import PriceTableError, ProjectionError, TenantNotAllowedError
from llm_ledger.store import (
    InvalidEventError,
    StoreConfigurationError,
    StoreError,
    UnreadableEventError,
    normalize_url,
)
from llm_ledger.store.dialects import DirectCopyConflict
from llm_ledger.store.migrate import DowngradeRefusedError, NoLedgerError, RevisionError, RevisionUnreadableError
from tests.walk import (
    PACKAGE_DIR,
    is_not_imported,
    package_exception_classes,
    package_modules,
    source_exception_classes,
)

KEPT_BASES: list[tuple[type[LedgerError], type[Exception]]] = [
    (ConfigurationError, ValueError),
    (CanonicalizationError, ValueError),
    (InvalidInputError, ValueError),
    (InvalidEventError, ValueError),
    (UnreadableEventError, ValueError),
    (StoreConfigurationError, ValueError),
    (RevisionUnreadableError, ValueError),
    (RevisionError, ValueError),
    (DowngradeRefusedError, RuntimeError),
    (AuditConfigurationError, ValueError),
    (PriceTableError, ValueError),
    (TenantNotAllowedError, PermissionError),
]
"""The builtin each class derived from before it had a root: code catching the builtin still catches it."""

PACKAGE_ROOTS: list[tuple[type[LedgerError], type[LedgerError]]] = [
    (TimeoutError, ProviderError),
    (InvalidInputError, ProviderError),
    (StoreConfigurationError, StoreError),
    (RevisionUnreadableError, StoreError),
    (NoLedgerError, StoreError),
    (DirectCopyConflict, StoreError),
    (SealRefusedError, AuditError),
    (AuditConfigurationError, AuditError),
    (PriceTableError, ProjectionError),
    (TenantNotAllowedError, ProjectionError),
]


def _name(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_exception_class_the_package_defines_is_a_ledger_error() -> None:
    outside = [_name(cls) for cls in package_exception_classes() if not issubclass(cls, LedgerError)]

    assert outside == [], "derive them from LedgerError (or from their package's root: StoreError, ...)"


def test_the_walk_finds_the_classes_of_every_layer() -> None:
    # A walk that imported nothing would find no class outside the root, and the test above would pass.
    found = set(package_exception_classes())

    expected = {DirectCopyConflict, TenantNotAllowedError, LedgerNotReadyError, UsageError, CanonicalizationError}
    assert expected <= found
    assert len(found) >= 35


def test_every_exception_class_says_when_it_is_raised() -> None:
    undocumented = [
        _name(cls) for cls in package_exception_classes() if not (cls.__dict__.get("__doc__") or "").strip()
    ]

    assert undocumented == []


def test_the_files_not_imported_define_no_exception_class() -> None:
    skipped = [path for path in sorted(PACKAGE_DIR.rglob("*.py")) if is_not_imported(path)]

    assert PACKAGE_DIR / "dashboard" / "app.py" in skipped
    defined = {str(path.relative_to(PACKAGE_DIR)): source_exception_classes(path) for path in skipped}
    assert {path: classes for path, classes in defined.items() if classes} == {}


def test_the_walk_finds_every_exception_class_in_the_source() -> None:
    # The walk finds a class once its definition has run: not one defined in a function no import calls.
    walked = {(cls.__module__, cls.__qualname__) for cls in package_exception_classes()}
    in_source = {
        (module.__name__, name)
        for module in package_modules()
        if module.__file__ is not None
        for name in source_exception_classes(Path(module.__file__))
    }

    assert sorted(in_source - walked) == []
    assert len(in_source) >= 35


@pytest.mark.parametrize(("cls", "builtin"), KEPT_BASES, ids=lambda value: getattr(value, "__name__", ""))
def test_a_class_keeps_its_builtin_base(cls: type[LedgerError], builtin: type[Exception]) -> None:
    assert issubclass(cls, builtin) and issubclass(cls, LedgerError)


@pytest.mark.parametrize(("cls", "root"), PACKAGE_ROOTS, ids=lambda value: getattr(value, "__name__", ""))
def test_a_class_is_under_its_packages_root(cls: type[LedgerError], root: type[LedgerError]) -> None:
    assert issubclass(cls, root)


@pytest.mark.parametrize(
    ("call", "raised"),
    [
        (lambda: normalize_url("garbage"), StoreConfigurationError),
        (lambda: parse_model_string("no-provider"), ConfigurationError),
        (lambda: canonical_json("\ud800"), CanonicalizationError),
        (lambda: parse_since("yesterday-ish"), AuditConfigurationError),
    ],
    ids=["store", "executor", "events", "audit"],
)
def test_one_clause_catches_what_the_library_raises(call: Callable[[], object], raised: type[LedgerError]) -> None:
    with pytest.raises(LedgerError) as caught:
        call()

    assert type(caught.value) is raised
