"""Audit: the integrity status of the tenant's events as the last ``llm-ledger audit verify`` recorded it:
the verdict and what was checked, the last seal, and each finding, broken first, linked to its session."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from llm_ledger.audit.results import TenantAudit
from llm_ledger.dashboard.shaping import audit_metrics, audit_run_summary, finding_rows, time_ago
from llm_ledger.dashboard.source import SEAL_COMMAND, VERIFY_COMMAND
from llm_ledger.dashboard.views import PageContext
from llm_ledger.dashboard.views.common import filter_notice, session_link

SHOWN_FINDINGS = 500


def render(page: PageContext) -> None:
    st.header("Audit")
    st.caption(
        f"Integrity of tenant **{page.tenant}**'s events as `{VERIFY_COMMAND}` last found it: hash chains, "
        "complete streams, sealed ranges"
    )
    filter_notice(page)
    audit = page.view.last_audit(page.tenant)
    if audit is None:
        _never_verified(page)
        return
    _verdict(page, audit)
    st.caption(audit_run_summary(audit, datetime.now(UTC)))
    for column, (label, value) in zip(st.columns(6), audit_metrics(audit), strict=True):
        column.metric(label, value)
    _last_seal(page, audit)
    _findings(page, audit)


def _never_verified(page: PageContext) -> None:
    st.info(f"No `{VERIFY_COMMAND}` run has checked tenant {page.tenant} yet.")
    st.markdown(
        "It checks every stream's hash chain, that no position is missing, that every execution ended, and "
        "that the events of each sealed range are all still there; it records what it found for this page. "
        "Run it against this database, then reload:\n\n"
        f"```\nLLM_LEDGER_DATABASE_URL={page.settings.shown_url} {VERIFY_COMMAND}\n```"
    )


def _verdict(page: PageContext, audit: TenantAudit) -> None:
    if not audit.ok:
        st.error(
            f"Tenant {page.tenant}'s events fail the integrity checks: {audit.findings:,} findings, "
            f"{audit.broken_streams:,} broken streams. Something was changed, removed or inserted after it "
            "was recorded; the findings below name it."
        )
        return
    sealed = ", and every sealed range is complete" if audit.seals else ""
    st.success(f"Intact: every event of tenant {page.tenant} that the run checked is as it was recorded{sealed}.")
    if audit.incomplete_streams:
        st.caption(
            f"{audit.incomplete_streams:,} executions have no terminal event: their process died mid-call "
            "(or was still running). That is recorded as a fact, not as tampering."
        )


def _last_seal(page: PageContext, audit: TenantAudit) -> None:
    st.subheader("Last seal")
    if audit.last_seal_hash is None or audit.last_sealed_at is None:
        st.markdown(
            f"No seal covers tenant {page.tenant}'s events yet. `{SEAL_COMMAND}` seals them (a Merkle root "
            "over each range), so that a deleted or inserted event is detected even by someone who can "
            "disable the database's triggers."
        )
        return
    now = datetime.now(UTC)
    st.markdown(f"Sealed {time_ago(audit.last_sealed_at, now)} ({audit.last_sealed_at:%Y-%m-%d %H:%M:%S} UTC):")
    st.code(audit.last_seal_hash, language=None)
    st.caption(
        "Keep this hash somewhere the database cannot change (a ticket, a log, a signed message): seals "
        "are chained, so it vouches for every sealed event before it."
    )
    if audit.unsealed_events:
        st.caption(f"{audit.unsealed_events:,} events were newer than the last seal; the next seal covers them.")


def _findings(page: PageContext, audit: TenantAudit) -> None:
    st.subheader("Findings")
    if not audit.findings:
        st.markdown("None.")
        return
    findings = page.view.audit_findings(page.tenant, audit.run_id, limit=SHOWN_FINDINGS)
    st.dataframe(
        finding_rows(findings, lambda session_id: session_link(page, session_id)),
        hide_index=True,
        width="stretch",
        column_config={
            "session": st.column_config.LinkColumn("session", display_text="open session"),
            "detail": st.column_config.TextColumn("detail", width="large"),
        },
    )
    if audit.findings > len(findings):
        st.caption(
            f"Showing {len(findings):,} of {audit.findings:,} findings; "
            f"`{VERIFY_COMMAND} --tenant {page.tenant}` lists them all."
        )
