"""The readers of stored payloads (projections, audit, dashboard, demo, and the audit views' SQL) read
them as JSON, by key, for speed and to show a tampered event rather than fail on it: every key they read,
and every event type they name, is held here to the declaration in ``events.model``, so that renaming a
field or an event type there fails here instead of silently reading nothing. A key the scan cannot name
(read through a variable) fails too."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import llm_ledger
from llm_ledger.events import EVENT_TYPES, PAYLOAD_TYPES, STREAM_KINDS, TERMINAL_EVENT_TYPES, TokenUsage
from llm_ledger.projections import rollup
from llm_ledger.store.migrate import upgrade

_PACKAGE = Path(llm_ledger.__file__).parent
_READERS = sorted(
    path for area in ("projections", "audit", "dashboard", "demo") for path in (_PACKAGE / area).rglob("*.py")
)
_PAYLOAD_FIELDS = {name for model in PAYLOAD_TYPES.values() for name in model.model_fields}
_USAGE_FIELDS = set(TokenUsage.model_fields)
_EVENT_TYPE_LIKE = re.compile(r"^(?:[A-Z][a-z]+)+(?:Started|Succeeded|Failed|Triggered)$")
# SQL reading a payload field: PostgreSQL's ->> / -> / #>> and SQLite's json_extract.
_SQL_KEY = re.compile(
    r"payload\s*->>?\s*'(\w+)'|payload\s*#>>\s*'\{(\w+)|json_extract\(\s*[\w.]*payload\s*,\s*'\$\.(\w+)"
)


@dataclass(frozen=True)
class Read:
    where: str
    source: str  # "payload" or "usage"
    key: str | None  # None: a key the scan cannot name (a variable), which the readers must not use


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Variables holding a payload or a usage: named so, or assigned one (``p = event.payload``)."""
    names = {"payload": "payload", "usage": "usage"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Attribute) and value.attr in names:
                names[node.targets[0].id] = value.attr
    return names


def _reads(tree: ast.AST, where: str, aliases: dict[str, str] | None = None) -> Iterator[Read]:
    aliases = _aliases(tree) if aliases is None else aliases

    def holder(node: ast.expr) -> str | None:
        """``payload`` or ``usage`` when ``node`` is a variable, attribute or item holding one (``p``,
        ``event.payload``, ``record["payload"]``, ``payload["usage"]``)."""
        if isinstance(node, ast.Name):
            return aliases.get(node.id)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
            return key if key in ("payload", "usage") else None
        return node.attr if isinstance(node, ast.Attribute) and node.attr in ("payload", "usage") else None

    methods = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and (source := holder(node.value)):
            key = node.slice.value if isinstance(node.slice, ast.Constant) else None
            yield Read(where, source, key if isinstance(key, str) else None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if source := holder(node.func.value):
                key = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                yield Read(where, source, key if isinstance(key, str) else None)
        elif isinstance(node, ast.Attribute) and id(node) not in methods and (source := holder(node.value)):
            yield Read(where, source, node.attr)  # a model's field (``usage.total_tokens``)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            target, name = node.args[0], node.args[1]
            if source := holder(target):
                key = name.value if isinstance(name, ast.Constant) else None
                yield Read(where, source, key if isinstance(key, str) else None)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in _SQL_KEY.finditer(node.value):
                yield Read(where, "payload", next(group for group in match.groups() if group))


def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _all_reads() -> list[Read]:
    return [read for path in _READERS for read in _reads(_parsed(path), str(path.relative_to(_PACKAGE)))]


def test_every_payload_key_read_is_a_declared_field() -> None:
    reads = _all_reads()
    assert len(reads) > 20  # the scan sees the readers (a rename of their variables would hide them)
    unknown = [read for read in reads if read.key not in (_USAGE_FIELDS if read.source == "usage" else _PAYLOAD_FIELDS)]
    assert not unknown


def _handler_methods() -> dict[str, str]:
    """Event type -> the name of the ``Folder`` method ``rollup._HANDLERS`` gives it."""
    return {event_type: handler.__name__ for event_type, handler in rollup._HANDLERS.items()}


@pytest.mark.parametrize("event_type", sorted(rollup._HANDLERS))
def test_each_fold_reads_only_the_fields_of_its_event_types_payload(event_type: str) -> None:
    method = _handler_methods()[event_type]
    functions = {
        node.name: node for node in ast.walk(_parsed(Path(rollup.__file__))) if isinstance(node, ast.FunctionDef)
    }
    body = functions[method]
    # The fold's own reads, and those of the module's functions it hands the payload to (``edge_origin``).
    called = {node.func.id for node in ast.walk(body) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    bodies = [body, *(functions[name] for name in sorted(called) if name in functions)]
    keys = {read.key for tree in bodies for read in _reads(tree, method) if read.source == "payload"}
    assert keys <= set(PAYLOAD_TYPES[event_type].model_fields)
    assert bool(keys) == (event_type in rollup.PAYLOAD_TYPES)


def test_the_projections_fold_or_pass_over_every_event_type() -> None:
    assert set(rollup._HANDLERS) | rollup.UNFOLDED_EVENT_TYPES == set(EVENT_TYPES)
    assert not set(rollup._HANDLERS) & rollup.UNFOLDED_EVENT_TYPES


def _is_event_type(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "event_type"


def _event_type_names(tree: ast.AST) -> Iterator[str]:
    """The strings compared with an ``event_type`` (``==``, ``in``, ``match``), and any string shaped like an
    event type's name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(map(_is_event_type, [node.left, *node.comparators])):
            for side in [node.left, *node.comparators]:
                for constant in ast.walk(side):
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                        yield constant.value
        elif isinstance(node, ast.Match) and _is_event_type(node.subject):
            for case in node.cases:
                if isinstance(case.pattern, ast.MatchValue) and isinstance(case.pattern.value, ast.Constant):
                    yield str(case.pattern.value.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _EVENT_TYPE_LIKE.match(node.value):
            yield node.value


def _types_tested(test: ast.expr) -> set[str]:
    """The event types a condition limits ``event_type`` to (``== "X"``, ``in ("X", "Y")``, either as one
    side of an ``and``); empty when it does not."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return next((types for value in test.values if (types := _types_tested(value))), set())
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and _is_event_type(test.left)):
        return set()
    op, (right,) = test.ops[0], test.comparators
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return {right.value}
    if isinstance(op, ast.In) and isinstance(right, (ast.Tuple, ast.Set, ast.List)):
        names = [e.value for e in right.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return set(names) if len(names) == len(right.elts) else set()
    return set()


def _branches(tree: ast.AST) -> Iterator[tuple[set[str], list[ast.AST]]]:
    """The code that runs for given event types only: an ``if``'s body, a ``match`` case, a comprehension's
    element under its ``if``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (types := _types_tested(node.test)):
            yield types, list(node.body)
        elif isinstance(node, ast.Match) and _is_event_type(node.subject):
            for case in node.cases:
                if isinstance(case.pattern, ast.MatchValue) and isinstance(case.pattern.value, ast.Constant):
                    yield {str(case.pattern.value.value)}, list(case.body)
        elif isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp)) and len(node.generators) == 1:
            types = next((t for test in node.generators[0].ifs if (t := _types_tested(test))), set())
            if types:
                yield types, [node.elt]


@pytest.mark.parametrize("path", _READERS, ids=lambda path: str(path.relative_to(_PACKAGE)))
def test_a_branch_for_some_event_types_reads_fields_of_their_payloads(path: Path) -> None:
    tree = _parsed(path)
    aliases = _aliases(tree)
    wrong = set()
    for types, body in _branches(tree):
        fields = {
            name
            for event_type in types
            if event_type in PAYLOAD_TYPES
            for name in PAYLOAD_TYPES[event_type].model_fields
        }
        for node in body:
            for read in _reads(node, str(path.relative_to(_PACKAGE)), aliases):
                if read.source == "payload" and read.key not in fields:
                    wrong.add((tuple(sorted(types)), read.key))
    assert not wrong


def test_every_event_type_the_readers_name_is_registered() -> None:
    named = {(str(path.relative_to(_PACKAGE)), name) for path in _READERS for name in _event_type_names(_parsed(path))}
    assert len(named) > 10
    assert {(where, name) for where, name in named if name not in EVENT_TYPES} == set()


# --- the audit views (SQL in a frozen migration, read by auditors and the dashboard) ----------------


@pytest.fixture(scope="module")
def view_sql(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each view of a database migrated to the head, by name: its SQL as SQLite holds it (the same view
    text PostgreSQL's is rendered from)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('views') / 'ledger.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'view'")).all()
    finally:
        engine.dispose()
    return {name: sql for name, sql in rows}


def test_the_audit_views_read_declared_fields_of_registered_event_types(view_sql: dict[str, str]) -> None:
    assert {"audit_executions", "audit_attempts", "audit_fallbacks", "audit_incomplete", "audit_tool_calls"} <= set(
        view_sql
    )
    keys = {(view, next(g for g in m.groups() if g)) for view, sql in view_sql.items() for m in _SQL_KEY.finditer(sql)}
    assert len(keys) > 20  # the scan sees the views' reads of the payload
    assert {(view, key) for view, key in keys if key not in _PAYLOAD_FIELDS} == set()
    named = {(view, name) for view, sql in view_sql.items() for name in re.findall(r"'(\w+)'", sql)}
    named = {(view, name) for view, name in named if _EVENT_TYPE_LIKE.match(name)}
    assert {(view, name) for view, name in named if name not in EVENT_TYPES} == set()


_VIEWS_OF_KIND = {
    "execution": ("audit_executions", "audit_incomplete"),
    "tool_call": ("audit_tool_calls", "audit_incomplete"),
}
"""The views listing the streams of each kind with their outcome: they start from its first event type and
end a stream at each of its terminal types."""


def test_the_audit_views_end_a_stream_at_each_terminal_event_type_of_its_kind(view_sql: dict[str, str]) -> None:
    """A new terminal event type, or kind of stream, needs a revision recreating the views, or its streams
    show as incomplete (or not at all)."""
    assert set(_VIEWS_OF_KIND) == set(STREAM_KINDS)
    for kind, views in _VIEWS_OF_KIND.items():
        for view in views:
            named = set(re.findall(r"'(\w+)'", view_sql[view]))
            assert named >= STREAM_KINDS[kind].terminals | {STREAM_KINDS[kind].start}, (kind, view)
    assert set().union(*(STREAM_KINDS[kind].terminals for kind in _VIEWS_OF_KIND)) == TERMINAL_EVENT_TYPES


def test_an_execution_view_starts_from_executions_only(view_sql: dict[str, str]) -> None:
    """A tool's execution is a stream of its own: the execution views never take one for an execution."""
    for view in ("audit_executions", "audit_attempts", "audit_fallbacks"):
        assert not set(re.findall(r"'(\w+)'", view_sql[view])) & STREAM_KINDS["tool_call"].event_types, view


_DOCS = sorted([_PACKAGE.parent / "README.md", *(_PACKAGE.parent / "docs").glob("*.md")])


def test_the_sql_the_docs_show_reads_declared_fields_of_registered_event_types() -> None:
    """README.md's and docs/*.md's queries (an auditor pastes them) read the payload through the views
    mostly; the ones that read it directly are held to the declaration like the package's."""
    texts = {path.name: path.read_text() for path in _DOCS}
    keys = {(name, next(g for g in m.groups() if g)) for name, doc in texts.items() for m in _SQL_KEY.finditer(doc)}
    assert keys  # README.md's psql example reads payload->>'model'
    assert {(name, key) for name, key in keys if key not in _PAYLOAD_FIELDS} == set()
    quoted = {(name, word) for name, doc in texts.items() for word in re.findall(r"'(\w+)'", doc)}
    assert {(name, word) for name, word in quoted if _EVENT_TYPE_LIKE.match(word) and word not in EVENT_TYPES} == set()
