"""Every SQL statement of the projector: reading events past the checkpoint, adding a batch's delta to
the read models, the checkpoint itself. Dialect differences live in ``_Dialect``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    DateTime,
    Float,
    Integer,
    Text,
    case,
    cast,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from llm_ledger.projections import histogram
from llm_ledger.projections.rollup import PAYLOAD_TYPES, Delta, EdgeOrigin, EventRecord
from llm_ledger.projections.schema import (
    READ_MODELS,
    checkpoints,
    error_stats,
    failed_attempts,
    fallback_stats,
    sessions,
    step_stats,
)
from llm_ledger.store.dialects import Backend, Cursor
from llm_ledger.store.schema import events

_EVENT_COLUMNS = (
    events.c.global_position,
    events.c.event_id,
    events.c.event_type,
    events.c.tenant_id,
    events.c.stream_id,
    events.c.occurred_at,
    events.c.agent_id,
    events.c.session_id,
    events.c.step,
    events.c.trace_id,
    # Started events carry the captured input, which can be large and which no read model needs.
    case((events.c.event_type.in_(sorted(PAYLOAD_TYPES)), cast(events.c.payload, Text)), else_=None).label(
        "payload_text"
    ),
)


_NO_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class Checkpoint:
    cursor: Cursor
    events_applied: int
    updated_at: datetime | None


def utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ProjectionDatabase:
    """The projector's statements, on one connection inside one transaction."""

    def __init__(self, backend: Backend, name: str) -> None:
        self._backend = backend
        self._name = name
        self._dialect = _DIALECTS[backend.name]

    # --- the checkpoint, which is also the lock -------------------------------------------------------

    def lock_checkpoint(self, connection: Connection, wait_seconds: float | None) -> Checkpoint | None:
        """Take the projection's lock for this transaction and read its checkpoint; ``None`` when another
        projector holds the lock for longer than ``wait_seconds``.

        The lock is the checkpoint row, updated first: on PostgreSQL a row lock, on SQLite the file's
        write lock. A second projector waits there and then reads the checkpoint the first one saved.
        """
        self._dialect.prepare(connection)
        insert = self._dialect.insert(checkpoints).values(name=self._name).on_conflict_do_nothing()
        # The insert waits too: on PostgreSQL for the holder's uncommitted update of the same key, on
        # SQLite for the file's write lock. So the bound covers it.
        try:
            with self._dialect.bounded_wait(connection, wait_seconds):
                connection.execute(insert)
                connection.execute(
                    update(checkpoints)
                    .where(checkpoints.c.name == self._name)
                    .values(updated_at=func.current_timestamp())
                )
        except Exception as exc:
            if self._dialect.is_lock_timeout(exc):
                return None
            raise
        row = connection.execute(select(checkpoints).where(checkpoints.c.name == self._name)).one()
        return Checkpoint(Cursor(int(row.tx_id), int(row.position)), int(row.events_applied), row.updated_at)

    def save_checkpoint(self, connection: Connection, cursor: Cursor, events_applied: int) -> None:
        connection.execute(
            update(checkpoints)
            .where(checkpoints.c.name == self._name)
            .values(tx_id=cursor.tx_id, position=cursor.position, events_applied=events_applied)
        )

    def read_checkpoint(self, connection: Connection) -> Checkpoint | None:
        row = connection.execute(select(checkpoints).where(checkpoints.c.name == self._name)).one_or_none()
        if row is None:
            return None
        return Checkpoint(Cursor(int(row.tx_id), int(row.position)), int(row.events_applied), row.updated_at)

    # --- events -------------------------------------------------------------------------------------------

    def read_events(self, connection: Connection, after: Cursor, limit: int) -> tuple[list[EventRecord], Cursor]:
        # ``all()`` fetches the batch at once, and each row is unpacked as a tuple: attribute access on
        # thousands of rows, one ``fetchone`` at a time, cost more than folding them.
        rows = connection.execute(self._backend.read_all(after, limit, _EVENT_COLUMNS)).all()
        loads = orjson.loads
        records = [
            EventRecord(
                event_id,
                event_type,
                tenant_id,
                stream_id,
                occurred_at if occurred_at.tzinfo is UTC else utc(occurred_at),
                agent_id,
                session_id,
                step,
                trace_id,
                loads(payload_text) if payload_text is not None else None,
            )
            for (
                _,
                event_id,
                event_type,
                tenant_id,
                stream_id,
                occurred_at,
                agent_id,
                session_id,
                step,
                trace_id,
                payload_text,
                *_,
            ) in rows
        ]
        return records, (self._backend.cursor_of(rows[-1]) if rows else after)

    def pending_events(self, connection: Connection, after: Cursor) -> int:
        """How many stored events past ``after`` the projector can read now (for a progress bar)."""
        past = self._backend.read_all(after, _NO_LIMIT, [events.c.global_position]).order_by(None).subquery()
        return int(connection.execute(select(func.count()).select_from(past)).scalar_one())

    def fallback_edges(self, connection: Connection, tenant_id: str, stream_id: str) -> list[EdgeOrigin]:
        query = (
            select(events.c.occurred_at, events.c.agent_id, events.c.step, cast(events.c.payload, Text))
            .where(events.c.tenant_id == tenant_id, events.c.stream_id == stream_id)
            .where(events.c.event_type == "FallbackTriggered")
            .order_by(events.c.stream_position)
        )
        edges: list[EdgeOrigin] = []
        for occurred_at, agent_id, step, payload_text in connection.execute(query):
            payload = orjson.loads(payload_text)
            edges.append(
                (
                    tenant_id,
                    utc(occurred_at),
                    agent_id or "",
                    step or "",
                    str(payload["from_model"]),
                    str(payload["to_model"]),
                    str(payload["reason"]),
                )
            )
        return edges

    # --- read models --------------------------------------------------------------------------------------

    def apply(self, connection: Connection, delta: Delta) -> None:
        """Add the delta to the stored rows: one upsert statement per table."""
        if self._backend.name == "postgresql":
            _apply_arrays(connection, delta)
            return
        if delta.steps:
            connection.execute(self._upsert_steps(), [_step_row(key, figures) for key, figures in delta.steps.items()])
        if delta.errors:
            connection.execute(self._upsert_errors(), [_error_row(key, n) for key, n in delta.errors.items()])
        if delta.fallbacks:
            connection.execute(self._upsert_fallbacks(), [_fallback_row(k, f) for k, f in delta.fallbacks.items()])
        if delta.sessions:
            connection.execute(self._upsert_sessions(), [_session_row(k, s) for k, s in delta.sessions.items()])
        if delta.failed_attempts:
            insert = self._dialect.insert(failed_attempts).on_conflict_do_nothing()
            connection.execute(insert, delta.failed_attempts)

    def empty(self, connection: Connection) -> None:
        """Empty the read models and reset the checkpoint (a rebuild's first step)."""
        self._dialect.empty(connection, [table.name for table in READ_MODELS])
        self.save_checkpoint(connection, Cursor(), 0)

    def _upsert_steps(self) -> Insert:
        insert = self._dialect.insert(step_stats)
        excluded = insert.excluded
        counters = [
            "executions",
            "succeeded",
            "failed",
            "fallback_executions",
            "attempts",
            "attempt_failures",
            "input_tokens",
            "output_tokens",
            "execution_latency_ms_sum",
            "attempt_latency_ms_sum",
        ]
        changes: dict[str, Any] = {name: step_stats.c[name] + excluded[name] for name in counters}
        changes["cost_usd"] = case(
            (step_stats.c.cost_usd.is_(None) & excluded.cost_usd.is_(None), literal(None)),
            else_=func.coalesce(step_stats.c.cost_usd, 0.0) + func.coalesce(excluded.cost_usd, 0.0),
        )
        for name in ("execution_latency", "attempt_latency"):
            changes[name] = func.llm_ledger_hist_merge(step_stats.c[name], excluded[name])
        keys = [c.name for c in step_stats.primary_key.columns]
        return insert.on_conflict_do_update(index_elements=keys, set_=changes)  # type: ignore[no-any-return]

    def _upsert_counts(self, table: Any, counters: Sequence[str]) -> Insert:
        insert = self._dialect.insert(table)
        excluded = insert.excluded
        keys = [c.name for c in table.primary_key.columns]
        changes = {name: table.c[name] + excluded[name] for name in counters}
        return insert.on_conflict_do_update(index_elements=keys, set_=changes)  # type: ignore[no-any-return]

    def _upsert_errors(self) -> Insert:
        return self._upsert_counts(error_stats, ["count"])

    def _upsert_fallbacks(self) -> Insert:
        return self._upsert_counts(fallback_stats, ["fallbacks", "succeeded_after"])

    def _upsert_sessions(self) -> Insert:
        counters = ["executions", "succeeded", "failed", "fallback_executions", "attempts", "attempt_failures"]
        insert = self._dialect.insert(sessions)
        excluded = insert.excluded
        changes = {name: sessions.c[name] + excluded[name] for name in counters}
        changes["first_seen"] = case(
            (excluded.first_seen < sessions.c.first_seen, excluded.first_seen), else_=sessions.c.first_seen
        )
        changes["last_seen"] = case(
            (excluded.last_seen > sessions.c.last_seen, excluded.last_seen), else_=sessions.c.last_seen
        )
        return insert.on_conflict_do_update(index_elements=["tenant_id", "session_id"], set_=changes)  # type: ignore[no-any-return]


# --- PostgreSQL: each table's delta in one INSERT ... SELECT FROM unnest(arrays) ------------------------------
#
# One statement per table, its rows sent as one array per column: no per-row statement, parameter binding
# or JSON encoding through the ORM (an executemany of thousands of rows cost more than the folding).

_ARRAY_TYPES = {Text: "text", Integer: "int4", BigInteger: "int8", DateTime: "timestamptz", Float: "float8"}


def _array_type(column: Any) -> str:
    if isinstance(column.type, JSON):
        return "text"  # histograms go as JSON text, cast to jsonb in the statement
    for kind, name in _ARRAY_TYPES.items():
        if isinstance(column.type, kind):
            return name
    raise TypeError(f"no array type for {column}")  # pragma: no cover - every read-model column is mapped


def _unnest_insert(table: Any, changes: dict[str, str] | None) -> str:
    """``INSERT INTO table SELECT ... FROM unnest(%s::type[], ...)``, every column of ``table`` in order;
    ``changes`` (column -> SQL expression over ``t`` and ``EXCLUDED``) on conflict, or nothing done."""
    names = [c.name for c in table.c]
    arrays = ", ".join(f"%s::{_array_type(c)}[]" for c in table.c)
    selected = ", ".join(f"{c.name}::jsonb" if isinstance(c.type, JSON) else c.name for c in table.c)
    keys = ", ".join(c.name for c in table.primary_key.columns)
    on_conflict = (
        "DO NOTHING" if changes is None else "DO UPDATE SET " + ", ".join(f"{n} = {e}" for n, e in changes.items())
    )
    return (
        f"INSERT INTO {table.name} AS t ({', '.join(names)}) SELECT {selected} "
        f"FROM unnest({arrays}) AS d({', '.join(names)}) ON CONFLICT ({keys}) {on_conflict}"
    )


def _sums(*names: str) -> dict[str, str]:
    return {name: f"t.{name} + EXCLUDED.{name}" for name in names}


_STEP_COUNTERS = (
    "executions",
    "succeeded",
    "failed",
    "fallback_executions",
    "attempts",
    "attempt_failures",
    "input_tokens",
    "output_tokens",
)
_UPSERT_STEPS = _unnest_insert(
    step_stats,
    {
        **_sums(*_STEP_COUNTERS, "execution_latency_ms_sum", "attempt_latency_ms_sum"),
        "cost_usd": "CASE WHEN t.cost_usd IS NULL AND EXCLUDED.cost_usd IS NULL THEN NULL"
        " ELSE coalesce(t.cost_usd, 0.0) + coalesce(EXCLUDED.cost_usd, 0.0) END",
        "execution_latency": "llm_ledger_hist_merge(t.execution_latency, EXCLUDED.execution_latency)",
        "attempt_latency": "llm_ledger_hist_merge(t.attempt_latency, EXCLUDED.attempt_latency)",
    },
)
_UPSERT_ERRORS = _unnest_insert(error_stats, _sums("count"))
_UPSERT_FALLBACKS = _unnest_insert(fallback_stats, _sums("fallbacks", "succeeded_after"))
_UPSERT_SESSIONS = _unnest_insert(
    sessions,
    {
        **_sums("executions", "succeeded", "failed", "fallback_executions", "attempts", "attempt_failures"),
        "first_seen": "CASE WHEN EXCLUDED.first_seen < t.first_seen THEN EXCLUDED.first_seen ELSE t.first_seen END",
        "last_seen": "CASE WHEN EXCLUDED.last_seen > t.last_seen THEN EXCLUDED.last_seen ELSE t.last_seen END",
    },
)
_INSERT_FAILED_ATTEMPTS = _unnest_insert(failed_attempts, None)
_FAILED_ATTEMPT_COLUMNS = tuple(c.name for c in failed_attempts.c)


def _columns(rows: list[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    """Rows turned into one list per column."""
    return tuple(map(list, zip(*rows, strict=True))) if rows else tuple([] for _ in range(width))


def _apply_arrays(connection: Connection, delta: Delta) -> None:
    dumps = histogram.dumps
    rows: list[tuple[Any, ...]]
    if delta.steps:
        rows = [
            (
                *key,
                f.executions,
                f.succeeded,
                f.failed,
                f.fallback_executions,
                f.attempts,
                f.attempt_failures,
                f.input_tokens,
                f.output_tokens,
                f.cost_usd,
                f.execution_latency_ms_sum,
                dumps(f.execution_latency),
                f.attempt_latency_ms_sum,
                dumps(f.attempt_latency),
            )
            for key, f in delta.steps.items()
        ]
        connection.exec_driver_sql(_UPSERT_STEPS, _columns(rows, len(step_stats.c)))
    if delta.errors:
        rows = [(*key, n) for key, n in delta.errors.items()]
        connection.exec_driver_sql(_UPSERT_ERRORS, _columns(rows, len(error_stats.c)))
    if delta.fallbacks:
        rows = [(*key, f.fallbacks, f.succeeded_after) for key, f in delta.fallbacks.items()]
        connection.exec_driver_sql(_UPSERT_FALLBACKS, _columns(rows, len(fallback_stats.c)))
    if delta.sessions:
        rows = [
            (
                tenant,
                session,
                s.agent_id,
                s.first_seen,
                s.last_seen,
                s.executions,
                s.succeeded,
                s.failed,
                s.fallback_executions,
                s.attempts,
                s.attempt_failures,
            )
            for (tenant, session), s in delta.sessions.items()
        ]
        connection.exec_driver_sql(_UPSERT_SESSIONS, _columns(rows, len(sessions.c)))
    if delta.failed_attempts:
        rows = [tuple(attempt[name] for name in _FAILED_ATTEMPT_COLUMNS) for attempt in delta.failed_attempts]
        connection.exec_driver_sql(_INSERT_FAILED_ATTEMPTS, _columns(rows, len(failed_attempts.c)))


def _step_row(key: tuple[Any, ...], figures: Any) -> dict[str, Any]:
    tenant, grain, bucket, agent, step, model, provider = key
    return {
        "tenant_id": tenant,
        "grain_seconds": grain,
        "bucket_start": bucket,
        "agent_id": agent,
        "step": step,
        "model": model,
        "provider": provider,
        "executions": figures.executions,
        "succeeded": figures.succeeded,
        "failed": figures.failed,
        "fallback_executions": figures.fallback_executions,
        "attempts": figures.attempts,
        "attempt_failures": figures.attempt_failures,
        "input_tokens": figures.input_tokens,
        "output_tokens": figures.output_tokens,
        "cost_usd": figures.cost_usd,
        "execution_latency_ms_sum": figures.execution_latency_ms_sum,
        "execution_latency": {str(b): n for b, n in figures.execution_latency.items()},
        "attempt_latency_ms_sum": figures.attempt_latency_ms_sum,
        "attempt_latency": {str(b): n for b, n in figures.attempt_latency.items()},
    }


def _error_row(key: tuple[Any, ...], count: int) -> dict[str, Any]:
    tenant, grain, bucket, agent, step, model, provider, scope, error_type = key
    return {
        "tenant_id": tenant,
        "grain_seconds": grain,
        "bucket_start": bucket,
        "agent_id": agent,
        "step": step,
        "model": model,
        "provider": provider,
        "scope": scope,
        "error_type": error_type,
        "count": count,
    }


def _fallback_row(key: tuple[Any, ...], figures: Any) -> dict[str, Any]:
    tenant, grain, bucket, agent, step, from_model, to_model, reason = key
    return {
        "tenant_id": tenant,
        "grain_seconds": grain,
        "bucket_start": bucket,
        "agent_id": agent,
        "step": step,
        "from_model": from_model,
        "to_model": to_model,
        "reason": reason,
        "fallbacks": figures.fallbacks,
        "succeeded_after": figures.succeeded_after,
    }


def _session_row(key: tuple[str, str], figures: Any) -> dict[str, Any]:
    tenant, session = key
    return {
        "tenant_id": tenant,
        "session_id": session,
        "agent_id": figures.agent_id,
        "first_seen": figures.first_seen,
        "last_seen": figures.last_seen,
        "executions": figures.executions,
        "succeeded": figures.succeeded,
        "failed": figures.failed,
        "fallback_executions": figures.fallback_executions,
        "attempts": figures.attempts,
        "attempt_failures": figures.attempt_failures,
    }


class _Dialect:
    def insert(self, table: Any) -> Any:
        raise NotImplementedError

    def prepare(self, connection: Connection) -> None:
        """Anything the connection needs before the projector's statements run."""

    @contextmanager
    def bounded_wait(self, connection: Connection, wait_seconds: float | None) -> Iterator[None]:
        """Lock waits inside the block last at most ``wait_seconds`` (``None``: the connection's own)."""
        yield

    def is_lock_timeout(self, exc: Exception) -> bool:
        return False

    def empty(self, connection: Connection, tables: list[str]) -> None:
        raise NotImplementedError


class _Postgres(_Dialect):
    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)

    @contextmanager
    def bounded_wait(self, connection: Connection, wait_seconds: float | None) -> Iterator[None]:
        if wait_seconds is not None:
            milliseconds = max(1, int(wait_seconds * 1000))
            connection.execute(text("SELECT set_config('lock_timeout', :value, true)"), {"value": f"{milliseconds}ms"})
        yield

    def is_lock_timeout(self, exc: Exception) -> bool:
        return getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03"

    def empty(self, connection: Connection, tables: list[str]) -> None:
        connection.execute(text(f"TRUNCATE {', '.join(tables)}"))


class _Sqlite(_Dialect):
    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)

    def prepare(self, connection: Connection) -> None:
        raw = connection.connection.driver_connection
        assert raw is not None
        raw.create_function("llm_ledger_hist_merge", 2, histogram.merge_stored, deterministic=True)

    @contextmanager
    def bounded_wait(self, connection: Connection, wait_seconds: float | None) -> Iterator[None]:
        if wait_seconds is None:
            yield
            return
        # busy_timeout belongs to the (pooled) connection, not the transaction: put the old one back.
        previous = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {max(1, int(wait_seconds * 1000))}")
        try:
            yield
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {previous}")

    def is_lock_timeout(self, exc: Exception) -> bool:
        return "database is locked" in str(getattr(exc, "orig", exc))

    def empty(self, connection: Connection, tables: list[str]) -> None:
        for table in tables:
            connection.execute(text(f"DELETE FROM {table}"))


_DIALECTS: dict[str, _Dialect] = {"postgresql": _Postgres(), "sqlite": _Sqlite()}
