"""What the runs of ``llm-ledger audit verify`` recorded (``runs.record_run``), read back for a tenant: its
result in the latest run that checked it and that run's findings. The caller hands over the connection,
scoped to the tenant (the dashboard's view reads through its tenant-bound store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, case, func, select

from llm_ledger.audit.schema import audit_findings, audit_runs, audit_tenant_results
from llm_ledger.store import as_utc
from llm_ledger.store.schema import events as events_table


@dataclass(frozen=True, slots=True)
class TenantAudit:
    """One tenant's result in the latest ``llm-ledger audit verify`` run that checked it."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    scope_tenant: str | None
    """``None`` when the run checked every tenant."""
    since: datetime | None
    ok: bool
    streams: int
    events: int
    seals: int
    broken_streams: int
    incomplete_streams: int
    unsealed_events: int
    findings: int
    """How many findings the run had for the tenant (more than are stored when there were very many)."""
    last_seal_hash: str | None
    last_sealed_at: datetime | None

    @property
    def duration(self) -> timedelta:
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class AuditFinding:
    severity: str
    """``broken``, ``incomplete`` or ``warning``."""
    kind: str
    stream_id: str | None
    stream_position: int | None
    event_id: str | None
    seal_sequence: int | None
    detail: str
    session_id: str | None
    """The session of the finding's stream, while any of its events is still stored."""


def last_audit(connection: Connection, tenant_id: str) -> TenantAudit | None:
    """The tenant's result in the latest verify run that checked it; ``None`` before the first."""
    runs, results = audit_runs, audit_tenant_results
    query = (
        select(
            runs.c.run_id,
            runs.c.started_at,
            runs.c.finished_at,
            runs.c.scope_tenant,
            runs.c.since,
            results.c.ok,
            results.c.streams,
            results.c.events,
            results.c.seals,
            results.c.broken_streams,
            results.c.incomplete_streams,
            results.c.unsealed_events,
            results.c.findings,
            results.c.last_seal_hash,
            results.c.last_sealed_at,
        )
        .join_from(runs, results, runs.c.run_id == results.c.run_id)
        .where(results.c.tenant_id == tenant_id)
        .order_by(runs.c.finished_at.desc(), runs.c.run_id.desc())
        .limit(1)
    )
    row = connection.execute(query).first()
    if row is None:
        return None
    return TenantAudit(
        run_id=row.run_id,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
        scope_tenant=row.scope_tenant,
        since=as_utc(row.since) if row.since else None,
        ok=bool(row.ok),
        streams=row.streams or 0,
        events=row.events or 0,
        seals=row.seals or 0,
        broken_streams=row.broken_streams or 0,
        incomplete_streams=row.incomplete_streams or 0,
        unsealed_events=row.unsealed_events or 0,
        findings=row.findings or 0,
        last_seal_hash=row.last_seal_hash,
        last_sealed_at=as_utc(row.last_sealed_at) if row.last_sealed_at else None,
    )


def run_findings(connection: Connection, tenant_id: str, run_id: str, limit: int = 500) -> list[AuditFinding]:
    """The run's findings for the tenant: broken first, then incomplete streams, then warnings; each
    with the session of its stream when the stream still has events."""
    table = audit_findings
    severity_order = case({"broken": 0, "incomplete": 1}, value=table.c.severity, else_=2)
    query = (
        select(table)
        .where(table.c.run_id == run_id, table.c.tenant_id == tenant_id)
        .order_by(
            severity_order,
            table.c.stream_id.is_(None),
            table.c.stream_id,
            table.c.stream_position,
            table.c.seal_sequence,
            table.c.kind,
        )
        .limit(limit)
    )
    rows = list(connection.execute(query))
    streams = sorted({row.stream_id for row in rows if row.stream_id})
    sessions_of = _stream_sessions(connection, tenant_id, streams)
    return [
        AuditFinding(
            severity=row.severity,
            kind=row.kind,
            stream_id=row.stream_id,
            stream_position=row.stream_position,
            event_id=row.event_id,
            seal_sequence=row.seal_sequence,
            detail=row.detail,
            session_id=sessions_of.get(row.stream_id) if row.stream_id else None,
        )
        for row in rows
    ]


def _stream_sessions(connection: Connection, tenant_id: str, stream_ids: Sequence[str]) -> dict[str, str]:
    """The session of each stream that still has events with one."""
    if not stream_ids:
        return {}
    table = events_table
    query = (
        select(table.c.stream_id, func.min(table.c.session_id))
        .where(table.c.tenant_id == tenant_id, table.c.stream_id.in_(stream_ids), table.c.session_id.is_not(None))
        .group_by(table.c.stream_id)
    )
    return {stream: session for stream, session in connection.execute(query)}
