"""What a verify found: findings, per-tenant results, the report and its text and JSON forms."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Severity = Literal["broken", "incomplete", "warning"]


def printable(value: object) -> str:
    """``value`` as text that cannot forge a line of a text report nor steer the terminal showing it: what
    is not printable (control characters, line and paragraph separators, bidirectional overrides, ...) and
    the backslash are written as escapes (``\\n``, ``\\x1b``, ``\\u202e``, ``\\\\``), so that two
    different values never look alike. Tenant ids, stream ids and event types are whatever was stored."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escaped(character) for character in text)


_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(character: str) -> str:
    if character in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[character]
    if character.isprintable():
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a verify found: ``broken`` fails the run; ``incomplete`` (a stream with no terminal event,
    its process died mid-call) and ``warning`` do not."""

    tenant_id: str
    kind: str
    severity: Severity
    detail: str
    stream_id: str | None = None
    stream_position: int | None = None
    event_id: str | None = None
    event_type: str | None = None
    seal_sequence: int | None = None

    def __str__(self) -> str:
        where = [f"tenant {printable(self.tenant_id)}" if self.tenant_id else "the ledger"]
        if self.seal_sequence is not None:
            where.append(f"seal {self.seal_sequence}")
        if self.stream_id is not None:
            where.append(f"stream {printable(self.stream_id)}")
        if self.stream_position is not None:
            where.append(f"position {self.stream_position}")
        if self.event_id is not None:
            shown_type = f" ({printable(self.event_type)})" if self.event_type else ""
            where.append(f"event {printable(self.event_id)}{shown_type}")
        return f"{self.severity.upper():10} {self.kind}: {', '.join(where)}: {printable(self.detail)}"


MAX_KEPT_FINDINGS = 10_000
"""Findings a tenant's result keeps in memory (every one is counted): a database whose every event was
changed must not exhaust the verifier."""


@dataclass(slots=True)
class TenantResult:
    """One tenant's figures in a verify."""

    tenant_id: str
    streams: int = 0
    events: int = 0
    seals: int = 0
    unsealed_events: int = 0
    last_seal_hash: str | None = None
    last_seal_sequence: int = 0
    """0: never sealed."""
    last_sealed_at: datetime | None = None
    findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0
    ok: bool = True
    """False once a ``broken`` finding is added (incomplete streams and warnings do not count)."""
    _broken_streams: set[str] = field(default_factory=set)
    _incomplete_streams: set[str] = field(default_factory=set)

    def add(self, finding: Finding) -> None:
        self.finding_count += 1
        if len(self.findings) < MAX_KEPT_FINDINGS:
            self.findings.append(finding)
        if finding.severity == "broken":
            self.ok = False
            if finding.stream_id is not None:
                self._broken_streams.add(finding.stream_id)
        elif finding.severity == "incomplete" and finding.stream_id is not None:
            self._incomplete_streams.add(finding.stream_id)

    def extend(self, later: TenantResult) -> None:
        """Take in what ``later`` (a result of the same tenant, gathered apart) found, after this one's own:
        its streams and events, its findings in their order, its counts of those it did not keep."""
        self.streams += later.streams
        self.events += later.events
        for finding in later.findings:
            self.add(finding)
        self.finding_count += later.finding_count - len(later.findings)
        self.ok = self.ok and later.ok
        self._broken_streams |= later._broken_streams
        self._incomplete_streams |= later._incomplete_streams

    @property
    def broken_streams(self) -> int:
        return len(self._broken_streams)

    @property
    def incomplete_streams(self) -> int:
        """Streams with no terminal event and nothing broken (a stream that lost its sealed terminal event
        is broken, not incomplete)."""
        return len(self._incomplete_streams - self._broken_streams)

    def figures(self) -> dict[str, Any]:
        """The tenant's result as stored in ``llm_ledger_audit_tenant_results`` and reported by ``--json``."""
        return {
            "tenant_id": self.tenant_id,
            "ok": self.ok,
            "streams": self.streams,
            "events": self.events,
            "seals": self.seals,
            "broken_streams": self.broken_streams,
            "incomplete_streams": self.incomplete_streams,
            "unsealed_events": self.unsealed_events,
            "last_seal_hash": self.last_seal_hash,
            "last_sealed_at": self.last_sealed_at,
            "findings": self.finding_count,
        }


@dataclass(slots=True)
class AuditReport:
    """The outcome of ``verify_ledger``; ``ok`` when nothing is broken (incomplete streams do not count)."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    tenant_scope: str | None
    since: datetime | None
    tenants: list[TenantResult]
    outside_findings: list[Finding] = field(default_factory=list)
    """What is wrong with the heads kept outside the database (the witness, verify's state) themselves."""

    @property
    def ok(self) -> bool:
        is_outside_ok = not any(finding.severity == "broken" for finding in self.outside_findings)
        return is_outside_ok and all(tenant.ok for tenant in self.tenants)

    @property
    def findings(self) -> list[Finding]:
        return [*self.outside_findings, *(finding for tenant in self.tenants for finding in tenant.findings)]

    def _total(self, name: str) -> int:
        return sum(int(getattr(tenant, name)) for tenant in self.tenants)

    @property
    def streams(self) -> int:
        return self._total("streams")

    @property
    def events(self) -> int:
        return self._total("events")

    @property
    def seals(self) -> int:
        return self._total("seals")

    @property
    def broken_streams(self) -> int:
        return self._total("broken_streams")

    @property
    def incomplete_streams(self) -> int:
        return self._total("incomplete_streams")

    @property
    def unsealed_events(self) -> int:
        return self._total("unsealed_events")

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def figures(self) -> dict[str, Any]:
        """The run's totals as stored in ``llm_ledger_audit_runs`` and reported by ``--json``."""
        return {
            "ok": self.ok,
            "tenants": len(self.tenants),
            "streams": self.streams,
            "events": self.events,
            "seals": self.seals,
            "broken_streams": self.broken_streams,
            "incomplete_streams": self.incomplete_streams,
            "unsealed_events": self.unsealed_events,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "tenant": self.tenant_scope,
            "since": self.since.isoformat() if self.since else None,
            **self.figures(),
            "duration_seconds": round(self.duration_seconds, 3),
            "tenant_results": [
                {
                    **tenant.figures(),
                    "last_seal_sequence": tenant.last_seal_sequence,
                    "last_sealed_at": tenant.last_sealed_at.isoformat() if tenant.last_sealed_at else None,
                }
                for tenant in self.tenants
            ],
            "findings": [asdict(finding) for finding in self.findings],
        }

    def to_text(self) -> str:
        lines = [str(finding) for finding in self.findings]
        if lines:
            lines.append("")
        for tenant in self.tenants:
            state = "ok" if tenant.ok else "BROKEN"
            seal = (
                f"last seal {printable(tenant.last_seal_hash)} at {tenant.last_sealed_at.isoformat()}"
                if tenant.last_seal_hash and tenant.last_sealed_at
                else "never sealed"
            )
            lines.append(
                f"{printable(tenant.tenant_id)}: {state}; {_count(tenant.streams, 'stream')},"
                f" {_count(tenant.events, 'event')}, {_count(tenant.seals, 'seal')}, {tenant.broken_streams:,} broken,"
                f" {tenant.incomplete_streams:,} incomplete, {tenant.unsealed_events:,} unsealed; {seal}"
            )
        s = self.figures()
        verdict = "OK" if self.ok else "BROKEN"
        lines.append(
            f"{verdict}: {_count(s['tenants'], 'tenant')}, {_count(s['streams'], 'stream')},"
            f" {_count(s['events'], 'event')}, {_count(s['seals'], 'seal')} checked;"
            f" {_count(s['broken_streams'], 'broken stream')}, {s['incomplete_streams']:,} incomplete,"
            f" {_count(s['unsealed_events'], 'unsealed event')};"
            f" {self.duration_seconds:.1f} s (run {self.run_id})"
        )
        if any(tenant.last_seal_hash for tenant in self.tenants):
            lines.append("dropping the newest seals is only detected against heads kept outside this database: verify")
            lines.append("with --witness (the sealer's) and --state (this command's own), or keep the hashes above")
        return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
