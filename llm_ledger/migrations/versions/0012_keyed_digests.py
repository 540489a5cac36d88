"""Keyed digests in the audit views: audit_executions and audit_tool_calls gain each digest with its
algorithm and key id (docs/AUDIT.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Capture ``hash`` (and ``full``) now keeps HMAC-SHA-256 digests under the tenant's key
(``llm_ledger.events.digests``): a record holds ``digest``, ``digest_alg`` (``hmac-sha256``) and ``key_id``,
and ``sha256`` is null; events written before keep their plain ``sha256`` and no other digest field. No
event changes; the views read both forms:

- ``audit_executions`` gains, after the columns it had, ``input_digest``, ``input_digest_alg``,
  ``input_key_id``, ``output_digest``, ``output_digest_alg``, ``output_key_id``;
- ``audit_tool_calls`` gains ``arguments_digest``, ``arguments_digest_alg``, ``arguments_key_id``,
  ``result_digest``, ``result_digest_alg``, ``result_key_id`` (the arguments' on ``ToolCallStarted``, the
  result's on ``ToolCallSucceeded``).

A digest column holds the keyed digest, else the plain SHA-256 of an older event; its ``_alg`` says which
(``hmac-sha256`` or ``sha256``; null where there is none: capture ``none``, no answer); ``_key_id`` names the
key of a keyed one. ``input_sha256`` and ``output_sha256`` stay as they were, the plain digests alone.

PostgreSQL: replaced in place (``CREATE OR REPLACE`` keeps the grants; the ``security_invoker`` option is
given again, as 0004 and 0007 set it). The downgrade restores the columns of 0004 and 0007 as 0009's does
for audit_attempts, with 0008's helpers: each view and the views reading it saved, dropped and created again
with their options, owners, grants (column grants too) and comments. SQLite: dropped and created.

The SQL is written out rather than shared with the application because a revision must keep doing what it
did when it shipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

_EXECUTION_TERMINALS = "('ExecutionSucceeded', 'ExecutionFailed')"
_TOOL_TERMINALS = "('ToolCallSucceeded', 'ToolCallFailed')"
_EXECUTION_COLUMNS = tuple(
    f"{part}_{suffix}" for part in ("input", "output") for suffix in ("digest", "digest_alg", "key_id")
)
_TOOL_COLUMNS = tuple(
    f"{part}_{suffix}" for part in ("arguments", "result") for suffix in ("digest", "digest_alg", "key_id")
)


class _Dialect:
    """As 0004's: the few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, name: str) -> None:
        self.name = name

    def text(self, alias: str, *path: str) -> str:
        if self.name == "postgresql":
            if len(path) == 1:
                return f"({alias}.payload ->> '{path[0]}')"
            return f"({alias}.payload #>> '{{{','.join(path)}}}')"
        return f"json_extract({alias}.payload, '$.{'.'.join(path)}')"

    def integer(self, alias: str, *path: str) -> str:
        return f"CAST({self.text(alias, *path)} AS bigint)"

    def number(self, alias: str, *path: str) -> str:
        return f"CAST({self.text(alias, *path)} AS double precision)"

    def json(self, alias: str, key: str) -> str:
        if self.name == "postgresql":
            return f"({alias}.payload -> '{key}')"
        return f"json_extract({alias}.payload, '$.{key}')"


def _digest_columns(d: _Dialect, alias: str, record: str, name: str) -> str:
    """The three columns of the digest of the record ``record`` of ``alias``'s payload, named ``name_*``."""
    keyed, plain = d.text(alias, record, "digest"), d.text(alias, record, "sha256")
    return f""",
            COALESCE({keyed}, {plain}) AS {name}_digest,
            CASE WHEN {keyed} IS NOT NULL THEN {d.text(alias, record, "digest_alg")}
                WHEN {plain} IS NOT NULL THEN 'sha256' END AS {name}_digest_alg,
            {d.text(alias, record, "key_id")} AS {name}_key_id"""


def _same_stream(alias: str, of: str) -> str:
    return f"{alias}.tenant_id = {of}.tenant_id AND {alias}.stream_id = {of}.stream_id"


def _count_in_stream(of: str, condition: str = "") -> str:
    where = f" AND {condition}" if condition else ""
    return f"(SELECT count(*) FROM llm_ledger_events n WHERE {_same_stream('n', of)}{where})"


def _context(alias: str) -> str:
    return f"{alias}.tenant_id, {alias}.agent_id, {alias}.session_id, {alias}.turn_id, {alias}.step"


def _executions(d: _Dialect, *, with_digests: bool) -> str:
    """0004's ``audit_executions``, and with ``with_digests`` this revision's columns after its own."""
    last_error = (
        f"(SELECT {d.text('f', 'error_type')} FROM llm_ledger_events f WHERE {_same_stream('f', 's')}"
        " AND f.event_type = 'AttemptFailed' ORDER BY f.stream_position DESC LIMIT 1)"
    )
    last_provider = (
        f"(SELECT {d.text('p', 'provider')} FROM llm_ledger_events p WHERE {_same_stream('p', 's')}"
        " AND p.event_type = 'AttemptStarted' ORDER BY p.stream_position DESC LIMIT 1)"
    )
    head = (
        f"(SELECT h.hash FROM llm_ledger_events h WHERE {_same_stream('h', 's')}"
        " ORDER BY h.stream_position DESC LIMIT 1)"
    )
    first_terminal = (
        f"{_same_stream('t', 's')} AND t.stream_position = (SELECT min(x.stream_position) FROM llm_ledger_events x"
        f" WHERE {_same_stream('x', 's')} AND x.event_type IN {_EXECUTION_TERMINALS})"
    )
    added = (
        _digest_columns(d, "s", "input", "input") + _digest_columns(d, "t", "output", "output") if with_digests else ""
    )
    return f"""
        SELECT
            s.stream_id AS execution_id,
            {_context("s")},
            {d.text("s", "operation")} AS operation,
            s.occurred_at AS started_at,
            t.occurred_at AS ended_at,
            {d.json("s", "chain")} AS chain,
            CASE t.event_type WHEN 'ExecutionSucceeded' THEN {d.text("t", "model")}
                ELSE {d.text("t", "last_model")} END AS final_model,
            CASE t.event_type WHEN 'ExecutionSucceeded' THEN {d.text("t", "provider")}
                WHEN 'ExecutionFailed' THEN {last_provider} END AS final_provider,
            CASE t.event_type WHEN 'ExecutionSucceeded' THEN 'succeeded'
                WHEN 'ExecutionFailed' THEN 'failed' ELSE 'incomplete' END AS outcome,
            CASE t.event_type WHEN 'ExecutionFailed' THEN {d.text("t", "error_type")} END AS error_type,
            CASE t.event_type WHEN 'ExecutionFailed' THEN {d.text("t", "message")} END AS error_message,
            {last_error} AS last_attempt_error_type,
            {_count_in_stream("s", "n.event_type = 'AttemptStarted'")} AS attempts,
            {_count_in_stream("s", "n.event_type = 'FallbackTriggered'")} AS fallbacks,
            {d.number("t", "latency_ms")} AS latency_ms,
            {d.integer("t", "usage", "prompt_tokens")} AS prompt_tokens,
            {d.integer("t", "usage", "completion_tokens")} AS completion_tokens,
            {d.integer("t", "usage", "total_tokens")} AS total_tokens,
            {d.text("s", "capture")} AS capture,
            {d.integer("s", "input", "message_count")} AS input_messages,
            {d.integer("s", "input", "bytes")} AS input_bytes,
            {d.text("s", "input", "sha256")} AS input_sha256,
            {d.integer("t", "output", "bytes")} AS output_bytes,
            {d.text("t", "output", "sha256")} AS output_sha256,
            s.trace_id,
            {_count_in_stream("s")} AS events,
            {head} AS head_hash{added}
        FROM llm_ledger_events s
        LEFT JOIN llm_ledger_events t ON {first_terminal}
        WHERE s.event_type = 'ExecutionStarted'
    """


def _tool_calls(d: _Dialect, *, with_digests: bool) -> str:
    """0007's ``audit_tool_calls``, and with ``with_digests`` this revision's columns after its own (the
    result's digest from a ``ToolCallSucceeded`` only: a failed run has no result)."""
    first_terminal = (
        f"{_same_stream('t', 's')} AND t.stream_position = (SELECT min(x.stream_position) FROM llm_ledger_events x"
        f" WHERE {_same_stream('x', 's')} AND x.event_type IN {_TOOL_TERMINALS})"
    )
    added = (
        _digest_columns(d, "s", "arguments", "arguments") + _digest_columns(d, "t", "result", "result")
        if with_digests
        else ""
    )
    return f"""
        SELECT
            {_context("s")},
            {d.text("s", "execution_id")} AS execution_id,
            {d.text("s", "tool_call_id")} AS tool_call_id,
            {d.text("s", "tool_name")} AS tool_name,
            CASE t.event_type WHEN 'ToolCallSucceeded' THEN 'succeeded'
                WHEN 'ToolCallFailed' THEN 'failed' ELSE 'incomplete' END AS outcome,
            {d.number("t", "latency_ms")} AS latency_ms,
            CASE t.event_type WHEN 'ToolCallFailed' THEN {d.text("t", "error_type")} END AS error_type,
            s.occurred_at AS started_at,
            s.stream_id AS tool_execution_id,
            t.occurred_at AS ended_at,
            CASE t.event_type WHEN 'ToolCallFailed' THEN {d.text("t", "error_class")} END AS error_class,
            CASE t.event_type WHEN 'ToolCallFailed' THEN {d.text("t", "message")} END AS error_message,
            {d.text("s", "capture")} AS capture,
            s.trace_id,
            s.span_id{added}
        FROM llm_ledger_events s
        LEFT JOIN llm_ledger_events t ON {first_terminal}
        WHERE s.event_type = 'ToolCallStarted'
    """


_VIEWS = {"audit_executions": (_executions, _EXECUTION_COLUMNS), "audit_tool_calls": (_tool_calls, _TOOL_COLUMNS)}


def _has_security_invoker() -> bool:
    version = op.get_context().dialect.server_version_info
    return version is None or version >= (15,)


def _replace_views(*, with_digests: bool) -> None:
    d = _Dialect(op.get_context().dialect.name)
    for name, (select_of, added) in _VIEWS.items():
        select = select_of(d, with_digests=with_digests)
        if d.name != "postgresql":
            op.execute(f"DROP VIEW {name}")
            op.execute(f"CREATE VIEW {name} AS {select}")
        elif with_digests:  # columns added at the end: replaced in place, its grants kept
            option = " WITH (security_invoker = true)" if _has_security_invoker() else ""
            op.execute(f"CREATE OR REPLACE VIEW {name}{option} AS {select}")
        else:
            _recreate_view(name, select, added)


def _revision_0008() -> ModuleType:
    """0008, whose statements keep the views reading a relation through its replacement (a revision's file
    is no importable module: its name starts with a digit)."""
    spec = importlib.util.spec_from_file_location(
        "llm_ledger_revision_0008", Path(__file__).with_name("0008_partitioned_events.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recreate_view(name: str, select: str, removed: tuple[str, ...]) -> None:
    """Columns removed: only a new view can lose them, and a view reading it must go first. Saved in 0008's
    temporary tables (``name`` at depth 0, each view reading it deeper), with ``name``'s new definition
    and without the removed columns' grants and comments, then dropped and created again (as 0009's
    downgrade does for audit_attempts)."""
    revision_0008 = _revision_0008()
    views: str = revision_0008._VIEWS_TABLE
    op.execute(f"DROP TABLE IF EXISTS {views}_columns, {views}")
    op.execute(f"""
        CREATE TEMP TABLE {views} ON COMMIT DROP AS
        WITH RECURSIVE dependent(oid, depth) AS (
            SELECT '{name}'::regclass::oid, 0
            UNION
            SELECT r.ev_class, dependent.depth + 1
            FROM dependent JOIN pg_depend d ON d.refobjid = dependent.oid AND d.classid = 'pg_rewrite'::regclass
                JOIN pg_rewrite r ON r.oid = d.objid
            WHERE r.ev_class <> dependent.oid
        )
        SELECT c.oid, n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid) AS definition, c.reloptions,
            c.relacl, c.relowner, obj_description(c.oid, 'pg_class') AS description, max(dependent.depth) AS depth
        FROM dependent JOIN pg_class c ON c.oid = dependent.oid JOIN pg_namespace n ON n.oid = c.relnamespace
        GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.reloptions, c.relacl, c.relowner
    """)
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM {views} WHERE relkind <> 'v') THEN
                RAISE EXCEPTION 'a materialized view reads {name}: drop it, downgrade, recreate it';
            END IF;
        END
        $$
    """)
    op.execute(revision_0008._SAVE_VIEW_COLUMNS)
    op.execute(
        f"UPDATE {views} SET definition = $llm_ledger_0012${select}$llm_ledger_0012$ WHERE oid = '{name}'::regclass"
    )
    gone = ", ".join(f"'{column}'" for column in removed)
    op.execute(f"DELETE FROM {views}_columns WHERE oid = '{name}'::regclass AND attname IN ({gone})")
    op.execute(revision_0008._DROP_VIEWS)
    op.execute(revision_0008._RESTORE_VIEWS)
    op.execute(f"DROP TABLE {views}_columns, {views}")


def upgrade() -> None:
    _replace_views(with_digests=True)


def downgrade() -> None:
    # Views hold no data: the digests are in the events, as they were.
    _replace_views(with_digests=False)
