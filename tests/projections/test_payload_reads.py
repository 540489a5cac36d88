"""The readers of stored payloads (projections, audit, dashboard, demo) read them as JSON, by key, for
speed and to show a tampered event rather than fail on it: every key they read, and every event type they
name, is held here to the declaration in ``events.model``, so that renaming a field or an event type there
fails here instead of silently reading nothing."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import llm_ledger
from llm_ledger.events import EVENT_TYPES, PAYLOAD_TYPES, TokenUsage
from llm_ledger.projections import rollup

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
    key: str


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Variables holding a payload or a usage: named so, or assigned one (``p = event.payload``)."""
    names = {"payload": "payload", "usage": "usage"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Attribute) and value.attr in names:
                names[node.targets[0].id] = value.attr
    return names


def _reads(tree: ast.AST, where: str) -> Iterator[Read]:
    aliases = _aliases(tree)

    def holder(node: ast.expr) -> str | None:
        """``payload`` or ``usage`` when ``node`` is a variable or attribute holding one."""
        if isinstance(node, ast.Name):
            return aliases.get(node.id)
        return node.attr if isinstance(node, ast.Attribute) and node.attr in ("payload", "usage") else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            source = holder(node.value)
            if source and isinstance(node.slice.value, str):
                yield Read(where, source, node.slice.value)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func, key = node.func, node.args[0].value
            if isinstance(func, ast.Attribute) and func.attr == "get" and (source := holder(func.value)):
                yield Read(where, source, str(key))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            target, name = node.args[0], node.args[1]
            if (source := holder(target)) and isinstance(name, ast.Constant):
                yield Read(where, source, str(name.value))
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


def test_every_event_type_the_readers_name_is_registered() -> None:
    named = {(str(path.relative_to(_PACKAGE)), name) for path in _READERS for name in _event_type_names(_parsed(path))}
    assert len(named) > 10
    assert {(where, name) for where, name in named if name not in EVENT_TYPES} == set()
