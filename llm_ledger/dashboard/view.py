"""The view every page of the dashboard queries: the read models' figures (``projections.queries``) and,
read in the same tenant-scoped transactions, what the audit has of the tenant (``audit.timeline``: one
session's events as stored, each stream checked; ``audit.results``: what the last verify run recorded).
The dashboard is where both meet: projections and audit do not import each other."""

from __future__ import annotations

from llm_ledger.audit import results, timeline
from llm_ledger.audit.results import AuditFinding, TenantAudit
from llm_ledger.audit.timeline import ExecutionView, TimelineItem
from llm_ledger.projections.queries import LedgerView


class DashboardView(LedgerView):
    """A ``LedgerView`` (optionally bound to one tenant) that also answers the Sessions and Audit pages."""

    def session_timeline(self, tenant_id: str, session_id: str) -> list[ExecutionView]:
        """The executions of one session, each with what the check of its stream found
        (``audit.timeline.session_timeline``)."""
        with self._reading(tenant_id) as connection:
            return timeline.session_timeline(connection, tenant_id, session_id)

    def session_activity(self, tenant_id: str, session_id: str) -> list[TimelineItem]:
        """The executions and tool executions of one session in time order, each tool execution after the
        round trip that asked for it (``audit.timeline.session_activity``)."""
        with self._reading(tenant_id) as connection:
            return timeline.session_activity(connection, tenant_id, session_id)

    def last_audit(self, tenant_id: str) -> TenantAudit | None:
        """The tenant's result in the latest verify run that checked it; ``None`` before the first."""
        with self._reading(tenant_id) as connection:
            return results.last_audit(connection, tenant_id)

    def audit_findings(self, tenant_id: str, run_id: str, limit: int = 500) -> list[AuditFinding]:
        """The run's findings for the tenant, broken first (``audit.results.run_findings``)."""
        with self._reading(tenant_id) as connection:
            return results.run_findings(connection, tenant_id, run_id, limit)
