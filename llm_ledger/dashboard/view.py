"""The view every page of the dashboard queries: the read models' figures (``projections.queries``) and,
read in the same tenant-scoped transactions, what the audit has of the tenant (``audit.timeline``: one
session's events as stored, each stream checked; ``audit.results``: what the last verify run recorded),
and the sessions its links drill down to (``projections.drilldown``). The dashboard is where both meet:
projections and audit do not import each other."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from llm_ledger.audit import results, timeline
from llm_ledger.audit.results import AuditFinding, TenantAudit
from llm_ledger.audit.timeline import (
    ExecutionRecord,
    ExecutionView,
    FirstExecution,
    RecordedEvent,
    TimelineItem,
    ToolCallView,
)
from llm_ledger.projections import drilldown
from llm_ledger.projections.queries import EVERYTHING, FallbackEdge, Filters, LedgerView, Window
from llm_ledger.store.content_keys import ContentState, OpenedText, opened, wanted_keys


class DashboardView(LedgerView):
    """A ``LedgerView`` (optionally bound to one tenant) that also answers the Sessions, Execution and Audit
    pages, and names the sessions the Fallbacks page links to."""

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

    def first_execution(self, tenant_id: str, session_id: str) -> FirstExecution | None:
        """The session's first execution to fail, else its first (``audit.timeline.first_execution``)."""
        with self._reading(tenant_id) as connection:
            return timeline.first_execution(connection, tenant_id, session_id)

    def last_audit(self, tenant_id: str) -> TenantAudit | None:
        """The tenant's result in the latest verify run that checked it; ``None`` before the first."""
        with self._reading(tenant_id) as connection:
            return results.last_audit(connection, tenant_id)

    def audit_findings(self, tenant_id: str, run_id: str, limit: int = 500) -> list[AuditFinding]:
        """The run's findings for the tenant, broken first (``audit.results.run_findings``)."""
        with self._reading(tenant_id) as connection:
            return results.run_findings(connection, tenant_id, run_id, limit)

    def execution_record(self, tenant_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution's events, tool executions and check (``audit.timeline.execution_record``); ``None``
        when the tenant has none of that id (a bound view never reads another tenant's)."""
        with self._reading(tenant_id) as connection:
            return timeline.execution_record(connection, tenant_id, execution_id)

    def opened_payloads(
        self, tenant_id: str, stream_id: str, events: Sequence[RecordedEvent]
    ) -> list[tuple[dict[str, Any], dict[str, ContentState]]]:
        """Each event's payload with its captured texts decrypted where this login may read their keys
        (``llm_ledger_keyholder``), and the state of each text it could not open: ``erased`` (an erasure record
        names its key), ``key missing`` (neither stored nor erased: a loss), ``no key access``, or ``altered`` (its
        ciphertext moved or changed: that text only)."""
        self._check_allowed(tenant_id)
        wanted = wanted_keys((event.event_type, event.payload) for event in events)
        lookup = self._store.content_keys(tenant_id, wanted)
        return [opened(event.event_type, event.payload, stream_id, event.event_id, lookup) for event in events]

    def opened_tool_errors(self, tenant_id: str, runs: Iterable[TimelineItem]) -> dict[str, OpenedText]:
        """The exception text of each tool execution among ``runs`` that keeps one (``error_text``), by its
        id: decrypted where this login may read its key, else the state of that key (as
        ``opened_payloads``)."""
        self._check_allowed(tenant_id)
        kept = [
            (run, {"error_text": run.error_text})
            for run in runs
            if isinstance(run, ToolCallView) and run.error_text is not None and run.failed_event_id is not None
        ]
        if not kept:
            return {}
        lookup = self._store.content_keys(tenant_id, wanted_keys(("ToolCallFailed", payload) for _, payload in kept))
        texts: dict[str, OpenedText] = {}
        for run, payload in kept:
            values, states = opened("ToolCallFailed", payload, run.tool_execution_id, str(run.failed_event_id), lookup)
            texts[run.tool_execution_id] = OpenedText(values["error_text"].get("text"), states.get("error_text"))
        return texts

    def fallback_sessions(
        self, tenant_id: str, window: Window, edges: Iterable[FallbackEdge], filters: Filters = EVERYTHING
    ) -> dict[FallbackEdge, str]:
        """The latest session of the window showing each fallback edge, of the fallbacks ``filters`` keep
        (``projections.drilldown.fallback_sessions``)."""
        with self._reading(tenant_id) as connection:
            return drilldown.fallback_sessions(connection, tenant_id, window, edges, filters)
