"""Time to first chunk in the read model llm_ledger_step_stats and in the audit view audit_attempts, with
the attempts' cached and reasoning tokens and reported cost; costs from the genai-prices catalogue.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

- ``llm_ledger_step_stats`` gains ``first_chunk_ms_sum`` and ``first_chunk_latency``: the time to the first
  chunk (``time_to_first_chunk_ms`` of ``AttemptSucceeded``) of the streamed attempts that answered, per
  tenant, time bucket, agent, step and model, as a sum and a histogram in the form of the latency ones
  (``{"<bucket>": count}``, merged by 0002's ``llm_ledger_hist_merge``). Columns of a table that already
  has its grants and row-level security (0002, 0006): the roles that read or write the table read or write
  them, under the same policies.
- The projected ``cost_usd`` now comes from the provider's reported cost, else the operator's price table,
  else the ``genai-prices`` catalogue, where it came from the price table alone. A projector that has
  already applied attempts counted neither their time to first chunk nor their catalogue cost: if the
  checkpoint has applied events and the events hold an ``AttemptSucceeded``, the upgrade empties the read
  models and resets the checkpoint, so that the next ``llm-ledger project`` rebuilds them (as 0007 does for
  tool events). Offline (``--sql``) it cannot look, and does not.
- ``audit_attempts`` gains, after the columns it had, ``time_to_first_chunk_ms`` (streamed attempts that
  answered), ``cached_tokens``, ``reasoning_tokens`` and ``reported_cost_usd`` (the provider's own bill, when
  it reported one: OpenRouter's ``usage.cost``). Replaced in place on PostgreSQL (``CREATE OR REPLACE``
  keeps its grants; its ``security_invoker`` option is given again, as 0004 set it). The downgrade restores
  0004's columns on PostgreSQL with 0008's helpers: the view and the views reading it are saved, dropped and
  created again with their options, owners, grants (column grants too) and comments.

The SQL is written out rather than shared with the application because a revision must keep doing what it
did when it shipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_STEP_STATS = "llm_ledger_step_stats"
_HISTOGRAM = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_READ_MODELS_0007 = (
    "llm_ledger_step_stats",
    "llm_ledger_error_stats",
    "llm_ledger_fallback_stats",
    "llm_ledger_sessions",
    "llm_ledger_failed_attempts",
    "llm_ledger_tool_stats",
)
_CHECKPOINTS = "llm_ledger_projection_checkpoints"
_COLUMNS_0009 = ("time_to_first_chunk_ms", "cached_tokens", "reasoning_tokens", "reported_cost_usd")


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


def _attempts(d: _Dialect, *, with_0009_columns: bool) -> str:
    """0004's ``audit_attempts``, and with ``with_0009_columns`` this revision's columns after its own."""
    outcome = (
        "CASE r.event_type WHEN 'AttemptSucceeded' THEN 'succeeded'"
        " WHEN 'AttemptFailed' THEN 'failed' ELSE 'incomplete' END"
    )
    added = (
        f""",
            {d.number("r", "time_to_first_chunk_ms")} AS time_to_first_chunk_ms,
            {d.integer("r", "usage", "cached_tokens")} AS cached_tokens,
            {d.integer("r", "usage", "reasoning_tokens")} AS reasoning_tokens,
            {d.number("r", "usage", "cost_usd")} AS reported_cost_usd"""
        if with_0009_columns
        else ""
    )
    return f"""
        SELECT
            a.stream_id AS execution_id,
            a.tenant_id, a.agent_id, a.session_id, a.turn_id, a.step,
            {d.integer("a", "attempt")} AS attempt,
            {d.text("a", "model")} AS model,
            {d.text("a", "provider")} AS provider,
            {d.integer("a", "retry")} AS retry,
            {d.integer("a", "fallback_index")} AS fallback_index,
            a.occurred_at AS started_at,
            r.occurred_at AS ended_at,
            {outcome} AS outcome,
            {d.text("r", "error_type")} AS error_type,
            {d.text("r", "message")} AS error_message,
            {d.integer("r", "status_code")} AS status_code,
            {d.number("r", "retry_after_seconds")} AS retry_after_seconds,
            {d.text("r", "next_action")} AS next_action,
            {d.number("r", "latency_ms")} AS latency_ms,
            {d.integer("r", "usage", "prompt_tokens")} AS prompt_tokens,
            {d.integer("r", "usage", "completion_tokens")} AS completion_tokens,
            {d.integer("r", "usage", "total_tokens")} AS total_tokens,
            {d.text("r", "finish_reason")} AS finish_reason,
            {d.text("r", "request_id")} AS request_id,
            {d.text("r", "response_model")} AS response_model,
            a.trace_id,
            a.span_id{added}
        FROM llm_ledger_events a
        LEFT JOIN llm_ledger_events r ON r.tenant_id = a.tenant_id AND r.stream_id = a.stream_id
            AND r.event_type IN ('AttemptSucceeded', 'AttemptFailed')
            AND {d.integer("r", "attempt")} = {d.integer("a", "attempt")}
        WHERE a.event_type = 'AttemptStarted'
    """


def _has_security_invoker() -> bool:
    version = op.get_context().dialect.server_version_info
    return version is None or version >= (15,)


def _replace_attempts_view(*, with_0009_columns: bool) -> None:
    d = _Dialect(op.get_context().dialect.name)
    select = _attempts(d, with_0009_columns=with_0009_columns)
    if d.name != "postgresql":
        op.execute("DROP VIEW audit_attempts")
        op.execute(f"CREATE VIEW audit_attempts AS {select}")
        return
    invoker = _has_security_invoker()
    option = " WITH (security_invoker = true)" if invoker else ""
    if with_0009_columns:  # columns added at the end: replaced in place, its grants kept
        op.execute(f"CREATE OR REPLACE VIEW audit_attempts{option} AS {select}")
        return
    _recreate_attempts_view(select)


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


def _recreate_attempts_view(select: str) -> None:
    """Columns removed: only a new view can lose them, and a view reading it must go first. Saved in 0008's
    temporary tables (audit_attempts at depth 0, each view reading it deeper), with audit_attempts' new
    definition and without the dropped columns' grants and comments, then dropped and created again."""
    revision_0008 = _revision_0008()
    views: str = revision_0008._VIEWS_TABLE
    # Left over from 0008's upgrade when both run in one transaction (dropped only at its commit).
    op.execute(f"DROP TABLE IF EXISTS {views}_columns, {views}")
    op.execute(f"""
        CREATE TEMP TABLE {views} ON COMMIT DROP AS
        WITH RECURSIVE dependent(oid, depth) AS (
            SELECT 'audit_attempts'::regclass::oid, 0
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
                RAISE EXCEPTION 'a materialized view reads audit_attempts: drop it, downgrade, recreate it';
            END IF;
        END
        $$
    """)
    op.execute(revision_0008._SAVE_VIEW_COLUMNS)
    op.execute(
        f"UPDATE {views} SET definition = $llm_ledger_0009${select}$llm_ledger_0009$"
        " WHERE oid = 'audit_attempts'::regclass"
    )
    removed = ", ".join(f"'{column}'" for column in _COLUMNS_0009)
    op.execute(f"DELETE FROM {views}_columns WHERE oid = 'audit_attempts'::regclass AND attname IN ({removed})")
    op.execute(revision_0008._DROP_VIEWS)
    op.execute(revision_0008._RESTORE_VIEWS)
    op.execute(f"DROP TABLE {views}_columns, {views}")  # 0008's downgrade, in the same transaction, makes them anew


def _projected_past_attempts() -> bool:
    """Whether the projection checkpoint has applied events while the events hold an answered attempt,
    whose time to first chunk and catalogue cost the stored rows then lack."""
    bind = op.get_bind()
    applied = bind.execute(sa.text(f"SELECT coalesce(max(events_applied), 0) FROM {_CHECKPOINTS}")).scalar()
    if not applied:
        return False
    # As 0007's check: row-level security is FORCEd on the events, so a non-superuser owner sees no row
    # unless the table is made NO FORCE for the check, and FORCE is restored in the same transaction.
    unforced = (
        bind.dialect.name == "postgresql"
        and not bind.execute(
            sa.text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).scalar()
    )
    if unforced:
        op.execute("ALTER TABLE llm_ledger_events NO FORCE ROW LEVEL SECURITY")
    found = bind.execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM llm_ledger_events WHERE event_type = 'AttemptSucceeded')")
    ).scalar()
    if unforced:
        op.execute("ALTER TABLE llm_ledger_events FORCE ROW LEVEL SECURITY")
    return bool(found)


def _reset_projection() -> None:
    """What a rebuild does first (``ProjectionDatabase.empty``): the read models emptied, the checkpoint
    back at the start."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"TRUNCATE {', '.join(_READ_MODELS_0007)}")  # not subject to row-level security, unlike DELETE
    else:
        for table in _READ_MODELS_0007:
            op.execute(f"DELETE FROM {table}")
    op.execute(f"UPDATE {_CHECKPOINTS} SET tx_id = 0, position = 0, events_applied = 0")


def upgrade() -> None:
    with op.batch_alter_table(_STEP_STATS) as table:
        table.add_column(sa.Column("first_chunk_ms_sum", sa.Float(), nullable=False, server_default="0"))
        table.add_column(sa.Column("first_chunk_latency", _HISTOGRAM, nullable=False, server_default="{}"))
    _replace_attempts_view(with_0009_columns=True)
    if not context.is_offline_mode() and _projected_past_attempts():
        _reset_projection()


def downgrade() -> None:
    # The read model is derived: 0008's costs come back with a rebuild; views hold no data.
    _replace_attempts_view(with_0009_columns=False)
    with op.batch_alter_table(_STEP_STATS) as table:
        table.drop_column("first_chunk_latency")
        table.drop_column("first_chunk_ms_sum")
