"""Views for auditors over the raw events: audit_executions, audit_attempts, audit_fallbacks,
audit_incomplete (docs/AUDIT.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

One view text per view, written once and rendered per dialect by ``_Dialect`` (PostgreSQL reads the
payload with ``->>`` / ``#>>`` on ``jsonb``, SQLite with ``json_extract``), so both dialects have the same
columns with the same meaning. Timestamps are ``timestamptz`` on PostgreSQL and SQLite's stored UTC text;
``chain`` is a JSON array (``jsonb``, or JSON text on SQLite); booleans are 1/0 on SQLite. The SQL is
written out here rather than shared with the application because a revision must keep doing what it did
when it shipped.

A stream's figures (its events, attempts, fallbacks, head hash, last attempt error) are correlated
subqueries on the stream's key ``(tenant_id, stream_id, stream_position)``, the unique index every stream
lookup already uses; a query that names a tenant and a time range starts from ``(tenant_id,
occurred_at)``. No index is added: the ingest path pays for every index, and these views are usable at
scale on the existing ones (figures below).

PostgreSQL:

- ``security_invoker = true`` (PostgreSQL 15 and later): the views read the events with the privileges
  and row-level security of whoever queries them, so ``llm_ledger_reader`` sees its tenant's rows and
  ``llm_ledger_auditor`` every tenant's. Without it a view reads as its owner (the migrating user, often
  a superuser, whom row-level security never applies to) and would show every tenant to anyone allowed
  to select from it.
- On an older server the views are created without that option and granted to ``llm_ledger_auditor``
  only (who sees every tenant anyway); a NOTICE says so. Offline (``alembic upgrade --sql``) the server is
  unknown and taken to be 15 or later, as the compose file's postgres:16 is.
- The roles come from 0001; they are created here too if missing (an administrator may have dropped
  them), as 0001 does.

Measured on PostgreSQL 15 (this machine), 1,001,742 events (204,000 executions, 5 tenants, 30 days,
1.2 GB with indexes), warm cache, ``EXPLAIN ANALYZE`` of ``SELECT *`` (every column computed):

- one tenant's and agent's executions of the last 7 days (4,873 rows): 180 ms, from the index on
  ``(tenant_id, occurred_at)`` and the per-stream lookups;
- the same tenant's attempts of the last 7 days (13,269 rows): 115 ms;
- one session's executions (59 rows): 3 ms; one execution by tenant and id: 0.4 ms;
- every execution of one tenant (42,000 rows, a fifth of the table): 2.5 s, a sequential scan;
- ``audit_incomplete`` over every tenant: 370-530 ms, a scan of the table for ``ExecutionStarted`` with
  an anti-join on the stream key. A partial index on ``ExecutionStarted`` would cut that and cost every
  append; not added;
- each ready query of docs/AUDIT.md for one tenant: 0.1 ms (one stream) to 2.1 s (its failed
  executions over all time); tenants at a glance, over every tenant's last week: 2.4 s.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_READERS = ("llm_ledger_reader", "llm_ledger_auditor")
_TERMINAL = "('ExecutionSucceeded', 'ExecutionFailed')"


class _Dialect:
    """The few expressions that differ between PostgreSQL and SQLite. (Not a dataclass: Alembic loads a
    revision without registering its module, which dataclasses need.)"""

    def __init__(self, name: str) -> None:
        self.name = name

    def text(self, alias: str, *path: str) -> str:
        """A payload field: text on PostgreSQL; on SQLite the JSON value's own SQL type (``integer`` and
        ``number`` cast both to the same type)."""
        if self.name == "postgresql":
            if len(path) == 1:
                return f"({alias}.payload ->> '{path[0]}')"
            return f"({alias}.payload #>> '{{{','.join(path)}}}')"
        return f"json_extract({alias}.payload, '$.{'.'.join(path)}')"

    def integer(self, alias: str, *path: str) -> str:
        return f"CAST({self.text(alias, *path)} AS bigint)"

    def number(self, alias: str, *path: str) -> str:
        # "double precision" has REAL affinity on SQLite.
        return f"CAST({self.text(alias, *path)} AS double precision)"

    def json(self, alias: str, key: str) -> str:
        """A payload field as JSON (``jsonb`` on PostgreSQL, JSON text on SQLite)."""
        if self.name == "postgresql":
            return f"({alias}.payload -> '{key}')"
        return f"json_extract({alias}.payload, '$.{key}')"

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


def _first_terminal(of: str) -> str:
    """The join condition picking a stream's terminal event, the first if a broken stream holds two
    (``llm-ledger audit verify`` reports that), so that an execution stays one row."""
    return (
        f"{_same_stream('t', of)} AND t.stream_position = (SELECT min(x.stream_position) FROM llm_ledger_events x"
        f" WHERE {_same_stream('x', of)} AND x.event_type IN {_TERMINAL})"
    )


def _outcome(terminal: str) -> str:
    return (
        f"CASE {terminal}.event_type WHEN 'ExecutionSucceeded' THEN 'succeeded'"
        f" WHEN 'ExecutionFailed' THEN 'failed' ELSE 'incomplete' END"
    )


def _executions(d: _Dialect) -> str:
    last_error = (
        f"(SELECT {d.text('f', 'error_type')} FROM llm_ledger_events f WHERE {_same_stream('f', 's')}"
        " AND f.event_type = 'AttemptFailed' ORDER BY f.stream_position DESC LIMIT 1)"
    )
    # A failed execution names its last model but not that model's provider: the last attempt does.
    last_provider = (
        f"(SELECT {d.text('p', 'provider')} FROM llm_ledger_events p WHERE {_same_stream('p', 's')}"
        " AND p.event_type = 'AttemptStarted' ORDER BY p.stream_position DESC LIMIT 1)"
    )
    head = (
        f"(SELECT h.hash FROM llm_ledger_events h WHERE {_same_stream('h', 's')}"
        " ORDER BY h.stream_position DESC LIMIT 1)"
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
            {_outcome("t")} AS outcome,
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
            {head} AS head_hash
        FROM llm_ledger_events s
        LEFT JOIN llm_ledger_events t ON {_first_terminal("s")}
        WHERE s.event_type = 'ExecutionStarted'
    """


def _attempts(d: _Dialect) -> str:
    outcome = (
        "CASE r.event_type WHEN 'AttemptSucceeded' THEN 'succeeded'"
        " WHEN 'AttemptFailed' THEN 'failed' ELSE 'incomplete' END"
    )
    return f"""
        SELECT
            a.stream_id AS execution_id,
            {_context("a")},
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
            a.span_id
        FROM llm_ledger_events a
        LEFT JOIN llm_ledger_events r ON {_same_stream("r", "a")}
            AND r.event_type IN ('AttemptSucceeded', 'AttemptFailed')
            AND {d.integer("r", "attempt")} = {d.integer("a", "attempt")}
        WHERE a.event_type = 'AttemptStarted'
    """


def _fallbacks(d: _Dialect) -> str:
    return f"""
        SELECT
            f.stream_id AS execution_id,
            {_context("f")},
            f.occurred_at,
            {d.text("f", "from_model")} AS from_model,
            {d.text("f", "to_model")} AS to_model,
            {d.integer("f", "from_index")} AS from_index,
            {d.integer("f", "to_index")} AS to_index,
            {d.text("f", "reason")} AS reason,
            {_outcome("t")} AS execution_outcome,
            COALESCE(t.event_type = 'ExecutionSucceeded', false) AS succeeded_after
        FROM llm_ledger_events f
        LEFT JOIN llm_ledger_events t ON {_first_terminal("f")}
        WHERE f.event_type = 'FallbackTriggered'
    """


def _incomplete(d: _Dialect) -> str:
    last = "(SELECT max(l.stream_position) FROM llm_ledger_events l WHERE " + _same_stream("l", "s") + ")"
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
            s.trace_id
        FROM llm_ledger_events s
        JOIN llm_ledger_events e ON {_same_stream("e", "s")} AND e.stream_position = {last}
        WHERE s.event_type = 'ExecutionStarted'
            AND NOT EXISTS (SELECT 1 FROM llm_ledger_events t WHERE {_same_stream("t", "s")}
                AND t.event_type IN {_TERMINAL})
    """


_SELECTS = {
    "audit_executions": _executions,
    "audit_attempts": _attempts,
    "audit_fallbacks": _fallbacks,
    "audit_incomplete": _incomplete,
}
VIEWS = tuple(_SELECTS)


def _ensure_roles() -> None:
    # As in 0001: another database's migration may create a role at the same moment (the loser gets
    # duplicate_object or unique_violation, which means the role is there).
    op.execute(
        """
        DO $$
        DECLARE
            name text;
        BEGIN
            FOREACH name IN ARRAY ARRAY['llm_ledger_reader', 'llm_ledger_auditor'] LOOP
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
                    BEGIN
                        EXECUTE format('CREATE ROLE %I NOLOGIN', name);
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN
                        NULL;
                    END;
                END IF;
            END LOOP;
        END
        $$
        """
    )


def _has_security_invoker() -> bool:
    version = op.get_context().dialect.server_version_info
    return version is None or version >= (15,)


def upgrade() -> None:
    dialect = _Dialect(op.get_context().dialect.name)
    if dialect.name != "postgresql":
        for name in VIEWS:
            op.execute(dialect.create_view(name, _SELECTS[name](dialect), security_invoker=False))
        return
    invoker = _has_security_invoker()
    _ensure_roles()
    for name in VIEWS:
        op.execute(dialect.create_view(name, _SELECTS[name](dialect), security_invoker=invoker))
        op.execute(f"REVOKE ALL ON TABLE {name} FROM PUBLIC")
        op.execute(f"GRANT SELECT ON TABLE {name} TO {', '.join(_READERS if invoker else _READERS[1:])}")
    if not invoker:
        op.execute(
            "DO $$ BEGIN RAISE NOTICE 'PostgreSQL before 15 has no security_invoker views: the audit views "
            "read as their owner, bypassing row-level security, and are granted to llm_ledger_auditor only'; END $$"
        )


def downgrade() -> None:
    # Views hold no data: dropping them loses nothing.
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
