"""What the dashboard asks of the read models: figures for one tenant over a time window, optionally kept
to some agents, steps, models and providers (``Filters``). (One session's
raw events and what ``llm-ledger audit verify`` recorded are the audit's to read: ``audit.timeline`` and
``audit.results``, which ``dashboard.view.DashboardView`` reads in this view's scoped transactions.)

On PostgreSQL every transaction is scoped: a view bound to a tenant reads as ``llm_ledger_reader`` with
that tenant set, so row-level security hides every other tenant's rows whatever a query asks; an unbound
view reads as ``llm_ledger_auditor``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, Select, Text, and_, cast, false, func, or_, select
from sqlalchemy.engine import URL

from llm_ledger.projections import histogram
from llm_ledger.projections.database import ProjectionDatabase
from llm_ledger.projections.errors import TenantNotAllowedError as TenantNotAllowedError
from llm_ledger.projections.grains import MINUTE, Segment, display_grain, floor, plan
from llm_ledger.projections.projector import PROJECTION_NAME
from llm_ledger.projections.rollup import StepFigures, provider_is_one_of
from llm_ledger.projections.schema import (
    checkpoints,
    error_stats,
    failed_attempts,
    fallback_stats,
    sessions,
    step_stats,
    tool_stats,
)
from llm_ledger.store import EventStore, as_utc
from llm_ledger.store.scoping import AUDITOR_ROLE, READER_ROLE

PERCENTILES = (0.5, 0.95, 0.99)
Dimension = Literal["agent_id", "step", "model", "provider"]
ErrorDimension = Literal["error_type", "provider", "model", "step"]
ToolDimension = Literal["agent_id", "step", "tool_name", "outcome"]
_Key = TypeVar("_Key", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Filters:
    """The agents, steps, models and providers a question keeps; an empty tuple keeps every value. The
    values of one dimension are alternatives (any of them), the dimensions all apply (each of them)."""

    agents: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()

    def chosen(self) -> dict[Dimension, tuple[str, ...]]:
        """The dimensions that keep only some values, by their column in the read models."""
        every: dict[Dimension, tuple[str, ...]] = {
            "agent_id": self.agents,
            "step": self.steps,
            "model": self.models,
            "provider": self.providers,
        }
        return {dimension: values for dimension, values in every.items() if values}

    @property
    def names_a_model(self) -> bool:
        """Whether a model or a provider is chosen (which tool calls, recorded per agent and step, cannot honour)."""
        return bool(self.models or self.providers)

    def without_models(self) -> Filters:
        return Filters(agents=self.agents, steps=self.steps)

    def without(self, dimensions: Iterable[Dimension]) -> Filters:
        """These filters, keeping every value of ``dimensions``."""
        dropped = set(dimensions)
        kept = {dimension: values for dimension, values in self.chosen().items() if dimension not in dropped}
        return Filters(*(kept.get(dimension, ()) for dimension in ("agent_id", "step", "model", "provider")))


EVERYTHING = Filters()
"""The filters that keep every row."""


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in UTC, in whole minutes (the finest grain kept)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's start and end must carry a time zone")
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts ({self.start.isoformat()} .. {self.end.isoformat()})")

    @classmethod
    def last(cls, span: timedelta, now: datetime) -> Window:
        """The ``span`` up to and including the current minute."""
        end = floor(now, MINUTE) + timedelta(minutes=1)
        return cls(end - span, end)

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> Window:
        """The window of the same length just before this one (for "change against"), cut at the first
        moment a datetime holds when it would start before it."""
        earliest = datetime.min.replace(tzinfo=UTC)
        start = self.start - self.span if self.start - earliest > self.span else earliest
        return Window(start, self.start)


@dataclass(slots=True)
class Figures(StepFigures):
    """Sums over some rows of ``llm_ledger_step_stats`` (the same figures a projected batch adds), and
    rates and percentiles from them."""

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.executions if self.executions else None

    @property
    def fallback_rate(self) -> float | None:
        return self.fallback_executions / self.executions if self.executions else None

    @property
    def attempt_failure_rate(self) -> float | None:
        return self.attempt_failures / self.attempts if self.attempts else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.execution_latency_ms_sum / self.executions if self.executions else None

    def latency_percentiles(self) -> tuple[float | None, float | None, float | None]:
        """Execution latency p50, p95, p99 (ms), each within 1.5% of the exact nearest-rank value."""
        p50, p95, p99 = histogram.quantiles(self.execution_latency, PERCENTILES)
        return p50, p95, p99

    def attempt_latency_percentiles(self) -> tuple[float | None, float | None, float | None]:
        p50, p95, p99 = histogram.quantiles(self.attempt_latency, PERCENTILES)
        return p50, p95, p99

    @property
    def streamed_attempts(self) -> int:
        """Streamed attempts that answered: those with a time to first chunk."""
        return sum(self.first_chunk_latency.values())

    def first_chunk_percentiles(self) -> tuple[float | None, float | None, float | None]:
        """Time to first chunk p50, p95, p99 (ms) of the streamed attempts that answered, within 1.5%."""
        p50, p95, p99 = histogram.quantiles(self.first_chunk_latency, PERCENTILES)
        return p50, p95, p99


@dataclass(frozen=True, slots=True)
class Point:
    """Figures of one time bucket (and one group, when the series is split by a dimension)."""

    bucket_start: datetime
    group: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class Group:
    key: tuple[str, ...]
    figures: Figures


@dataclass(frozen=True, slots=True)
class ToolCallGroup:
    """Tools' executions that ended in the window, of one combination of ``ToolDimension`` values (a tool's
    execution is a stream of its own: these are never among ``Figures.executions``)."""

    key: tuple[str, ...]
    calls: int
    failed: int
    latency_ms_sum: float
    latency: histogram.Counts

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.calls if self.calls else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.calls if self.calls else None

    def latency_percentiles(self) -> tuple[float | None, float | None, float | None]:
        """The tool's latency p50, p95, p99 (ms), each within 1.5% of the exact nearest-rank value."""
        p50, p95, p99 = histogram.quantiles(self.latency, PERCENTILES)
        return p50, p95, p99


@dataclass(frozen=True, slots=True)
class ToolCallPoint:
    bucket_start: datetime
    group: str
    calls: int
    failed: int


@dataclass(frozen=True, slots=True)
class ErrorPoint:
    bucket_start: datetime
    group: str
    count: int


@dataclass(frozen=True, slots=True)
class ErrorCount:
    error_type: str
    provider: str
    model: str
    count: int


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    occurred_at: datetime
    session_id: str | None
    agent_id: str
    step: str
    model: str
    provider: str
    attempt: int
    error_type: str
    status_code: int | None
    message: str
    next_action: str
    execution_id: str
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class FallbackEdge:
    from_model: str
    to_model: str
    reason: str
    fallbacks: int
    succeeded_after: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    agent_id: str
    first_seen: datetime
    last_seen: datetime
    executions: int
    succeeded: int
    failed: int
    fallback_executions: int
    attempts: int
    attempt_failures: int

    @property
    def outcome(self) -> str:
        return "failed executions" if self.failed else "ok"


@dataclass(frozen=True, slots=True)
class Freshness:
    events_applied: int | None
    """Every tenant's events the projector has applied; ``None`` for a view bound to one tenant, which must
    not learn the platform's volume (its role may not read the count: migration 0006)."""
    updated_at: datetime | None


class LedgerView:
    """Read-only questions about one ledger database, optionally bound to one tenant."""

    def __init__(self, url_or_engine: str | URL | Engine, *, bound_tenant: str | None = None) -> None:
        self.bound_tenant = bound_tenant
        role = READER_ROLE if bound_tenant is not None else AUDITOR_ROLE
        self._store = EventStore(url_or_engine, tenant_id=bound_tenant, role=role)

    @property
    def engine(self) -> Engine:
        return self._store.engine

    def close(self) -> None:
        self._store.close()

    def _check_allowed(self, tenant_id: str) -> None:
        if self.bound_tenant is not None and tenant_id != self.bound_tenant:
            raise TenantNotAllowedError(f"this view is bound to tenant {self.bound_tenant!r}, not {tenant_id!r}")

    @contextmanager
    def _reading(self, tenant_id: str | None = None) -> Iterator[Connection]:
        """The one scoped transaction every question reads in, here and in subclasses
        (``dashboard.view.DashboardView``): a question about one tenant passes it, so that a view bound to
        another refuses (``TenantNotAllowedError``) before row-level security hides the rows."""
        if tenant_id is not None:
            self._check_allowed(tenant_id)
        with self._store.transaction() as connection:
            yield connection

    # --- what there is ------------------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        """Tenants with projected figures (only the bound tenant for a bound view)."""
        if self.bound_tenant is not None:
            return [self.bound_tenant]
        with self._reading() as connection:
            return sorted(connection.execute(_TENANTS).scalars())

    def freshness(self) -> Freshness | None:
        """How far the projector has got; ``None`` when it never ran."""
        if self.bound_tenant is not None:
            return self._bound_freshness()
        with self._reading() as connection:
            checkpoint = ProjectionDatabase(self._store.backend, PROJECTION_NAME).read_checkpoint(connection)
        if checkpoint is None:
            return None
        updated = as_utc(checkpoint.updated_at) if checkpoint.updated_at else None
        return Freshness(checkpoint.events_applied, updated)

    def _bound_freshness(self) -> Freshness | None:
        # Only the column the reader role may read: the others count every tenant's events.
        query = select(checkpoints.c.updated_at).where(checkpoints.c.name == PROJECTION_NAME)
        with self._reading() as connection:
            row = connection.execute(query).one_or_none()
        if row is None:
            return None
        return Freshness(None, as_utc(row.updated_at) if row.updated_at else None)

    # --- figures ------------------------------------------------------------------------------------------

    def filter_choices(self, tenant_id: str, window: Window) -> Filters:
        """The agents, steps, models and providers with figures in the window, each sorted (what a filter
        can usefully choose), the agents and steps of tools' executions among them (the Tools page filters
        by those). A missing agent or step (stored as ``''``) is not offered."""
        segments = plan(window.start, window.end)
        figures = (
            select(step_stats.c.agent_id, step_stats.c.step, step_stats.c.model, step_stats.c.provider)
            .where(step_stats.c.tenant_id == tenant_id, _in_segments(step_stats, segments))
            .distinct()
        )
        tools = (
            select(tool_stats.c.agent_id, tool_stats.c.step)
            .where(tool_stats.c.tenant_id == tenant_id, _in_segments(tool_stats, segments))
            .distinct()
        )
        with self._reading(tenant_id) as connection:
            rows, tool_rows = list(connection.execute(figures)), list(connection.execute(tools))

        def offered(values: Iterable[str]) -> tuple[str, ...]:
            return tuple(sorted(set(values) - {""}))

        return Filters(
            agents=offered(row.agent_id for row in [*rows, *tool_rows]),
            steps=offered(row.step for row in [*rows, *tool_rows]),
            models=offered(row.model for row in rows),
            providers=offered(row.provider for row in rows),
        )

    def totals(self, tenant_id: str, window: Window, filters: Filters = EVERYTHING) -> Figures:
        """Every figure of the window, summed over agents, steps and models."""
        summed = _Sums()
        for row in self._step_rows(tenant_id, plan(window.start, window.end), filters):
            summed.add(row)
        return summed.figures()

    def breakdown(
        self, tenant_id: str, window: Window, by: Sequence[Dimension], filters: Filters = EVERYTHING
    ) -> list[Group]:
        """The window's figures per combination of ``by`` (e.g. ``("step", "model")``), largest first."""
        [groups] = self.breakdowns(tenant_id, window, [by], filters)
        return groups

    def breakdowns(
        self, tenant_id: str, window: Window, bys: Sequence[Sequence[Dimension]], filters: Filters = EVERYTHING
    ) -> list[list[Group]]:
        """``breakdown`` for each of ``bys``, in order, from one read of the window's rows."""
        rows = self._step_rows(tenant_id, plan(window.start, window.end), filters)
        return [_groups(rows, by) for by in bys]

    def series(
        self, tenant_id: str, window: Window, by: Dimension | None = None, filters: Filters = EVERYTHING
    ) -> list[Point]:
        """Figures per time bucket (minutes, hours or days, whichever gives a readable number of points),
        per value of ``by`` when given."""
        [points] = self.series_by(tenant_id, window, [by], filters)
        return points

    def series_by(
        self,
        tenant_id: str,
        window: Window,
        bys: Sequence[Dimension | None],
        filters: Filters = EVERYTHING,
    ) -> list[list[Point]]:
        """``series`` for each of ``bys``, in order, from one read of the window's rows (a page drawing the
        same figures split several ways reads them once)."""
        rows = self._step_rows(tenant_id, [_display_segment(window)], filters)
        return [_points(rows, by) for by in bys]

    def _step_rows(self, tenant_id: str, segments: Iterable[Segment], filters: Filters) -> list[Any]:
        histograms = ("execution_latency", "attempt_latency", "first_chunk_latency")
        columns = [c for c in step_stats.c if c.name not in histograms]
        query = select(*columns, *(cast(step_stats.c[name], Text).label(name) for name in histograms)).where(
            step_stats.c.tenant_id == tenant_id, _in_segments(step_stats, segments), *_kept(step_stats, filters)
        )
        with self._reading(tenant_id) as connection:
            return list(connection.execute(query))

    # --- errors ---------------------------------------------------------------------------------------------

    def error_series(
        self,
        tenant_id: str,
        window: Window,
        by: ErrorDimension = "error_type",
        scope: str = "attempt",
        filters: Filters = EVERYTHING,
    ) -> list[ErrorPoint]:
        """Failures per time bucket and value of ``by`` (attempt failures, or failed executions)."""
        [points] = self.error_series_by(tenant_id, window, [by], scope, filters)
        return points

    def error_series_by(
        self,
        tenant_id: str,
        window: Window,
        bys: Sequence[ErrorDimension],
        scope: str = "attempt",
        filters: Filters = EVERYTHING,
    ) -> list[list[ErrorPoint]]:
        """``error_series`` for each of ``bys``, in order, from one query grouped by all of them."""
        columns = [error_stats.c[by] for by in dict.fromkeys(bys)]
        query = (
            select(error_stats.c.bucket_start, *columns, func.sum(error_stats.c.count).label("failures"))
            .where(error_stats.c.tenant_id == tenant_id, error_stats.c.scope == scope)
            .where(_in_segments(error_stats, [_display_segment(window)]), *_kept(error_stats, filters))
            .group_by(error_stats.c.bucket_start, *columns)
        )
        with self._reading(tenant_id) as connection:
            rows = list(connection.execute(query))
        found: list[list[ErrorPoint]] = []
        for by in bys:
            counts: Counter[tuple[datetime, str]] = Counter()
            for row in rows:
                counts[as_utc(row.bucket_start), getattr(row, by)] += int(row.failures)
            found.append([ErrorPoint(start, group, n) for (start, group), n in sorted(counts.items())])
        return found

    def error_counts(
        self, tenant_id: str, window: Window, scope: str = "attempt", filters: Filters = EVERYTHING
    ) -> list[ErrorCount]:
        """Failures of the window per error type, provider and model, most frequent first."""
        total = func.sum(error_stats.c.count)
        query = (
            select(error_stats.c.error_type, error_stats.c.provider, error_stats.c.model, total)
            .where(error_stats.c.tenant_id == tenant_id, error_stats.c.scope == scope)
            .where(_in_segments(error_stats, plan(window.start, window.end)), *_kept(error_stats, filters))
            .group_by(error_stats.c.error_type, error_stats.c.provider, error_stats.c.model)
            .order_by(total.desc(), error_stats.c.error_type)
        )
        with self._reading(tenant_id) as connection:
            return [ErrorCount(e, p, m, int(n)) for e, p, m, n in connection.execute(query)]

    def failed_attempts(
        self, tenant_id: str, window: Window, limit: int = 50, filters: Filters = EVERYTHING
    ) -> list[FailedAttempt]:
        """The latest failed attempts of the window, newest first (messages as recorded: scrubbed)."""
        table = failed_attempts
        query = (
            select(table)
            .where(table.c.tenant_id == tenant_id, *_kept(table, filters))
            .where(table.c.occurred_at >= window.start, table.c.occurred_at < window.end)
            .order_by(table.c.occurred_at.desc())
            .limit(limit)
        )
        with self._reading(tenant_id) as connection:
            return [
                FailedAttempt(
                    occurred_at=as_utc(row.occurred_at),
                    session_id=row.session_id,
                    agent_id=row.agent_id,
                    step=row.step,
                    model=row.model,
                    provider=row.provider,
                    attempt=row.attempt,
                    error_type=row.error_type,
                    status_code=row.status_code,
                    message=row.message,
                    next_action=row.next_action,
                    execution_id=row.stream_id,
                    trace_id=row.trace_id,
                )
                for row in connection.execute(query)
            ]

    # --- fallbacks ------------------------------------------------------------------------------------------

    def fallback_edges(self, tenant_id: str, window: Window, filters: Filters = EVERYTHING) -> list[FallbackEdge]:
        """Fallbacks of the window as ``from -> to`` edges with reasons, most frequent first. A model (or
        provider) filter keeps the fallbacks from or to one of its models: either end of the edge."""
        table = fallback_stats
        fallbacks, succeeded = func.sum(table.c.fallbacks), func.sum(table.c.succeeded_after)
        query = (
            select(table.c.from_model, table.c.to_model, table.c.reason, fallbacks, succeeded)
            .where(table.c.tenant_id == tenant_id, _in_segments(table, plan(window.start, window.end)))
            .where(*_kept_fallbacks(filters))
            .group_by(table.c.from_model, table.c.to_model, table.c.reason)
            .order_by(fallbacks.desc(), table.c.from_model, table.c.to_model, table.c.reason)
        )
        with self._reading(tenant_id) as connection:
            return [FallbackEdge(f, t, r, int(n), int(s)) for f, t, r, n, s in connection.execute(query)]

    # --- tool calls -----------------------------------------------------------------------------------------

    def tool_calls(
        self,
        tenant_id: str,
        window: Window,
        by: Sequence[ToolDimension] = ("tool_name", "outcome", "step"),
        filters: Filters = EVERYTHING,
    ) -> list[ToolCallGroup]:
        """Tools' executions that ended in the window per combination of ``by``, most calls first. They are
        recorded per agent and step only: ``filters`` naming a model or provider raise ``ValueError``."""
        groups: dict[tuple[str, ...], list[Any]] = {}
        for row in self._tool_rows(tenant_id, plan(window.start, window.end), filters):
            groups.setdefault(tuple(getattr(row, name) for name in by), []).append(row)
        found = [_tool_group(key, rows) for key, rows in groups.items()]
        return sorted(found, key=lambda group: (-group.calls, group.key))

    def tool_call_series(
        self, tenant_id: str, window: Window, by: ToolDimension | None = "outcome", filters: Filters = EVERYTHING
    ) -> list[ToolCallPoint]:
        """Tools' executions that ended, per time bucket (the grain ``series`` draws) and value of ``by``
        (``filters`` as for ``tool_calls``)."""
        points: dict[tuple[datetime, str], list[int]] = {}
        for row in self._tool_rows(tenant_id, [_display_segment(window)], filters):
            counts = points.setdefault((as_utc(row.bucket_start), getattr(row, by) if by else ""), [0, 0])
            counts[0] += row.calls
            counts[1] += row.calls if row.outcome == "failed" else 0
        return [
            ToolCallPoint(start, group, calls, failed) for (start, group), (calls, failed) in sorted(points.items())
        ]

    def _tool_rows(self, tenant_id: str, segments: Iterable[Segment], filters: Filters) -> list[Any]:
        if filters.names_a_model:
            raise ValueError(
                "tool calls are recorded per agent and step, not per model: a model or provider filter cannot "
                "apply to them (pass filters.without_models())"
            )
        columns = [c for c in tool_stats.c if c.name != "latency"]
        query = select(*columns, cast(tool_stats.c.latency, Text).label("latency")).where(
            tool_stats.c.tenant_id == tenant_id, _in_segments(tool_stats, segments), *_kept(tool_stats, filters)
        )
        with self._reading(tenant_id) as connection:
            return list(connection.execute(query))

    # --- sessions -------------------------------------------------------------------------------------------

    def sessions(
        self,
        tenant_id: str,
        *,
        window: Window | None = None,
        search: str | None = None,
        limit: int = 50,
        failed_only: bool = False,
    ) -> list[SessionSummary]:
        """Sessions seen last first; ``search`` matches session ids containing it; ``failed_only`` keeps
        those with at least one failed execution."""
        conditions = [sessions.c.tenant_id == tenant_id, *([sessions.c.failed > 0] if failed_only else [])]
        query = sessions_seen(*conditions, window=window, search=search, limit=limit)
        with self._reading(tenant_id) as connection:
            return [
                SessionSummary(
                    session_id=row.session_id,
                    agent_id=row.agent_id,
                    first_seen=as_utc(row.first_seen),
                    last_seen=as_utc(row.last_seen),
                    executions=row.executions,
                    succeeded=row.succeeded,
                    failed=row.failed,
                    fallback_executions=row.fallback_executions,
                    attempts=row.attempts,
                    attempt_failures=row.attempt_failures,
                )
                for row in connection.execute(query)
            ]


def _tenants_query() -> Select[Any]:
    """Every tenant of ``llm_ledger_step_stats``, one probe of its primary key (which leads with the tenant)
    per tenant: the next tenant after the last found, until there is none (a loose index scan, as a
    recursive query). A ``DISTINCT`` reads every row of the table, a gigabyte on a year's ledger, on every
    page the dashboard draws."""
    tenant = step_stats.c.tenant_id
    found = select(func.min(tenant).label("tenant_id")).cte("tenants", recursive=True)
    following = select(func.min(tenant)).where(tenant > found.c.tenant_id).scalar_subquery()
    tenants = found.union_all(select(following).where(found.c.tenant_id.is_not(None)))
    return select(tenants.c.tenant_id).where(tenants.c.tenant_id.is_not(None))


_TENANTS = _tenants_query()


def sessions_seen(
    *conditions: ColumnElement[bool], window: Window | None, search: str | None, limit: int
) -> Select[Any]:
    """The sessions meeting ``conditions``, seen last first: in the window when given, ``search`` matching
    ids containing it as written (its ``%`` and ``_`` escaped, no wildcards)."""
    query = select(sessions).where(*conditions)
    if window is not None:
        query = query.where(sessions.c.last_seen >= window.start, sessions.c.first_seen < window.end)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(sessions.c.session_id.like(f"%{escaped}%", escape="\\"))
    return query.order_by(sessions.c.last_seen.desc(), sessions.c.session_id).limit(limit)


MAX_DISPLAY_BUCKETS = 2_000
"""The display grains give at most ~1,440 buckets for windows up to years; wider custom windows get none."""


def display_buckets(window: Window) -> list[datetime]:
    """The start of every bucket a time series over ``window`` is drawn in (``series`` and the other
    ``*_series`` give points only for buckets with data): what a chart needs to show an idle bucket as a
    zero or a gap rather than draw across it. Empty past ``MAX_DISPLAY_BUCKETS``."""
    segment = _display_segment(window)
    step = timedelta(seconds=segment.grain)
    if (segment.end - segment.start) / step > MAX_DISPLAY_BUCKETS:
        return []  # a custom window over centuries: drawn from the buckets with data only
    buckets, moment = [], segment.start
    while moment < segment.end:
        buckets.append(moment)
        moment += step
    return buckets


def _display_segment(window: Window) -> Segment:
    """The rows a time series over the window is drawn from: its display grain, from the bucket holding
    its start."""
    grain = display_grain(window.start, window.end)
    return Segment(grain, floor(window.start, grain), window.end)


def _in_segments(table: Any, segments: Iterable[Segment]) -> Any:
    conditions = [
        and_(
            table.c.grain_seconds == segment.grain,
            table.c.bucket_start >= segment.start,
            table.c.bucket_start < segment.end,
        )
        for segment in segments
    ]
    return or_(*conditions) if conditions else false()


def _kept(table: Any, filters: Filters) -> list[ColumnElement[bool]]:
    """The conditions that keep the rows of ``table`` the filters choose, on its own columns."""
    return [table.c[dimension].in_(values) for dimension, values in filters.chosen().items()]


def kept_agents_and_steps(table: Any, filters: Filters) -> list[ColumnElement[bool]]:
    """``_kept`` for the filters' agents and steps alone: what a table whose models are not one column
    (a fallback has two) keeps by its own columns."""
    return _kept(table, filters.without_models())


def kept_fallback_ends(
    from_model: ColumnElement[str], to_model: ColumnElement[str], filters: Filters
) -> list[ColumnElement[bool]]:
    """The conditions that keep a fallback the filters' models and providers choose: one from or to a
    chosen model, or from or to a model counted under a chosen provider (``provider_is_one_of``, as SQL on
    the model string)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.models:
        conditions.append(or_(from_model.in_(filters.models), to_model.in_(filters.models)))
    if filters.providers:
        conditions.append(
            or_(provider_is_one_of(from_model, filters.providers), provider_is_one_of(to_model, filters.providers))
        )
    return conditions


def _kept_fallbacks(filters: Filters) -> list[ColumnElement[bool]]:
    """``_kept`` for the fallback edges, which have a model at each end and no provider."""
    table = fallback_stats
    return [
        *kept_agents_and_steps(table, filters),
        *kept_fallback_ends(table.c.from_model, table.c.to_model, filters),
    ]


class _Sums:
    """``llm_ledger_step_stats`` rows summed into ``Figures``: the stored histograms are merged as read
    (bucket keys left as text) and turned into ``Figures``' integer buckets once, at the end."""

    __slots__ = ("attempt_latency", "execution_latency", "first_chunk_latency", "totals")

    def __init__(self) -> None:
        self.totals = Figures()
        self.execution_latency: dict[str, int] = {}
        self.attempt_latency: dict[str, int] = {}
        self.first_chunk_latency: dict[str, int] = {}

    def add(self, row: Any) -> None:
        totals = self.totals
        totals.executions += row.executions
        totals.succeeded += row.succeeded
        totals.failed += row.failed
        totals.fallback_executions += row.fallback_executions
        totals.attempts += row.attempts
        totals.attempt_failures += row.attempt_failures
        totals.input_tokens += row.input_tokens
        totals.output_tokens += row.output_tokens
        if row.cost_usd is not None:
            totals.cost_usd = (totals.cost_usd or 0.0) + row.cost_usd
        totals.execution_latency_ms_sum += row.execution_latency_ms_sum
        totals.attempt_latency_ms_sum += row.attempt_latency_ms_sum
        _merge_stored(self.execution_latency, row.execution_latency)
        _merge_stored(self.attempt_latency, row.attempt_latency)
        totals.first_chunk_ms_sum += row.first_chunk_ms_sum
        _merge_stored(self.first_chunk_latency, row.first_chunk_latency)

    def figures(self) -> Figures:
        totals = self.totals
        totals.execution_latency = {int(b): n for b, n in self.execution_latency.items()}
        totals.attempt_latency = {int(b): n for b, n in self.attempt_latency.items()}
        totals.first_chunk_latency = {int(b): n for b, n in self.first_chunk_latency.items()}
        return totals


def _sums_by(rows: Iterable[Any], key: Callable[[Any], _Key]) -> dict[_Key, _Sums]:
    """The rows summed per ``key(row)``."""
    sums: dict[_Key, _Sums] = {}
    for row in rows:
        summed = sums.get(k := key(row))
        if summed is None:
            summed = sums[k] = _Sums()
        summed.add(row)
    return sums


def _points(rows: Iterable[Any], by: Dimension | None) -> list[Point]:
    """The rows' figures per time bucket and value of ``by``, in time order."""
    points = _sums_by(rows, lambda row: (as_utc(row.bucket_start), getattr(row, by) if by else ""))
    return [Point(start, group, summed.figures()) for (start, group), summed in sorted(points.items())]


def _groups(rows: Iterable[Any], by: Sequence[Dimension]) -> list[Group]:
    """The rows' figures per combination of ``by``, largest first."""
    groups = _sums_by(rows, lambda row: tuple(getattr(row, name) for name in by))
    return sorted((Group(k, s.figures()) for k, s in groups.items()), key=lambda g: (-g.figures.executions, g.key))


def _tool_group(key: tuple[str, ...], rows: Sequence[Any]) -> ToolCallGroup:
    latency: dict[str, int] = {}
    for row in rows:
        _merge_stored(latency, row.latency)
    return ToolCallGroup(
        key=key,
        calls=sum(row.calls for row in rows),
        failed=sum(row.calls for row in rows if row.outcome == "failed"),
        latency_ms_sum=sum(row.latency_ms_sum for row in rows),
        latency={int(bucket): n for bucket, n in latency.items()},
    )


def _merge_stored(total: dict[str, int], stored: str | None) -> None:
    if stored:
        get = total.get
        for bucket, n in orjson.loads(stored).items():
            total[bucket] = get(bucket, 0) + n
