"""The database the migrations build is the one the models describe, on SQLite and PostgreSQL.

The revisions are history: each writes out its own DDL and imports no table of the application. The models
(``store.schema``, ``projections.schema``, ``audit.schema``) are what the application reads and writes.
These tests keep the two the same: a model changed without a new revision, or a revision that builds
something other than the models, fails here with the differences listed.

Alembic's ``compare_metadata`` compares tables, columns, types, nullability, server defaults, comments,
unique constraints and indexes; it does not compare primary keys, CHECK constraints or column order, which
are compared here from the inspector. Views, functions, triggers, grants, roles and row-level security are
not part of the models: the revisions write them in SQL and ``test_schema.py``, ``test_least_privilege.py``
and the audit tests check what they do.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Connection, DefaultClause, Inspector, MetaData, Table, inspect
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import SchemaItem

import llm_ledger.audit.schema
import llm_ledger.projections.schema
import llm_ledger.store.schema
from llm_ledger.store import create_store_engine, migrate
from llm_ledger.store.schema import EVENTS_PARTITION

MODEL_MODULES: tuple[ModuleType, ...] = (
    llm_ledger.store.schema,
    llm_ledger.projections.schema,
    llm_ledger.audit.schema,
)
REVISIONS_DIR = migrate.MIGRATIONS_DIR / "versions"


@dataclass(frozen=True)
class Unmodelled:
    """Something a migrated database has that the models do not declare, left out of the comparison."""

    dialect: str
    type_: str  # Alembic's word: "column", "index", ...
    table: str
    name: str
    why: str


UNMODELLED = (
    Unmodelled(
        "postgresql",
        "column",
        "llm_ledger_events",
        "tx_id",
        "0001 adds it on PostgreSQL only (xid8 of the inserting transaction, which store.read_all's cursor reads);"
        " the model leaves it out so that both dialects share one Table, and the database fills it",
    ),
    Unmodelled(
        "postgresql",
        "index",
        "llm_ledger_events",
        "ix_llm_ledger_events_tx_id_global_position",
        "tx_id's index, made with it by 0001",
    ),
    Unmodelled(
        "postgresql",
        "index",
        "llm_ledger_events",
        "ix_llm_ledger_events_tenant_id_tx_id_global_position",
        "each tenant's events in cursor order, for the audit (0015): on tx_id, which the model leaves out",
    ),
)
"""Whole objects the comparison skips (an ``include_object`` hook). The alembic version table is skipped by
Alembic itself; views are not reflected as tables."""


@dataclass(frozen=True)
class Tolerated:
    """One attribute of one column that the database and the models legitimately (or knowingly) differ on."""

    dialect: str
    kind: str  # Alembic's diff kind: "modify_default", "modify_comment", ...
    table: str
    column: str
    why: str


TOLERATED = (
    Tolerated(
        "sqlite",
        "modify_default",
        "llm_ledger_events",
        "global_position",
        "the model's Identity(always=True) is PostgreSQL's; SQLite has no identity columns (its INTEGER PRIMARY"
        " KEY rowid alias gives the positions), and Alembic reports the Identity as a missing default",
    ),
)
"""Attribute differences the comparison lets through: a column's other attributes are still compared."""


def _created_on(item: SchemaItem, dialect: str) -> bool:
    """Whether the model creates ``item`` on ``dialect``: a constraint or index made for one dialect only
    (``ddl_if(dialect=...)``, the events table's per-dialect keys) is compared on that dialect only."""
    condition = getattr(item, "_ddl_if", None)
    return condition is None or condition.dialect is None or condition.dialect == dialect


def _model_primary_key(table: Table, dialect: str) -> tuple[str | None, list[str]] | None:
    """The primary key the model gives ``table`` on ``dialect``: SQLAlchemy has one per table, made for
    PostgreSQL only on the events table, whose SQLite key is ``SQLITE_PRIMARY_KEY``."""
    key = table.primary_key
    name = str(key.name) if key.name else None
    if _created_on(key, dialect):
        return (name, [c.name for c in key]) if len(key) else None
    assert table is llm_ledger.store.schema.events and dialect == "sqlite"
    return (name, list(llm_ledger.store.schema.SQLITE_PRIMARY_KEY))


def _model_metadata() -> MetaData:
    """The one MetaData holding every model table (``migrations/env.py`` autogenerates from it)."""
    tables = [value for module in MODEL_MODULES for value in vars(module).values() if isinstance(value, Table)]
    metadatas = {id(table.metadata): table.metadata for table in tables}
    assert len(metadatas) == 1, (
        f"the models' tables are in {len(metadatas)} MetaData objects: migrations/env.py's target_metadata (and"
        " this test) see only store.schema.metadata; put every table in it"
    )
    (metadata,) = metadatas.values()
    assert metadata is llm_ledger.store.schema.metadata
    return metadata


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def migrated(
    request: pytest.FixtureRequest,
    _create_postgres_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Connection]:
    """A connection to a database of the module's own, of each dialect, brought from nothing to head."""
    if request.param == "postgresql":
        url = _create_postgres_database()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'ledger.db'}"
    migrate.upgrade(url)
    engine = create_store_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def _reflecting() -> Iterator[None]:
    # Reflection knows no xid8 (tx_id, which is not modelled); the warning says only that.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Did not recognize type 'xid8'")
        yield


def _shown(value: object) -> str:
    """A type, a server default (its SQL) or a flag, as a reader compares them."""
    if isinstance(value, DefaultClause):
        arg = value.arg
        return repr(getattr(arg, "text", arg))
    return repr(value)


def _column_key(diff: tuple[Any, ...]) -> tuple[str, str, str] | None:
    """``(kind, table, column)`` of a ``modify_*`` diff, the form ``Tolerated`` names; ``None`` for others."""
    if not diff[0].startswith("modify_"):
        return None
    return (diff[0], diff[2], diff[3])


def _describe(diff: tuple[Any, ...]) -> str:
    kind = diff[0]
    if kind.startswith("modify_"):
        _, _, table, column, _, in_database, in_models = diff
        return f"{kind} {table}.{column}: database {_shown(in_database)}, models {_shown(in_models)}"
    if kind in ("add_table", "remove_table"):
        return f"{kind} {diff[1].name}"
    if kind in ("add_column", "remove_column"):
        return f"{kind} {diff[2]}.{diff[3].name} {diff[3].type!r}"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        item = diff[1]
        return f"{kind} {item.table.name}.{item.name} ({', '.join(c.name for c in item.columns)})"
    return repr(diff)


def _flattened(diffs: list[Any]) -> Iterator[tuple[Any, ...]]:
    # Alembic groups the modify_* diffs of one column in a list.
    for diff in diffs:
        if isinstance(diff, list):
            yield from diff
        else:
            yield diff


def test_migrated_schema_matches_the_models(migrated: Connection) -> None:
    dialect = migrated.dialect.name
    unmodelled = {(u.type_, u.table, u.name): u for u in UNMODELLED if u.dialect == dialect}
    tolerated = {(t.kind, t.table, t.column): t for t in TOLERATED if t.dialect == dialect}
    skipped: set[Unmodelled] = set()

    def include_object(
        item: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
    ) -> bool:
        if not reflected and not _created_on(item, dialect):
            return False
        table = getattr(item, "table", None)
        if reflected and EVENTS_PARTITION.fullmatch(str(name if type_ == "table" else getattr(table, "name", ""))):
            return False  # a partition of the events table (0008): the model is its parent
        found = unmodelled.get((type_, getattr(table, "name", ""), name or ""))
        if found is None or not reflected or compare_to is not None:
            return True
        skipped.add(found)
        return False

    context = MigrationContext.configure(
        migrated,
        opts={
            "version_table": migrate.VERSION_TABLE,
            "compare_type": True,
            "compare_server_default": True,
            "include_object": include_object,
        },
    )
    with _reflecting():
        diffs = list(_flattened(compare_metadata(context, _model_metadata())))

    let_through = {tolerated[key] for diff in diffs if (key := _column_key(diff)) in tolerated}
    differences = [_describe(diff) for diff in diffs if _column_key(diff) not in tolerated]
    assert not differences, f"{dialect}: the migrated database differs from the models:\n" + "\n".join(differences)
    stale = [f"{u.type_} {u.table}.{u.name}" for u in unmodelled.values() if u not in skipped] + [
        f"{t.kind} {t.table}.{t.column}" for t in tolerated.values() if t not in let_through
    ]
    assert not stale, f"{dialect}: no longer needed, remove from this test's exceptions: {', '.join(stale)}"


def _differences_alembic_leaves_out(
    inspector: Inspector, table: Table, unmodelled_columns: set[str], dialect: str
) -> Iterator[str]:
    columns = [c["name"] for c in inspector.get_columns(table.name) if c["name"] not in unmodelled_columns]
    model_columns = [c.name for c in table.columns]
    if columns != model_columns:
        yield f"{table.name} columns: database {columns}, models {model_columns}"
    key = inspector.get_pk_constraint(table.name)
    in_database = (key["name"], key["constrained_columns"]) if key["constrained_columns"] else None
    in_models = _model_primary_key(table, dialect)
    if in_database != in_models:
        yield f"{table.name} primary key: database {in_database}, models {in_models}"
    checks = sorted(str(check["name"]) for check in inspector.get_check_constraints(table.name))
    model_checks = sorted(str(c.name) for c in table.constraints if isinstance(c, CheckConstraint))
    if checks != model_checks:
        yield f"{table.name} check constraints: database {checks}, models {model_checks}"


def test_primary_keys_checks_and_column_order_match_the_models(migrated: Connection) -> None:
    """What ``compare_metadata`` leaves out: primary keys (name, columns in order), CHECK constraints (by
    name), and each table's columns in the model's order (then, on PostgreSQL, ``tx_id``)."""
    dialect = migrated.dialect.name
    inspector = inspect(migrated)
    differences: list[str] = []
    with _reflecting():
        for table in _model_metadata().sorted_tables:  # the models' tables: partitions are not among them
            unmodelled = {
                u.name for u in UNMODELLED if (u.dialect, u.type_, u.table) == (dialect, "column", table.name)
            }
            differences.extend(_differences_alembic_leaves_out(inspector, table, unmodelled, dialect))
    assert not differences, f"{dialect}: the migrated database differs from the models:\n" + "\n".join(differences)


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules.add(node.module)
    return modules


FROZEN_REVISION_MAY_IMPORT = frozenset({"llm_ledger.store.migrate"})
"""For ``DowngradeRefusedError``, which callers of ``migrate.downgrade`` catch (a copy would not be caught)."""


def test_revisions_import_no_table_of_the_application() -> None:
    revisions = sorted(REVISIONS_DIR.glob("*.py"))
    assert len(revisions) >= 6
    imports = {
        path.name: sorted(
            module
            for module in _imported_modules(path)
            if module.split(".")[0] == "llm_ledger" and module not in FROZEN_REVISION_MAY_IMPORT
        )
        for path in revisions
    }
    offending = {name: modules for name, modules in imports.items() if modules}
    assert not offending, f"a revision is history and writes out its own DDL; these import the application: {offending}"
