"""Tool calls: the audit view audit_tool_calls, audit_incomplete over tool executions too, and the read
model llm_ledger_tool_stats (docs/AUDIT.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

A tool's execution is a stream of its own: ``ToolCallStarted`` (the tool, the ``tool_call_id`` and the
``execution_id`` that asked for it), then one terminal ``ToolCallSucceeded`` or ``ToolCallFailed``.

- ``audit_tool_calls``: one row per tool execution stream, its outcome ``succeeded``, ``failed`` or
  ``incomplete`` (no terminal event yet). ``execution_id`` is the asking execution's id, as
  ``audit_executions.execution_id`` holds it (text of the same form), so the two join on it.
- ``audit_incomplete`` is recreated to list incomplete tool executions as well as incomplete executions,
  with a ``kind`` column (``execution`` or ``tool_call``) after the columns it had; ``execution_id`` is the
  stream's id (for a tool execution, its own). ``audit_executions``, ``audit_attempts`` and
  ``audit_fallbacks`` start from execution events only and are unchanged.
- ``llm_ledger_tool_stats``: tools' executions that ended, per tenant, time bucket, agent, step, tool and
  outcome, with their count and latency (sum and histogram); ordinary table, emptied and refilled by a
  rebuild like 0002's. A projector may already have passed tool events while the database was at 0006
  (a downgrade of 0007 and this upgrade again, or writers upgraded before the database, whose events the
  projector of then skipped): if the checkpoint has applied events and the events hold an ended tool
  execution, the upgrade empties the read models and resets the checkpoint, so that the next
  ``llm-ledger project`` rebuilds them all (before: the new table stayed empty for good, the checkpoint
  being past those events). Offline (``--sql``) it cannot look, and does not.

Grants and row-level security as 0002 (read model) and 0004 (views): the views are ``security_invoker``
on PostgreSQL 15 and later, granted to ``llm_ledger_reader`` (its tenant's rows, by the events' policy)
and ``llm_ledger_auditor``; on an older server to the auditor only, with a NOTICE. The SQL is written out
rather than shared with the application because a revision must keep doing what it did when it shipped
(the downgrade restores 0004's ``audit_incomplete``, written out here too).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_READERS = ("llm_ledger_reader", "llm_ledger_auditor")
_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"
_TOOL_STATS = "llm_ledger_tool_stats"
_HISTOGRAM = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_EXECUTION_TERMINALS = "('ExecutionSucceeded', 'ExecutionFailed')"
_TOOL_TERMINALS = "('ToolCallSucceeded', 'ToolCallFailed')"
_TERMINALS = "('ExecutionSucceeded', 'ExecutionFailed', 'ToolCallSucceeded', 'ToolCallFailed')"


class _Dialect:
    """As 0004's: the few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, name: str) -> None:
        self.name = name

    def text(self, alias: str, key: str) -> str:
        if self.name == "postgresql":
            return f"({alias}.payload ->> '{key}')"
        return f"json_extract({alias}.payload, '$.{key}')"

    def number(self, alias: str, key: str) -> str:
        return f"CAST({self.text(alias, key)} AS double precision)"

    def seconds_since(self, column: str) -> str:
        if self.name == "postgresql":
            return f"CAST(extract(epoch FROM (now() - {column})) AS double precision)"
        return f"((julianday('now') - julianday({column})) * 86400.0)"

    def create_view(self, name: str, select: str, *, security_invoker: bool) -> str:
        option = " WITH (security_invoker = true)" if security_invoker else ""
        return f"CREATE VIEW {name}{option} AS {select}"


def _same_stream(alias: str, of: str) -> str:
    return f"{alias}.tenant_id = {of}.tenant_id AND {alias}.stream_id = {of}.stream_id"


def _count_in_stream(of: str, condition: str = "") -> str:
    where = f" AND {condition}" if condition else ""
    return f"(SELECT count(*) FROM llm_ledger_events n WHERE {_same_stream('n', of)}{where})"


def _context(alias: str) -> str:
    return f"{alias}.tenant_id, {alias}.agent_id, {alias}.session_id, {alias}.turn_id, {alias}.step"


def _tool_calls(d: _Dialect) -> str:
    # The first terminal event, if a broken stream holds two (``audit verify`` reports that): one row each.
    first_terminal = (
        f"{_same_stream('t', 's')} AND t.stream_position = (SELECT min(x.stream_position) FROM llm_ledger_events x"
        f" WHERE {_same_stream('x', 's')} AND x.event_type IN {_TOOL_TERMINALS})"
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
            s.span_id
        FROM llm_ledger_events s
        LEFT JOIN llm_ledger_events t ON {first_terminal}
        WHERE s.event_type = 'ToolCallStarted'
    """


def _incomplete(d: _Dialect, *, starts: str, terminals: str, kind: bool) -> str:
    last = "(SELECT max(l.stream_position) FROM llm_ledger_events l WHERE " + _same_stream("l", "s") + ")"
    kind_column = (
        ",\n            CASE s.event_type WHEN 'ToolCallStarted' THEN 'tool_call' ELSE 'execution' END AS kind"
        if kind
        else ""
    )
    return f"""
        SELECT
            s.stream_id AS execution_id,
            {_context("s")},
            s.occurred_at AS started_at,
            e.occurred_at AS last_event_at,
            e.event_type AS last_event_type,
            {_count_in_stream("s")} AS events,
            {_count_in_stream("s", "n.event_type = 'AttemptStarted'")} AS attempts,
            {d.seconds_since("s.occurred_at")} AS age_seconds,
            s.trace_id{kind_column}
        FROM llm_ledger_events s
        JOIN llm_ledger_events e ON {_same_stream("e", "s")} AND e.stream_position = {last}
        WHERE s.event_type IN {starts}
            AND NOT EXISTS (SELECT 1 FROM llm_ledger_events t WHERE {_same_stream("t", "s")}
                AND t.event_type IN {terminals})
    """


def _incomplete_streams(d: _Dialect) -> str:
    """Both kinds of stream: an execution ends at an execution's terminal event, a tool execution at a
    tool's (any terminal event ends either here; a stream holding the other kind's is broken, which
    ``audit verify`` reports)."""
    return _incomplete(d, starts="('ExecutionStarted', 'ToolCallStarted')", terminals=_TERMINALS, kind=True)


def _incomplete_as_0004(d: _Dialect) -> str:
    return _incomplete(d, starts="('ExecutionStarted')", terminals=_EXECUTION_TERMINALS, kind=False)


def _has_security_invoker() -> bool:
    version = op.get_context().dialect.server_version_info
    return version is None or version >= (15,)


def _create_views(d: _Dialect, views: dict[str, str]) -> None:
    if d.name != "postgresql":
        for name, select in views.items():
            op.execute(d.create_view(name, select, security_invoker=False))
        return
    invoker = _has_security_invoker()
    for name, select in views.items():
        op.execute(d.create_view(name, select, security_invoker=invoker))
        op.execute(f"REVOKE ALL ON TABLE {name} FROM PUBLIC")
        op.execute(f"GRANT SELECT ON TABLE {name} TO {', '.join(_READERS if invoker else _READERS[1:])}")
    if not invoker:
        op.execute(
            "DO $$ BEGIN RAISE NOTICE 'PostgreSQL before 15 has no security_invoker views: the audit views "
            "read as their owner, bypassing row-level security, and are granted to llm_ledger_auditor only'; END $$"
        )


def _tool_stats() -> None:
    op.create_table(
        _TOOL_STATS,
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("grain_seconds", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("tool_name", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False, server_default="0"),
        sa.Column("latency", _HISTOGRAM, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "grain_seconds",
            "bucket_start",
            "agent_id",
            "step",
            "tool_name",
            "outcome",
            name=op.f("pk_llm_ledger_tool_stats"),
        ),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    table = _TOOL_STATS
    op.execute(f"REVOKE ALL ON TABLE {table} FROM PUBLIC")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE {table} TO llm_ledger_projector")
    op.execute(f"GRANT SELECT ON TABLE {table} TO llm_ledger_reader, llm_ledger_auditor")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_tenant_select ON {table} FOR SELECT TO llm_ledger_reader USING (tenant_id = {_TENANT})"
    )
    op.execute(f"CREATE POLICY {table}_auditor_select ON {table} FOR SELECT TO llm_ledger_auditor USING (true)")
    op.execute(f"CREATE POLICY {table}_projector_all ON {table} TO llm_ledger_projector USING (true)")


_READ_MODELS_0002 = (
    "llm_ledger_step_stats",
    "llm_ledger_error_stats",
    "llm_ledger_fallback_stats",
    "llm_ledger_sessions",
    "llm_ledger_failed_attempts",
)
_CHECKPOINTS = "llm_ledger_projection_checkpoints"


def _projected_past_tool_events() -> bool:
    """Whether the projection checkpoint has applied events while the events hold an ended tool
    execution, which the new, empty tool read model would then never count."""
    bind = op.get_bind()
    applied = bind.execute(sa.text(f"SELECT coalesce(max(events_applied), 0) FROM {_CHECKPOINTS}")).scalar()
    if not applied:
        return False
    # Row-level security is FORCEd on the events: a superuser (or a BYPASSRLS role) sees every row, a
    # non-superuser owner none, unless the table is made NO FORCE for the check.
    unforced = (
        bind.dialect.name == "postgresql"
        and not bind.execute(
            sa.text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).scalar()
    )
    if unforced:
        # As 0001's downgrade: NO FORCE lets the owner see the rows for the check, and FORCE is restored
        # right after, in the same transaction (ALTER TABLE locks the table until the upgrade commits).
        op.execute("ALTER TABLE llm_ledger_events NO FORCE ROW LEVEL SECURITY")
    found = bind.execute(
        sa.text(f"SELECT EXISTS (SELECT 1 FROM llm_ledger_events WHERE event_type IN {_TOOL_TERMINALS})")
    ).scalar()
    if unforced:
        op.execute("ALTER TABLE llm_ledger_events FORCE ROW LEVEL SECURITY")
    return bool(found)


def _reset_projection() -> None:
    """What a rebuild does first (``ProjectionDatabase.empty``): the read models emptied, the checkpoint
    back at the start."""
    tables = (*_READ_MODELS_0002, _TOOL_STATS)
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"TRUNCATE {', '.join(tables)}")  # not subject to row-level security, unlike DELETE
    else:
        for table in tables:
            op.execute(f"DELETE FROM {table}")
    op.execute(f"UPDATE {_CHECKPOINTS} SET tx_id = 0, position = 0, events_applied = 0")


def upgrade() -> None:
    dialect = _Dialect(op.get_context().dialect.name)
    op.execute("DROP VIEW audit_incomplete")
    _create_views(dialect, {"audit_incomplete": _incomplete_streams(dialect), "audit_tool_calls": _tool_calls(dialect)})
    _tool_stats()
    if not context.is_offline_mode() and _projected_past_tool_events():
        _reset_projection()


def downgrade() -> None:
    # Views hold no data, and the read model is derived: a rebuild brings it back.
    dialect = _Dialect(op.get_context().dialect.name)
    op.drop_table(_TOOL_STATS)
    op.execute("DROP VIEW audit_tool_calls")
    op.execute("DROP VIEW audit_incomplete")
    _create_views(dialect, {"audit_incomplete": _incomplete_as_0004(dialect)})
