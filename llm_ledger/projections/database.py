"""Every SQL statement of the projector: reading events past the checkpoint, adding a batch's delta to
the read models, the checkpoint itself. Dialect differences live in ``_Dialect``."""

from __future__ import annotations

from collections.abc import Iterator
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
    Table,
    Text,
    case,
    cast,
    func,
    select,
    text,
    update,
)

from llm_ledger.projections import histogram
from llm_ledger.projections.rollup import (
    MOCKED_PROVIDERS,
    PAYLOAD_TYPES,
    Delta,
    EdgeOrigin,
    EventRecord,
    edge_origin,
    provider_is_one_of,
)
from llm_ledger.projections.schema import (
    READ_MODELS,
    checkpoints,
    error_stats,
    failed_attempts,
    fallback_stats,
    fallbacks,
    sessions,
    step_stats,
    tool_stats,
)
from llm_ledger.store import as_utc
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
        insert = text(f"INSERT INTO {checkpoints.name} (name) VALUES (:name) ON CONFLICT (name) DO NOTHING")
        # The insert waits too: on PostgreSQL for the holder's uncommitted update of the same key, on
        # SQLite for the file's write lock. So the bound covers it.
        try:
            with self._dialect.bounded_wait(connection, wait_seconds):
                connection.execute(insert, {"name": self._name})
                connection.execute(
                    update(checkpoints)
                    .where(checkpoints.c.name == self._name)
                    .values(updated_at=func.current_timestamp())
                )
        except Exception as exc:
            if self._dialect.is_lock_timeout(exc):
                return None
            raise
        checkpoint = self.read_checkpoint(connection)
        assert checkpoint is not None, "the checkpoint row was inserted above"
        return checkpoint

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
                occurred_at if occurred_at.tzinfo is UTC else as_utc(occurred_at),
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

    def counts_mocks_under_mock(self, connection: Connection) -> bool:
        """Whether the read models count a mock named after a provider (``mock/openai-...``) under provider
        ``mock``, as projectors did before ``rollup.provider_of`` counted it under the provider it stands for."""
        model = step_stats.c.model
        named = provider_is_one_of(model, MOCKED_PROVIDERS)
        query = select(model).where(step_stats.c.provider == "mock", named).limit(1)
        return connection.execute(query).first() is not None

    def fallback_edges(self, connection: Connection, tenant_id: str, stream_id: str) -> list[EdgeOrigin]:
        query = (
            select(events.c.occurred_at, events.c.agent_id, events.c.step, cast(events.c.payload, Text))
            .where(events.c.tenant_id == tenant_id, events.c.stream_id == stream_id)
            .where(events.c.event_type == "FallbackTriggered")
            .order_by(events.c.stream_position)
        )
        return [
            edge_origin(tenant_id, as_utc(occurred_at), agent_id, step, orjson.loads(payload_text))
            for occurred_at, agent_id, step, payload_text in connection.execute(query)
        ]

    # --- read models --------------------------------------------------------------------------------------

    def apply(self, connection: Connection, delta: Delta) -> None:
        """Add the delta to the stored rows: one upsert statement per table."""
        for table, rows in _delta_rows(delta):
            if rows:
                self._dialect.upsert(connection, table, rows)

    def empty(self, connection: Connection) -> None:
        """Empty the read models and reset the checkpoint (a rebuild's first step)."""
        self._dialect.empty(connection, [table.name for table in READ_MODELS])
        self.save_checkpoint(connection, Cursor(), 0)


# --- what a delta adds, as rows in each table's column order ----------------------------------------------

_STEP_COUNTS = (
    "executions",
    "succeeded",
    "failed",
    "fallback_executions",
    "attempts",
    "attempt_failures",
    "input_tokens",
    "output_tokens",
)
_STEP_COUNTERS = (*_STEP_COUNTS, "execution_latency_ms_sum", "attempt_latency_ms_sum", "first_chunk_ms_sum")
"""The step figures a stored row and a new one add up plainly."""
_SESSION_COUNTERS = ("executions", "succeeded", "failed", "fallback_executions", "attempts", "attempt_failures")


def _sums(table: Table, *names: str) -> dict[str, str]:
    return {name: f"{table.name}.{name} + EXCLUDED.{name}" for name in names}


def _merged(table: Table, name: str) -> str:
    return f"llm_ledger_hist_merge({table.name}.{name}, EXCLUDED.{name})"


def _whichever(table: Table, name: str, pick: str) -> str:
    """The stored or the new value of ``name``, whichever compares ``pick`` (``<``: the earlier)."""
    return f"CASE WHEN EXCLUDED.{name} {pick} {table.name}.{name} THEN EXCLUDED.{name} ELSE {table.name}.{name} END"


_ON_CONFLICT: dict[str, dict[str, str] | None] = {
    step_stats.name: {
        **_sums(step_stats, *_STEP_COUNTERS),
        "cost_usd": "CASE WHEN llm_ledger_step_stats.cost_usd IS NULL AND EXCLUDED.cost_usd IS NULL THEN NULL"
        " ELSE coalesce(llm_ledger_step_stats.cost_usd, 0.0) + coalesce(EXCLUDED.cost_usd, 0.0) END",
        "execution_latency": _merged(step_stats, "execution_latency"),
        "attempt_latency": _merged(step_stats, "attempt_latency"),
        "first_chunk_latency": _merged(step_stats, "first_chunk_latency"),
    },
    error_stats.name: _sums(error_stats, "count"),
    fallback_stats.name: _sums(fallback_stats, "fallbacks", "succeeded_after"),
    sessions.name: {
        **_sums(sessions, *_SESSION_COUNTERS),
        "first_seen": _whichever(sessions, "first_seen", "<"),
        "last_seen": _whichever(sessions, "last_seen", ">"),
    },
    failed_attempts.name: None,
    fallbacks.name: None,
    tool_stats.name: {**_sums(tool_stats, "calls", "latency_ms_sum"), "latency": _merged(tool_stats, "latency")},
}
"""How a row that is already stored takes a new one: figures added up (``None``: the first one stays)."""

_FAILED_ATTEMPT_COLUMNS = tuple(c.name for c in failed_attempts.c)


def _upsert_sql(table: Table, source: str) -> str:
    """``INSERT INTO table (columns) <source> ON CONFLICT (key) DO ...`` with ``_ON_CONFLICT``'s rule."""
    changes = _ON_CONFLICT[table.name]
    keys = ", ".join(c.name for c in table.primary_key.columns)
    action = "DO NOTHING" if changes is None else "DO UPDATE SET " + ", ".join(f"{n} = {e}" for n, e in changes.items())
    return f"INSERT INTO {table.name} ({', '.join(c.name for c in table.c)}) {source} ON CONFLICT ({keys}) {action}"


def _delta_rows(delta: Delta) -> list[tuple[Table, list[tuple[Any, ...]]]]:
    dumps = histogram.dumps
    steps = [
        (
            *key,
            *(getattr(f, name) for name in _STEP_COUNTS),
            f.cost_usd,
            f.execution_latency_ms_sum,
            dumps(f.execution_latency),
            f.attempt_latency_ms_sum,
            dumps(f.attempt_latency),
            f.first_chunk_ms_sum,
            dumps(f.first_chunk_latency),
        )
        for key, f in delta.steps.items()
    ]
    session_rows = [
        (tenant, session, s.agent_id, s.first_seen, s.last_seen, *(getattr(s, n) for n in _SESSION_COUNTERS))
        for (tenant, session), s in delta.sessions.items()
    ]
    return [
        (step_stats, steps),
        (error_stats, [(*key, n) for key, n in delta.errors.items()]),
        (fallback_stats, [(*key, f.fallbacks, f.succeeded_after) for key, f in delta.fallbacks.items()]),
        (sessions, session_rows),
        (failed_attempts, [tuple(a[name] for name in _FAILED_ATTEMPT_COLUMNS) for a in delta.failed_attempts]),
        (tool_stats, [(*key, f.calls, f.latency_ms_sum, dumps(f.latency)) for key, f in delta.tools.items()]),
        (fallbacks, delta.fallback_rows),
    ]


# PostgreSQL: a table's rows go as one array per column into one INSERT ... SELECT FROM unnest(...), not as
# an executemany (thousands of rows a batch cost more than the folding).
_ARRAY_TYPES = {Text: "text", Integer: "int4", BigInteger: "int8", DateTime: "timestamptz", Float: "float8"}


def _array_type(column: Any) -> str:
    if isinstance(column.type, JSON):
        return "text"  # histograms go as JSON text, cast to jsonb in the statement
    for kind, name in _ARRAY_TYPES.items():
        if isinstance(column.type, kind):
            return name
    raise TypeError(f"no array type for {column}")  # pragma: no cover - every read-model column is mapped


def _unnest_upsert(table: Table) -> str:
    names = ", ".join(c.name for c in table.c)
    arrays = ", ".join(f"%s::{_array_type(c)}[]" for c in table.c)
    selected = ", ".join(f"{c.name}::jsonb" if isinstance(c.type, JSON) else c.name for c in table.c)
    return _upsert_sql(table, f"SELECT {selected} FROM unnest({arrays}) AS d({names})")


_UNNEST_UPSERTS = {table.name: _unnest_upsert(table) for table in READ_MODELS}


def _columns(rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """Rows turned into one list per column."""
    return tuple(map(list, zip(*rows, strict=True)))


# SQLite: the same statement with VALUES, run by executemany; timestamps in the text form SQLAlchemy
# stores (so that they compare, and read back, like every other timestamp of the file).
_VALUES_UPSERTS = {
    table.name: _upsert_sql(table, f"VALUES ({', '.join('?' for _ in table.c)})") for table in READ_MODELS
}


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class _Dialect:
    def upsert(self, connection: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
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
    def upsert(self, connection: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
        connection.exec_driver_sql(_UNNEST_UPSERTS[table.name], _columns(rows))

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
    def upsert(self, connection: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
        statement = _VALUES_UPSERTS[table.name]
        connection.exec_driver_sql(statement, [tuple(_sqlite_value(v) for v in row) for row in rows])

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
