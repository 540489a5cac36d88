"""A failed tool's exception text in the audit views: audit_content lists it among the encrypted texts, and
audit_tool_calls gains its digest (docs/AUDIT.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

``ToolCallFailed`` now keeps the exception's text in ``error_text``, a capture record like the arguments'
(sizes; a keyed digest under ``hash`` and ``full``; under ``full`` the scrubbed text, encrypted under a
data key of the same tenant, subject and session), and ``message`` names the class only. Events recorded
before keep the text in ``message``, plain, and no ``error_text``. No event changes; the views read both forms:

- ``audit_content`` lists ``error_text`` among its fields, so that an erasure's effect on it shows
  (``erased``, ``key_state``); its columns are those of 0011;
- ``audit_tool_calls`` gains, after the columns it had, ``error_text_digest``, ``error_text_digest_alg``,
  ``error_text_key_id`` (as 0012's ``arguments_*``; null for a success, a cancellation and an older event).

PostgreSQL: replaced in place (``CREATE OR REPLACE`` keeps the grants; ``security_invoker`` given again,
as 0011 and 0012 set it). The downgrade gives audit_content 0011's definition and audit_tool_calls 0012's,
with 0012's helpers (the view and those reading it saved, dropped and created again with their options,
owners, grants and comments). SQLite: dropped and created.

The SQL is written out rather than shared with the application because a revision must keep doing what it
did when it shipped; the downgrade's is 0011's and 0012's own, loaded from their files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

_EVENTS = "llm_ledger_events"
_KEYS = "llm_ledger_content_keys"
_ERASURES = "llm_ledger_erasures"
_CONTENT_FIELDS = ("input", "output", "arguments", "result", "error_text")
"""The payload keys that hold a capture record (0011's four, and ``error_text``)."""
_TOOL_COLUMNS = ("error_text_digest", "error_text_digest_alg", "error_text_key_id")


def _revision(name: str) -> ModuleType:
    """An earlier revision's module (a revision's file is no importable module: its name starts with a
    digit)."""
    spec = importlib.util.spec_from_file_location(f"llm_ledger_revision_{name[:4]}", Path(__file__).with_name(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _content_view(on_postgresql: bool) -> str:
    """0011's ``audit_content`` over ``_CONTENT_FIELDS``: one row per encrypted text; ``erased`` when an
    erasure record names its key."""
    if on_postgresql:
        pairs = ", ".join(f"('{field}', e.payload -> '{field}')" for field in _CONTENT_FIELDS)
        places = f"""
            SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at,
                   p.field, p.rec
            FROM {_EVENTS} e
            CROSS JOIN LATERAL (VALUES {pairs}) AS p(field, rec)
            WHERE p.rec ? 'encrypted'
            UNION ALL
            SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at,
                   'tool_calls.' || (t.n - 1) || '.arguments', t.call -> 'arguments'
            FROM {_EVENTS} e
            CROSS JOIN LATERAL jsonb_array_elements(
                CASE WHEN jsonb_typeof(e.payload -> 'tool_calls') = 'array' THEN e.payload -> 'tool_calls'
                     ELSE '[]'::jsonb END) WITH ORDINALITY AS t(call, n)
            WHERE (t.call -> 'arguments') ? 'encrypted'
        """
        texts = f"""
            SELECT c.tenant_id, c.session_id, c.stream_id, c.event_id, c.event_type, c.occurred_at, c.field,
                   CAST(c.rec ->> 'chars' AS bigint) AS chars, CAST(c.rec ->> 'bytes' AS bigint) AS bytes,
                   COALESCE(c.rec ->> 'digest', c.rec ->> 'sha256') AS digest,
                   CASE WHEN c.rec ->> 'digest' IS NOT NULL THEN c.rec ->> 'digest_alg'
                        WHEN c.rec ->> 'sha256' IS NOT NULL THEN 'sha256' END AS digest_alg,
                   c.rec ->> 'key_id' AS digest_key_id, c.rec #>> '{{encrypted,key_id}}' AS key_id,
                   EXISTS (SELECT 1 FROM {_ERASURES} x
                           WHERE x.tenant_id = c.tenant_id AND x.key_ids ? (c.rec #>> '{{encrypted,key_id}}')) AS erased
            FROM ({places}) c
        """
        return _with_key_state(texts, "CAST(k.key_id AS text)")
    first, *others = _CONTENT_FIELDS
    fields = " UNION ALL ".join([f"SELECT '{first}' AS field", *(f"SELECT '{field}'" for field in others)])
    places = f"""
        SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at, f.field,
               json_extract(e.payload, '$.' || f.field) AS rec
        FROM {_EVENTS} e, ({fields}) f
        WHERE json_extract(e.payload, '$.' || f.field || '.encrypted.key_id') IS NOT NULL
        UNION ALL
        SELECT e.tenant_id, e.session_id, e.stream_id, e.event_id, e.event_type, e.occurred_at,
               'tool_calls.' || t.key || '.arguments', json_extract(t.value, '$.arguments')
        FROM {_EVENTS} e, json_each(e.payload, '$.tool_calls') t
        WHERE json_extract(t.value, '$.arguments.encrypted.key_id') IS NOT NULL
    """
    texts = f"""
        SELECT c.tenant_id, c.session_id, c.stream_id, c.event_id, c.event_type, c.occurred_at, c.field,
               json_extract(c.rec, '$.chars') AS chars, json_extract(c.rec, '$.bytes') AS bytes,
               COALESCE(json_extract(c.rec, '$.digest'), json_extract(c.rec, '$.sha256')) AS digest,
               CASE WHEN json_extract(c.rec, '$.digest') IS NOT NULL THEN json_extract(c.rec, '$.digest_alg')
                    WHEN json_extract(c.rec, '$.sha256') IS NOT NULL THEN 'sha256' END AS digest_alg,
               json_extract(c.rec, '$.key_id') AS digest_key_id, json_extract(c.rec, '$.encrypted.key_id') AS key_id,
               EXISTS (SELECT 1 FROM {_ERASURES} x, json_each(x.key_ids) j
                       WHERE x.tenant_id = c.tenant_id AND j.value = json_extract(c.rec, '$.encrypted.key_id'))
                   AS erased
        FROM ({places}) c
    """
    return _with_key_state(texts, "k.key_id")


def _with_key_state(texts: str, key_id: str) -> str:
    """As 0011's: ``texts`` and each one's ``key_state`` (``erased``, ``kept`` or ``missing``)."""
    return f"""
        SELECT t.*,
               CASE WHEN t.erased THEN 'erased'
                    WHEN EXISTS (SELECT 1 FROM {_KEYS} k WHERE k.tenant_id = t.tenant_id AND {key_id} = t.key_id)
                        THEN 'kept'
                    ELSE 'missing' END AS key_state
        FROM ({texts}) t
    """


def _tool_calls(revision_0012: ModuleType, dialect: str, *, with_error_text: bool) -> str:
    """0012's ``audit_tool_calls``, and with ``with_error_text`` this revision's columns after its own (the
    exception text's digest from a ``ToolCallFailed`` only: a success has none)."""
    d = revision_0012._Dialect(dialect)
    if not with_error_text:
        return str(revision_0012._tool_calls(d, with_digests=True))
    same_stream, digest_columns = revision_0012._same_stream, revision_0012._digest_columns
    first_terminal = (
        f"{same_stream('t', 's')} AND t.stream_position = (SELECT min(x.stream_position) FROM llm_ledger_events x"
        f" WHERE {same_stream('x', 's')} AND x.event_type IN ('ToolCallSucceeded', 'ToolCallFailed'))"
    )
    digests = (
        digest_columns(d, "s", "arguments", "arguments")
        + digest_columns(d, "t", "result", "result")
        + digest_columns(d, "t", "error_text", "error_text")
    )
    return f"""
        SELECT
            {revision_0012._context("s")},
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
            s.span_id{digests}
        FROM llm_ledger_events s
        LEFT JOIN llm_ledger_events t ON {first_terminal}
        WHERE s.event_type = 'ToolCallStarted'
    """


def _security_invoker(revision_0012: ModuleType) -> str:
    return " WITH (security_invoker = true)" if revision_0012._has_security_invoker() else ""


def _sqlite_views(content: str, tools: str) -> None:
    """SQLite has no ``CREATE OR REPLACE VIEW``: each view dropped and created."""
    for name, select in (("audit_content", content), ("audit_tool_calls", tools)):
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS {select}")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    revision_0012 = _revision("0012_keyed_digests.py")
    content = _content_view(dialect == "postgresql")
    tools = _tool_calls(revision_0012, dialect, with_error_text=True)
    if dialect != "postgresql":
        _sqlite_views(content, tools)
        return
    option = _security_invoker(revision_0012)
    # The same columns (audit_content) or columns added at the end (audit_tool_calls): replaced in place.
    op.execute(f"CREATE OR REPLACE VIEW audit_content{option} AS {content}")
    op.execute(f"CREATE OR REPLACE VIEW audit_tool_calls{option} AS {tools}")


def downgrade() -> None:
    # Views hold no data: the exception texts are in the events, as they were.
    dialect = op.get_context().dialect.name
    revision_0012 = _revision("0012_keyed_digests.py")
    content = _revision("0011_content_keys.py")._content_view(dialect == "postgresql")
    tools = _tool_calls(revision_0012, dialect, with_error_text=False)
    if dialect != "postgresql":
        _sqlite_views(content, tools)
        return
    op.execute(f"CREATE OR REPLACE VIEW audit_content{_security_invoker(revision_0012)} AS {content}")
    revision_0012._recreate_view("audit_tool_calls", tools, _TOOL_COLUMNS)
