"""The read models: ordinary tables derived from the events, emptied and refilled by a rebuild.

Figures live in time buckets at three grains (``grain_seconds`` 60, 3,600, 86,400; ``bucket_start`` in
UTC), keyed by tenant, agent, step, model and provider. Which model a figure is counted under:

- execution figures (``executions``, ``succeeded``, ``failed``, ``fallback_executions``, execution latency)
  under the model that answered, or for a failed execution the last model tried, in the bucket of the
  terminal event;
- attempt figures (``attempts``, ``attempt_failures``, tokens, cost, attempt latency) under the attempted
  model, in the bucket of the attempt's outcome; the time to the first chunk (``first_chunk_latency``, its
  count the streamed attempts that answered, and ``first_chunk_ms_sum``) likewise, of the streamed attempts
  that succeeded (the ``time_to_first_chunk_ms`` of ``AttemptSucceeded``);
- fallback edges in the bucket of the ``FallbackTriggered`` event; ``succeeded_after`` counts those whose
  execution then succeeded;
- tool executions (``llm_ledger_tool_stats``, their own streams, never counted as executions) per tool and
  outcome in the bucket of their terminal event.

A missing agent or step is stored as ``''`` (primary keys cannot hold NULL). Latency histograms are JSON
objects ``{"<bucket>": count}`` (see ``histogram``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from llm_ledger.store.schema import metadata

_Histogram = JSON().with_variant(JSONB(), "postgresql")


def _counter(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False, server_default="0")


def _bucket_key() -> list[Column[object]]:
    return [
        Column("tenant_id", Text, nullable=False),
        Column("grain_seconds", Integer, nullable=False),
        Column("bucket_start", DateTime(timezone=True), nullable=False),
        Column("agent_id", Text, nullable=False),
        Column("step", Text, nullable=False),
    ]


step_stats = Table(
    "llm_ledger_step_stats",
    metadata,
    *_bucket_key(),
    Column("model", Text, nullable=False),
    Column("provider", Text, nullable=False),
    _counter("executions"),
    _counter("succeeded"),
    _counter("failed"),
    _counter("fallback_executions"),
    _counter("attempts"),
    _counter("attempt_failures"),
    _counter("input_tokens"),
    _counter("output_tokens"),
    Column("cost_usd", Float),
    Column("execution_latency_ms_sum", Float, nullable=False, server_default="0"),
    Column("execution_latency", _Histogram, nullable=False),
    Column("attempt_latency_ms_sum", Float, nullable=False, server_default="0"),
    Column("attempt_latency", _Histogram, nullable=False),
    Column("first_chunk_ms_sum", Float, nullable=False, server_default="0"),
    Column("first_chunk_latency", _Histogram, nullable=False, server_default="{}"),
    PrimaryKeyConstraint("tenant_id", "grain_seconds", "bucket_start", "agent_id", "step", "model", "provider"),
)

error_stats = Table(
    "llm_ledger_error_stats",
    metadata,
    *_bucket_key(),
    Column("model", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("scope", Text, nullable=False),  # 'attempt' or 'execution'
    Column("error_type", Text, nullable=False),
    _counter("count"),
    PrimaryKeyConstraint(
        "tenant_id", "grain_seconds", "bucket_start", "agent_id", "step", "model", "provider", "scope", "error_type"
    ),
)

fallback_stats = Table(
    "llm_ledger_fallback_stats",
    metadata,
    *_bucket_key(),
    Column("from_model", Text, nullable=False),
    Column("to_model", Text, nullable=False),
    Column("reason", Text, nullable=False),
    _counter("fallbacks"),
    _counter("succeeded_after"),
    PrimaryKeyConstraint(
        "tenant_id", "grain_seconds", "bucket_start", "agent_id", "step", "from_model", "to_model", "reason"
    ),
)

sessions = Table(
    "llm_ledger_sessions",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    _counter("executions"),
    _counter("succeeded"),
    _counter("failed"),
    _counter("fallback_executions"),
    _counter("attempts"),
    _counter("attempt_failures"),
    PrimaryKeyConstraint("tenant_id", "session_id"),
    Index(None, "tenant_id", "last_seen"),
)

failed_attempts = Table(
    "llm_ledger_failed_attempts",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("stream_id", Text, nullable=False),
    Column("session_id", Text),
    Column("agent_id", Text, nullable=False),
    Column("step", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("error_type", Text, nullable=False),
    Column("status_code", Integer),
    Column("message", Text, nullable=False),
    Column("next_action", Text, nullable=False),
    Column("trace_id", Text),
    PrimaryKeyConstraint("tenant_id", "event_id"),
    Index(None, "tenant_id", "occurred_at"),
)

fallbacks = Table(
    "llm_ledger_fallbacks",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("stream_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("session_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("step", Text, nullable=False),
    Column("from_model", Text, nullable=False),
    Column("to_model", Text, nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "stream_id", "event_id"),
    # Named: the convention's name (the columns') is longer than PostgreSQL's 63 characters. The agent, step
    # and session after the time let a filtered lookup skip the rows of other agents and steps in the index.
    Index(
        "ix_llm_ledger_fallbacks_edge_time",
        "tenant_id",
        "from_model",
        "to_model",
        "reason",
        "occurred_at",
        "agent_id",
        "step",
        "session_id",
    ),
)
"""Every ``FallbackTriggered`` of a session, a row each: what the fallback edges' counts
(``llm_ledger_fallback_stats``) cannot say, the session each fallback happened in (a fallback without a
session has nowhere to link to, and is not kept here). The index answers "the latest fallback of this edge
in this window" by reading it backwards from the window's end: one entry without a filter, the entries of
other agents and steps skipped in the index with one. Keyed as the events are, by tenant, stream and
event id (two streams may hold one event id)."""

tool_stats = Table(
    "llm_ledger_tool_stats",
    metadata,
    *_bucket_key(),
    Column("tool_name", Text, nullable=False),
    Column("outcome", Text, nullable=False),  # 'succeeded' or 'failed'
    _counter("calls"),
    Column("latency_ms_sum", Float, nullable=False, server_default="0"),
    Column("latency", _Histogram, nullable=False),
    PrimaryKeyConstraint("tenant_id", "grain_seconds", "bucket_start", "agent_id", "step", "tool_name", "outcome"),
)
"""Tools' executions that ended (``ToolCallSucceeded`` / ``ToolCallFailed``), in the bucket of that event,
under the agent and step of their context."""

checkpoints = Table(
    "llm_ledger_projection_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("tx_id", BigInteger, nullable=False, server_default="0"),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Column("events_applied", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True)),
)

READ_MODELS = (step_stats, error_stats, fallback_stats, sessions, failed_attempts, tool_stats, fallbacks)
"""The tenant-keyed tables a rebuild empties (the checkpoint is reset, not emptied)."""
