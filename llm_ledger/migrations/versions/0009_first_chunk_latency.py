"""Time to first chunk in the read model llm_ledger_step_stats, and costs from the genai-prices catalogue.

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

The SQL is written out rather than shared with the application because a revision must keep doing what it
did when it shipped.
"""

from __future__ import annotations

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
    if not context.is_offline_mode() and _projected_past_attempts():
        _reset_projection()


def downgrade() -> None:
    # The read model is derived: 0008's costs come back with a rebuild.
    with op.batch_alter_table(_STEP_STATS) as table:
        table.drop_column("first_chunk_latency")
        table.drop_column("first_chunk_ms_sum")
