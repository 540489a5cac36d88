"""The figures of the read models, computed again by SQL over the raw events (``llm_ledger_events``),
independently of the projector's code; and the read models themselves, read into the same shape.

Definitions (``llm_ledger/projections/schema.py``): execution figures count under the model that
answered (or, for a failed execution, the last model tried) in the bucket of the terminal event; attempt
figures under the attempted model in the bucket of the attempt's outcome; fallback edges in the bucket of
the ``FallbackTriggered`` event; tools' executions (streams of their own, never executions) per tool and
outcome in the bucket of their terminal event. An execution "fell back" when its stream holds a ``FallbackTriggered``.
Buckets are compared as whole seconds since the epoch; a missing agent or step reads as ``''``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, text

from llm_ledger.executor import PROVIDERS
from llm_ledger.projections import histogram

MOCKED = frozenset(PROVIDERS) - {"mock"}
"""The providers a ``mock/<provider>-...`` model is counted under: the executor's, not the projections' list."""


@dataclass(frozen=True, slots=True)
class _Sql:
    """The few expressions that differ between PostgreSQL and SQLite."""

    dialect: str

    def text(self, *path: str) -> str:
        if self.dialect == "postgresql":
            return f"(payload #>> '{{{','.join(path)}}}')"
        return f"json_extract(payload, '$.{'.'.join(path)}')"

    def number(self, *path: str) -> str:
        if self.dialect == "postgresql":
            return f"CAST(payload #>> '{{{','.join(path)}}}' AS double precision)"
        return f"CAST(json_extract(payload, '$.{'.'.join(path)}') AS REAL)"

    def integer(self, *path: str) -> str:
        return f"COALESCE(CAST({self.text(*path)} AS bigint), 0)"

    def epoch(self, column: str, grain: int = 1) -> str:
        """The start of the ``grain``-second bucket holding ``column``, in seconds since the epoch."""
        if self.dialect == "postgresql":
            return f"CAST(floor(extract(epoch FROM {column}) / {grain}) * {grain} AS bigint)"
        return f"((CAST(strftime('%s', {column}) AS integer) / {grain}) * {grain})"

    def provider(self, model: str) -> str:
        """The model string's prefix, or the provider a ``mock/<provider>-...`` model is named after."""
        mocks = " ".join(f"WHEN {model} LIKE 'mock/{name}-%' THEN '{name}'" for name in sorted(MOCKED))
        if self.dialect == "postgresql":
            return f"CASE {mocks} ELSE split_part({model}, '/', 1) END"
        prefix = f"CASE WHEN instr({model}, '/') > 0 THEN substr({model}, 1, instr({model}, '/') - 1) ELSE {model} END"
        return f"CASE {mocks} ELSE {prefix} END"


STEP_COUNTERS = (
    "executions",
    "succeeded",
    "failed",
    "fallback_executions",
    "attempts",
    "attempt_failures",
    "input_tokens",
    "output_tokens",
)
STEP_SUMS = ("execution_latency_ms_sum", "attempt_latency_ms_sum")


def moment(value: datetime | str) -> datetime:
    """A timestamp as either driver returns it from a text query (SQLite: a string), in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def nearest_rank(values: Sequence[float], q: float) -> float:
    """``percentile_disc(q)``: the smallest value with at least ``q * n`` values at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class _TenantsQuery:
    """SQL text run over the rows of ``tenants`` (bound as the expanding parameter ``:tenants``)."""

    def __init__(self, engine: Engine, tenants: Sequence[str]) -> None:
        self.engine = engine
        self.tenants = list(tenants)
        self.sql = _Sql(engine.dialect.name)

    def _rows(self, statement: str, **params: Any) -> list[Any]:
        query = text(statement).bindparams(bindparam("tenants", expanding=True))
        with self.engine.connect() as connection:
            return list(connection.execute(query, {"tenants": self.tenants, **params}))


class Truth(_TenantsQuery):
    """Ground truth over the events of ``tenants``."""

    def _fell_back(self) -> str:
        return "SELECT DISTINCT tenant_id, stream_id FROM llm_ledger_events WHERE event_type = 'FallbackTriggered'"

    # --- llm_ledger_step_stats --------------------------------------------------------------------------

    def step_stats(self, grain: int) -> dict[tuple[Any, ...], dict[str, float]]:
        s = self.sql
        bucket = s.epoch("e.occurred_at", grain)
        statement = f"""
            WITH fell_back AS ({self._fell_back()}),
            contributions AS (
                SELECT e.tenant_id, {bucket} AS bucket, COALESCE(e.agent_id, '') AS agent,
                       COALESCE(e.step, '') AS step, {s.text("model")} AS model,
                       0 AS executions, 0 AS succeeded, 0 AS failed, 0 AS fallback_executions,
                       1 AS attempts, CASE WHEN e.event_type = 'AttemptFailed' THEN 1 ELSE 0 END AS attempt_failures,
                       {s.integer("usage", "prompt_tokens")} AS input_tokens,
                       {s.integer("usage", "completion_tokens")} AS output_tokens,
                       0.0 AS execution_latency, {s.number("latency_ms")} AS attempt_latency
                FROM llm_ledger_events e
                WHERE e.event_type IN ('AttemptSucceeded', 'AttemptFailed') AND e.tenant_id IN :tenants
                UNION ALL
                SELECT e.tenant_id, {bucket}, COALESCE(e.agent_id, ''), COALESCE(e.step, ''),
                       CASE WHEN e.event_type = 'ExecutionSucceeded' THEN {s.text("model")}
                            ELSE COALESCE({s.text("last_model")}, '') END,
                       1, CASE WHEN e.event_type = 'ExecutionSucceeded' THEN 1 ELSE 0 END,
                       CASE WHEN e.event_type = 'ExecutionFailed' THEN 1 ELSE 0 END,
                       CASE WHEN f.stream_id IS NULL THEN 0 ELSE 1 END,
                       0, 0, 0, 0, {s.number("latency_ms")}, 0.0
                FROM llm_ledger_events e
                LEFT JOIN fell_back f ON f.tenant_id = e.tenant_id AND f.stream_id = e.stream_id
                WHERE e.event_type IN ('ExecutionSucceeded', 'ExecutionFailed') AND e.tenant_id IN :tenants
            )
            SELECT tenant_id, bucket, agent, step, model, {s.provider("model")} AS provider,
                   {", ".join(f"SUM({name}) AS {name}" for name in STEP_COUNTERS)},
                   SUM(execution_latency) AS execution_latency_ms_sum, SUM(attempt_latency) AS attempt_latency_ms_sum
            FROM contributions
            GROUP BY tenant_id, bucket, agent, step, model
        """
        return {
            (r.tenant_id, int(r.bucket), r.agent, r.step, r.model, r.provider): {
                **{name: int(getattr(r, name)) for name in STEP_COUNTERS},
                **{name: float(getattr(r, name)) for name in STEP_SUMS},
            }
            for r in self._rows(statement)
        }

    # --- llm_ledger_error_stats -------------------------------------------------------------------------

    def error_stats(self, grain: int) -> dict[tuple[Any, ...], int]:
        s = self.sql
        bucket = s.epoch("occurred_at", grain)
        statement = f"""
            SELECT tenant_id, bucket, agent, step, model, {s.provider("model")} AS provider, scope, error_type,
                   COUNT(*) AS n
            FROM (
                SELECT tenant_id, {bucket} AS bucket, COALESCE(agent_id, '') AS agent, COALESCE(step, '') AS step,
                       {s.text("model")} AS model, 'attempt' AS scope, {s.text("error_type")} AS error_type
                FROM llm_ledger_events WHERE event_type = 'AttemptFailed' AND tenant_id IN :tenants
                UNION ALL
                SELECT tenant_id, {bucket}, COALESCE(agent_id, ''), COALESCE(step, ''),
                       COALESCE({s.text("last_model")}, ''), 'execution', {s.text("error_type")}
                FROM llm_ledger_events WHERE event_type = 'ExecutionFailed' AND tenant_id IN :tenants
            ) AS failures
            GROUP BY tenant_id, bucket, agent, step, model, scope, error_type
        """
        return {tuple(r[:8]): int(r.n) for r in self._rows(statement)}

    # --- llm_ledger_fallback_stats ----------------------------------------------------------------------

    def fallback_stats(self, grain: int) -> dict[tuple[Any, ...], tuple[int, int]]:
        s = self.sql
        statement = f"""
            SELECT e.tenant_id, {s.epoch("e.occurred_at", grain)} AS bucket, COALESCE(e.agent_id, '') AS agent,
                   COALESCE(e.step, '') AS step, {s.text("from_model")} AS from_model,
                   {s.text("to_model")} AS to_model, {s.text("reason")} AS reason,
                   COUNT(*) AS fallbacks, SUM(CASE WHEN ok.stream_id IS NULL THEN 0 ELSE 1 END) AS succeeded_after
            FROM llm_ledger_events e
            LEFT JOIN (
                SELECT DISTINCT tenant_id, stream_id FROM llm_ledger_events WHERE event_type = 'ExecutionSucceeded'
            ) AS ok ON ok.tenant_id = e.tenant_id AND ok.stream_id = e.stream_id
            WHERE e.event_type = 'FallbackTriggered' AND e.tenant_id IN :tenants
            GROUP BY 1, 2, 3, 4, 5, 6, 7
        """
        return {tuple(r[:7]): (int(r.fallbacks), int(r.succeeded_after)) for r in self._rows(statement)}

    # --- llm_ledger_tool_stats -----------------------------------------------------------------------------

    def tool_stats(self, grain: int) -> dict[tuple[Any, ...], tuple[int, float]]:
        """Tools' executions that ended, per bucket of the terminal event, agent, step, tool and outcome."""
        s = self.sql
        statement = f"""
            SELECT tenant_id, {s.epoch("occurred_at", grain)} AS bucket, COALESCE(agent_id, '') AS agent,
                   COALESCE(step, '') AS step, {s.text("tool_name")} AS tool_name,
                   CASE event_type WHEN 'ToolCallSucceeded' THEN 'succeeded' ELSE 'failed' END AS outcome,
                   COUNT(*) AS calls, SUM({s.number("latency_ms")}) AS latency_ms_sum
            FROM llm_ledger_events
            WHERE event_type IN ('ToolCallSucceeded', 'ToolCallFailed') AND tenant_id IN :tenants
            GROUP BY 1, 2, 3, 4, 5, 6
        """
        return {(r[0], int(r[1]), *r[2:6]): (int(r.calls), float(r.latency_ms_sum)) for r in self._rows(statement)}

    # --- llm_ledger_sessions ------------------------------------------------------------------------------

    def sessions(self) -> dict[tuple[str, str], dict[str, Any]]:
        statement = f"""
            WITH fell_back AS ({self._fell_back()})
            SELECT e.tenant_id, e.session_id, MIN(COALESCE(e.agent_id, '')) AS agent_id,
                   MAX(COALESCE(e.agent_id, '')) AS last_agent_id,
                   MIN(e.occurred_at) AS first_seen, MAX(e.occurred_at) AS last_seen,
                   SUM(CASE WHEN e.event_type IN ('ExecutionSucceeded', 'ExecutionFailed') THEN 1 ELSE 0 END)
                       AS executions,
                   SUM(CASE WHEN e.event_type = 'ExecutionSucceeded' THEN 1 ELSE 0 END) AS succeeded,
                   SUM(CASE WHEN e.event_type = 'ExecutionFailed' THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN e.event_type IN ('ExecutionSucceeded', 'ExecutionFailed')
                             AND f.stream_id IS NOT NULL THEN 1 ELSE 0 END) AS fallback_executions,
                   SUM(CASE WHEN e.event_type IN ('AttemptSucceeded', 'AttemptFailed') THEN 1 ELSE 0 END)
                       AS attempts,
                   SUM(CASE WHEN e.event_type = 'AttemptFailed' THEN 1 ELSE 0 END) AS attempt_failures
            FROM llm_ledger_events e
            LEFT JOIN fell_back f ON f.tenant_id = e.tenant_id AND f.stream_id = e.stream_id
            WHERE e.session_id IS NOT NULL AND e.tenant_id IN :tenants
            GROUP BY e.tenant_id, e.session_id
        """
        result = {}
        for r in self._rows(statement):
            assert r.agent_id == r.last_agent_id, "the workload keeps one agent per session"
            result[(r.tenant_id, r.session_id)] = {
                "agent_id": r.agent_id,
                "first_seen": moment(r.first_seen),
                "last_seen": moment(r.last_seen),
                **{name: int(getattr(r, name)) for name in SESSION_COUNTERS},
            }
        return result

    # --- llm_ledger_failed_attempts ---------------------------------------------------------------------

    def failed_attempts(self) -> set[tuple[Any, ...]]:
        s = self.sql
        statement = f"""
            SELECT tenant_id, event_id, occurred_at, stream_id, session_id, COALESCE(agent_id, '') AS agent_id,
                   COALESCE(step, '') AS step, {s.text("model")} AS model, {s.provider(s.text("model"))} AS provider,
                   CAST({s.text("attempt")} AS integer) AS attempt, {s.text("error_type")} AS error_type,
                   CAST({s.text("status_code")} AS integer) AS status_code, {s.text("message")} AS message,
                   {s.text("next_action")} AS next_action, trace_id
            FROM llm_ledger_events WHERE event_type = 'AttemptFailed' AND tenant_id IN :tenants
        """
        return {(*r[:2], moment(r[2]), *r[3:]) for r in self._rows(statement)}

    # --- llm_ledger_fallbacks ----------------------------------------------------------------------------

    def fallbacks(self) -> set[tuple[Any, ...]]:
        s = self.sql
        statement = f"""
            SELECT tenant_id, stream_id, event_id, occurred_at, session_id, COALESCE(agent_id, '') AS agent_id,
                   COALESCE(step, '') AS step, {s.text("from_model")} AS from_model, {s.text("to_model")} AS to_model,
                   {s.text("reason")} AS reason
            FROM llm_ledger_events
            WHERE event_type = 'FallbackTriggered' AND session_id IS NOT NULL AND tenant_id IN :tenants
        """
        return {(*r[:3], moment(r[3]), *r[4:]) for r in self._rows(statement)}

    # --- latencies, for exact percentiles ---------------------------------------------------------------

    def _latency_filter(self, kind: str, start: datetime, end: datetime) -> str:
        types = (
            "('ExecutionSucceeded', 'ExecutionFailed')"
            if kind == "execution"
            else "('AttemptSucceeded', 'AttemptFailed')"
        )
        moment_seconds = self.sql.epoch("occurred_at")
        return (
            f"event_type IN {types} AND tenant_id IN :tenants"
            f" AND {moment_seconds} >= {int(start.timestamp())} AND {moment_seconds} < {int(end.timestamp())}"
        )

    def _model(self, kind: str) -> str:
        s = self.sql
        if kind == "attempt":
            return s.text("model")
        return (
            f"CASE WHEN event_type = 'ExecutionSucceeded' THEN {s.text('model')}"
            f" ELSE COALESCE({s.text('last_model')}, '') END"
        )

    def latencies(self, kind: str, start: datetime, end: datetime) -> dict[tuple[str, str, str], list[float]]:
        """Latencies (ms) of executions or attempts in ``[start, end)``, per (tenant, step, model)."""
        statement = f"""
            SELECT tenant_id, COALESCE(step, '') AS step, {self._model(kind)} AS model,
                   {self.sql.number("latency_ms")} AS latency
            FROM llm_ledger_events WHERE {self._latency_filter(kind, start, end)}
        """
        result: dict[tuple[str, str, str], list[float]] = {}
        for r in self._rows(statement):
            result.setdefault((r.tenant_id, r.step, r.model), []).append(float(r.latency))
        return result

    def percentile_disc(self, kind: str, start: datetime, end: datetime, qs: Sequence[float]) -> dict[str, list[float]]:
        """PostgreSQL's own exact nearest-rank percentiles per tenant."""
        assert self.sql.dialect == "postgresql"
        columns = ", ".join(f"percentile_disc({q}) WITHIN GROUP (ORDER BY {self.sql.number('latency_ms')})" for q in qs)
        statement = (
            f"SELECT tenant_id, {columns} FROM llm_ledger_events"
            f" WHERE {self._latency_filter(kind, start, end)} GROUP BY tenant_id"
        )
        return {r[0]: [float(v) for v in r[1:]] for r in self._rows(statement)}


SESSION_COUNTERS = ("executions", "succeeded", "failed", "fallback_executions", "attempts", "attempt_failures")


class Projected(_TenantsQuery):
    """The read models of ``tenants``, in the shapes ``Truth`` gives."""

    def step_stats(self, grain: int) -> dict[tuple[Any, ...], dict[str, float]]:
        statement = f"""
            SELECT tenant_id, {self.sql.epoch("bucket_start")} AS bucket, agent_id, step, model, provider,
                   {", ".join(STEP_COUNTERS)}, {", ".join(STEP_SUMS)},
                   CAST(execution_latency AS TEXT) AS execution_latency,
                   CAST(attempt_latency AS TEXT) AS attempt_latency
            FROM llm_ledger_step_stats WHERE grain_seconds = :grain AND tenant_id IN :tenants
        """
        result = {}
        for r in self._rows(statement, grain=grain):
            executions, attempts = histogram.loads(r.execution_latency), histogram.loads(r.attempt_latency)
            result[(r.tenant_id, int(r.bucket), r.agent_id, r.step, r.model, r.provider)] = {
                **{name: int(getattr(r, name)) for name in STEP_COUNTERS},
                **{name: float(getattr(r, name)) for name in STEP_SUMS},
                "execution_histogram_count": sum(executions.values()),
                "attempt_histogram_count": sum(attempts.values()),
            }
        return result

    def error_stats(self, grain: int) -> dict[tuple[Any, ...], int]:
        statement = f"""
            SELECT tenant_id, {self.sql.epoch("bucket_start")} AS bucket, agent_id, step, model, provider, scope,
                   error_type, count
            FROM llm_ledger_error_stats WHERE grain_seconds = :grain AND tenant_id IN :tenants
        """
        return {(*r[:1], int(r[1]), *r[2:8]): int(r[8]) for r in self._rows(statement, grain=grain)}

    def fallback_stats(self, grain: int) -> dict[tuple[Any, ...], tuple[int, int]]:
        statement = f"""
            SELECT tenant_id, {self.sql.epoch("bucket_start")} AS bucket, agent_id, step, from_model, to_model, reason,
                   fallbacks, succeeded_after
            FROM llm_ledger_fallback_stats WHERE grain_seconds = :grain AND tenant_id IN :tenants
        """
        return {(r[0], int(r[1]), *r[2:7]): (int(r[7]), int(r[8])) for r in self._rows(statement, grain=grain)}

    def tool_stats(self, grain: int) -> dict[tuple[Any, ...], tuple[int, float]]:
        statement = f"""
            SELECT tenant_id, {self.sql.epoch("bucket_start")} AS bucket, agent_id, step, tool_name, outcome,
                   calls, latency_ms_sum, CAST(latency AS TEXT) AS latency
            FROM llm_ledger_tool_stats WHERE grain_seconds = :grain AND tenant_id IN :tenants
        """
        result = {}
        for r in self._rows(statement, grain=grain):
            assert sum(histogram.loads(r.latency).values()) == r.calls, "the latency histogram counts every call"
            result[(r[0], int(r[1]), *r[2:6])] = (int(r.calls), float(r.latency_ms_sum))
        return result

    def sessions(self) -> dict[tuple[str, str], dict[str, Any]]:
        statement = f"""
            SELECT tenant_id, session_id, agent_id, first_seen, last_seen, {", ".join(SESSION_COUNTERS)}
            FROM llm_ledger_sessions WHERE tenant_id IN :tenants
        """
        return {
            (r.tenant_id, r.session_id): {
                "agent_id": r.agent_id,
                "first_seen": moment(r.first_seen),
                "last_seen": moment(r.last_seen),
                **{name: int(getattr(r, name)) for name in SESSION_COUNTERS},
            }
            for r in self._rows(statement)
        }

    def failed_attempts(self) -> set[tuple[Any, ...]]:
        statement = """
            SELECT tenant_id, event_id, occurred_at, stream_id, session_id, agent_id, step, model, provider, attempt,
                   error_type, status_code, message, next_action, trace_id
            FROM llm_ledger_failed_attempts WHERE tenant_id IN :tenants
        """
        return {(*r[:2], moment(r[2]), *r[3:]) for r in self._rows(statement)}

    def fallbacks(self) -> set[tuple[Any, ...]]:
        statement = """
            SELECT tenant_id, stream_id, event_id, occurred_at, session_id, agent_id, step, from_model, to_model,
                   reason
            FROM llm_ledger_fallbacks WHERE tenant_id IN :tenants
        """
        return {(*r[:3], moment(r[3]), *r[4:]) for r in self._rows(statement)}


GRAINS = (60, 3_600, 86_400)


def assert_read_models_equal_truth(engine: Engine, tenants: Sequence[str]) -> None:
    """Every count, sum and edge of the tenants' read models equals the ground truth, at every grain."""
    truth, projected = Truth(engine, tenants), Projected(engine, tenants)
    for grain in GRAINS:
        expected, actual = truth.step_stats(grain), projected.step_stats(grain)
        assert sorted(actual) == sorted(expected), f"step_stats rows at grain {grain}"
        for key, figures in expected.items():
            row = actual[key]
            assert {n: row[n] for n in STEP_COUNTERS} == {n: figures[n] for n in STEP_COUNTERS}, (grain, key)
            for name in STEP_SUMS:
                assert math.isclose(row[name], figures[name], rel_tol=1e-9, abs_tol=1e-6), (grain, key, name)
            assert row["execution_histogram_count"] == figures["executions"], (grain, key)
            assert row["attempt_histogram_count"] == figures["attempts"], (grain, key)
        assert projected.error_stats(grain) == truth.error_stats(grain), f"error_stats at grain {grain}"
        assert projected.fallback_stats(grain) == truth.fallback_stats(grain), f"fallback_stats at grain {grain}"
        expected_tools, actual_tools = truth.tool_stats(grain), projected.tool_stats(grain)
        assert sorted(actual_tools) == sorted(expected_tools), f"tool_stats rows at grain {grain}"
        for key, (calls, latency) in expected_tools.items():
            assert actual_tools[key][0] == calls, (grain, key)
            assert math.isclose(actual_tools[key][1], latency, rel_tol=1e-9, abs_tol=1e-6), (grain, key)
    assert projected.sessions() == truth.sessions()
    assert projected.failed_attempts() == truth.failed_attempts()
    assert projected.fallbacks() == truth.fallbacks()
