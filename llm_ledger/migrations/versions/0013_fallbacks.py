"""The read model llm_ledger_fallbacks: every fallback of a session with that session, so that the
dashboard finds the latest session of a fallback chain by one index lookup.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

- ``llm_ledger_fallbacks``: one row per ``FallbackTriggered`` event of a session (tenant, stream and event
  id, its key as the events'; time, session, agent and step as the rollups store them, ``''`` for none; the
  models it fell back from and to, and the reason), indexed by tenant, edge (from, to, reason), time, agent,
  step and session. A fallback without a session has no session to link to and is not kept. An ordinary
  read model like 0002's: emptied and refilled by a rebuild, written by ``llm_ledger_projector``, read by
  ``llm_ledger_reader`` (its tenant's rows) and ``llm_ledger_auditor``, row-level security as 0007's
  ``llm_ledger_tool_stats``.
- The upgrade fills it from the fallbacks already stored, before the table's row-level security is turned
  on (the migrating login holds none of the roles its policies name), reading the events as 0011's owner
  policy lets the owner: a row is keyed by its event and the projector inserts with ``ON CONFLICT DO
  NOTHING``, so the events past the checkpoint, folded later, add nothing twice. No rebuild of the other read
  models is needed (0007 and 0009 reset the checkpoint because their figures are sums, which a second fold
  would double). One pass over the events (no index leads with the event type: 12 s for 10M events).
- A projector of the release before, still following when the upgrade commits, folds the fallbacks stored
  after it into the counts but not into this table (it does not know it): stop the projectors, and the
  dashboards that catch up, for the upgrade, and start them again on this release (as for 0009).

The SQL is written out rather than shared with the application because a revision must keep doing what it
did when it shipped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

_FALLBACKS = "llm_ledger_fallbacks"
_TENANT = "NULLIF(current_setting('llm_ledger.tenant_id', true), '')"


def _text(dialect: str, key: str) -> str:
    if dialect == "postgresql":
        return f"(payload ->> '{key}')"
    return f"json_extract(payload, '$.{key}')"


def _create_table() -> None:
    op.create_table(
        _FALLBACKS,
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("from_model", sa.Text(), nullable=False),
        sa.Column("to_model", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "stream_id", "event_id", name=op.f("pk_llm_ledger_fallbacks")),
    )
    op.create_index(
        op.f("ix_llm_ledger_fallbacks_edge_time"),
        _FALLBACKS,
        ["tenant_id", "from_model", "to_model", "reason", "occurred_at", "agent_id", "step", "session_id"],
    )


def _secure() -> None:
    table = _FALLBACKS
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


def _fill(dialect: str) -> None:
    op.execute(
        f"INSERT INTO {_FALLBACKS} (tenant_id, stream_id, event_id, occurred_at, session_id, agent_id, step,"
        " from_model, to_model, reason)"
        " SELECT tenant_id, stream_id, event_id, occurred_at, session_id, coalesce(agent_id, ''), coalesce(step, ''),"
        f" {_text(dialect, 'from_model')}, {_text(dialect, 'to_model')}, {_text(dialect, 'reason')}"
        " FROM llm_ledger_events WHERE event_type = 'FallbackTriggered' AND session_id IS NOT NULL"
    )


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    _create_table()
    _fill(dialect)
    if dialect == "postgresql":
        _secure()


def downgrade() -> None:
    # A read model holds nothing the events do not: dropped, and filled again by the next upgrade.
    op.drop_table(_FALLBACKS)
