"""The record of each verify run, which the dashboard's audit view reads (tables of migration 0005)."""

from __future__ import annotations

from sqlalchemy import Engine

from llm_ledger.audit.report import AuditReport
from llm_ledger.audit.roles import scoped_connection
from llm_ledger.audit.schema import audit_findings, audit_runs, audit_tenant_results
from llm_ledger.store.scoping import AUDITOR_ROLE

MAX_STORED_FINDINGS = 1_000
"""Findings stored per tenant and run; ``llm_ledger_audit_tenant_results.findings`` keeps the full count."""


def record_run(engine: Engine, report: AuditReport) -> None:
    """Store the run, its per-tenant results and (at most ``MAX_STORED_FINDINGS`` per tenant) its findings."""
    with scoped_connection(engine, AUDITOR_ROLE) as connection:
        connection.execute(
            audit_runs.insert().values(
                run_id=report.run_id,
                started_at=report.started_at,
                finished_at=report.finished_at,
                scope_tenant=report.tenant_scope,
                since=report.since,
                **report.figures(),
            )
        )
        if report.tenants:
            connection.execute(
                audit_tenant_results.insert(),
                [{"run_id": report.run_id, **tenant.figures()} for tenant in report.tenants],
            )
        # Findings on the witness or the state themselves name no tenant (tenant_id ''), or the entry's.
        kept = [
            *report.outside_findings[:MAX_STORED_FINDINGS],
            *(finding for tenant in report.tenants for finding in tenant.findings[:MAX_STORED_FINDINGS]),
        ]
        rows = [
            {
                "run_id": report.run_id,
                "tenant_id": finding.tenant_id,
                "kind": finding.kind,
                "severity": finding.severity,
                "stream_id": finding.stream_id,
                "stream_position": finding.stream_position,
                "event_id": finding.event_id,
                "seal_sequence": finding.seal_sequence,
                "detail": f"{finding.event_type}: {finding.detail}" if finding.event_type else finding.detail,
            }
            for finding in kept
        ]
        if rows:
            connection.execute(audit_findings.insert(), rows)
