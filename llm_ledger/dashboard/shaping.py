"""Query results shaped for the screen: metric tiles, chart rows and table rows. Pure functions, so what
a page shows is tested without Streamlit; the pages only hand these to ``st.*``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from llm_ledger.audit.results import AuditFinding, TenantAudit
from llm_ledger.audit.timeline import ExecutionView, TimelineItem, ToolCallView
from llm_ledger.dashboard.state import shown
from llm_ledger.projections.queries import (
    Dimension,
    ErrorCount,
    ErrorPoint,
    FailedAttempt,
    FallbackEdge,
    Figures,
    Filters,
    Group,
    Point,
    SessionSummary,
    ToolCallGroup,
    ToolCallPoint,
)
from llm_ledger.store.content_keys import OpenedText

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Links:
    """Where a table's link cells lead: a trace (``None`` when not traced), a session's page, an
    execution's page (of a session, when known)."""

    trace: Callable[[str | None], str | None]
    session: Callable[[str], str]
    execution: Callable[[str, str | None], str]


DeltaColor = Literal["normal", "inverse", "off"]
NONE = "—"
PERCENTILE_NAMES = ("p50", "p95", "p99")
FILTER_NOUNS: dict[Dimension, tuple[str, str]] = {
    "agent_id": ("agent", "agents"),
    "step": ("step", "steps"),
    "model": ("model", "models"),
    "provider": ("provider", "providers"),
}


@dataclass(frozen=True, slots=True)
class Metric:
    """One tile of the overview: ``delta`` is the change against the previous window, as text."""

    label: str
    value: str
    delta: str | None
    delta_color: DeltaColor
    help: str


# --- formatting -----------------------------------------------------------------------------------------


def percent(rate: float | None) -> str:
    return NONE if rate is None else f"{rate * 100:.1f}%"


def milliseconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


_MARKDOWN_SPECIAL = str.maketrans({character: f"\\{character}" for character in "\\`*_{}[]()#+!|<>~$:"})


def literal(text: str) -> str:
    """``text`` escaped for Streamlit's markdown, so that it shows as written (a tenant id or a link's
    value can hold ``**``, ``[...](...)``, ``:red[...]`` or ``$``)."""
    return text.translate(_MARKDOWN_SPECIAL)


def filter_summary(filters: Filters) -> str | None:
    """The chosen filters in a line (``agent support · steps a, b``), each value as ``shown`` quotes it;
    ``None`` when none is chosen."""
    parts = [
        f"{FILTER_NOUNS[dimension][len(values) > 1]} {', '.join(shown(value) for value in values)}"
        for dimension, values in filters.chosen().items()
    ]
    return " · ".join(parts) or None


def unmatched_filters(chosen: Filters, present: Filters, tenant: str) -> list[str]:
    """A message (plain text) for each filter holding values that ``present`` (the values with figures in
    the window) lacks, naming them: a value from a link that matches nothing must not pass for one that
    was applied."""
    offered = present.chosen()
    messages: list[str] = []
    for dimension, values in chosen.chosen().items():
        missing = [value for value in values if value not in offered.get(dimension, ())]
        if not missing:
            continue
        noun, nouns = FILTER_NOUNS[dimension]
        several = len(missing) > 1
        messages.append(
            f"The {noun} filter holds {', '.join(shown(value) for value in missing)}, but tenant {shown(tenant)} "
            f"has no executions of {'these ' + nouns if several else 'that ' + noun} in this window: nothing is "
            f"counted for {'them' if several else 'it'}."
        )
    return messages


def iso(moment: datetime) -> str:
    """Timestamps for Vega-Lite, which parses ISO 8601 with its zone."""
    return moment.isoformat()


def short_id(identifier: str) -> str:
    return identifier[-12:]


def time_ago(moment: datetime, now: datetime) -> str:
    """How long before ``now``, in the largest unit that reads well; the date itself past a week."""
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3_600:
        return f"{seconds // 60} min ago"
    if seconds < 86_400:
        return f"{seconds // 3_600} h ago"
    if seconds < 7 * 86_400:
        return f"{seconds // 86_400} d ago"
    return f"on {moment:%Y-%m-%d %H:%M} UTC"


def duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _signed(value: float, unit: str, digits: int) -> str:
    return f"{value:+.{digits}f}{unit}"


def _count_delta(current: int, previous: int) -> str:
    return f"{current - previous:+d}"


def _rate_delta(current: float | None, previous: float | None) -> str | None:
    if current is None or previous is None:
        return None
    return _signed((current - previous) * 100, " pp", 1)


def _latency_delta(current: float | None, previous: float | None) -> str | None:
    if current is None or previous is None:
        return None
    return _signed(current - previous, " ms", 1 if abs(current - previous) < 10 else 0)


# --- overview -------------------------------------------------------------------------------------------


def overview_metrics(current: Figures, previous: Figures) -> list[Metric]:
    """Executions, error rate, fallback rate and execution latency percentiles, each with its change."""
    since = "against the previous window of the same length"
    metrics = [
        Metric(
            "Executions",
            f"{current.executions:,}",
            _count_delta(current.executions, previous.executions),
            "off",
            f"Executions that ended in the window; change {since}.",
        ),
        Metric(
            "Error rate",
            percent(current.error_rate),
            _rate_delta(current.error_rate, previous.error_rate),
            "inverse",
            f"Failed executions / executions (after retries and fallbacks); change in percentage points {since}.",
        ),
        Metric(
            "Fallback rate",
            percent(current.fallback_rate),
            _rate_delta(current.fallback_rate, previous.fallback_rate),
            "inverse",
            f"Executions that fell back to another model / executions; change {since}.",
        ),
    ]
    for name, now, before in zip(
        PERCENTILE_NAMES, current.latency_percentiles(), previous.latency_percentiles(), strict=True
    ):
        metrics.append(
            Metric(
                f"{name} latency",
                milliseconds(now),
                _latency_delta(now, before),
                "inverse",
                f"Execution latency (all attempts included), {name}, within 2%; change {since}.",
            )
        )
    return metrics


def activity_rows(points: Iterable[Point], buckets: Sequence[datetime]) -> list[Row]:
    """Executions, failures and fallbacks per time bucket, one row per bucket and figure: an idle bucket
    (``buckets`` are every bucket of the window) is a zero, not a line drawn across it."""
    by_bucket = {point.bucket_start: point.figures for point in points}
    rows: list[Row] = []
    for bucket in _every_bucket(buckets, by_bucket):
        figures = by_bucket.get(bucket)
        for series, count in (
            ("executions", figures.executions if figures else 0),
            ("failed", figures.failed if figures else 0),
            ("fell back", figures.fallback_executions if figures else 0),
        ):
            rows.append({"time": iso(bucket), "series": series, "count": count})
    return rows


# --- latency --------------------------------------------------------------------------------------------


def latency_rows(points: Iterable[Point], buckets: Sequence[datetime]) -> list[Row]:
    """Execution latency percentiles per time bucket and group; a bucket in which the group ran nothing is
    a gap (``latency_ms`` None), not a line drawn across it."""
    by_key = {(point.bucket_start, point.group): point.figures for point in points}
    rows: list[Row] = []
    every = _every_bucket(buckets, (key[0] for key in by_key))
    for group in _groups(key[1] for key in by_key):
        for bucket in every:
            figures = by_key.get((bucket, group))
            values = figures.latency_percentiles() if figures else (None,) * len(PERCENTILE_NAMES)
            for name, value in zip(PERCENTILE_NAMES, values, strict=True):
                rows.append({"time": iso(bucket), "group": group or NONE, "percentile": name, "latency_ms": value})
    return rows


def _groups(groups: Iterable[str]) -> list[str]:
    return sorted(set(groups))


def _every_bucket(buckets: Sequence[datetime], with_data: Iterable[datetime]) -> Sequence[datetime]:
    """``buckets``, or where the window had too many to list (``display_buckets``), those with data."""
    return buckets or sorted(set(with_data))


def step_model_rows(groups: Iterable[Group]) -> list[Row]:
    """The steps x models table: one row per (step, model) with its figures."""
    rows: list[Row] = []
    for group in groups:
        step, model = group.key
        figures = group.figures
        p50, p95, p99 = figures.latency_percentiles()
        rows.append(
            {
                "step": step or NONE,
                "model": model or NONE,
                "executions": figures.executions,
                "p50 ms": _rounded(p50),
                "p95 ms": _rounded(p95),
                "p99 ms": _rounded(p99),
                "mean ms": _rounded(figures.mean_latency_ms),
                "error rate": percent(figures.error_rate),
                "attempts": figures.attempts,
                "attempt failure rate": percent(figures.attempt_failure_rate),
            }
        )
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- errors ---------------------------------------------------------------------------------------------


def error_rate_rows(
    failures: Iterable[ErrorPoint], attempts: Iterable[Point], buckets: Sequence[datetime]
) -> list[Row]:
    """Attempt failures / attempts per time bucket and group that failed in the window: 0 in a bucket with
    attempts and none of its failures, a gap (``rate`` None) in one without attempts.

    ``attempts`` is either split by the same dimension as ``failures`` (provider, model: each group's own
    attempts are the denominator) or not split at all (error types: every attempt of the bucket is).
    """
    per_group: Counter[tuple[datetime, str]] = Counter()
    per_bucket: Counter[datetime] = Counter()
    for point in attempts:
        per_group[point.bucket_start, point.group] += point.figures.attempts
        per_bucket[point.bucket_start] += point.figures.attempts
    split = any(group for _, group in per_group)
    failed: Counter[tuple[datetime, str]] = Counter()
    for failure in failures:
        failed[failure.bucket_start, failure.group] += failure.count
    rows: list[Row] = []
    every = _every_bucket(buckets, (key[0] for key in failed))
    for group in _groups(key[1] for key in failed):
        for bucket in every:
            total = per_group[bucket, group] if split else per_bucket[bucket]
            count = failed[bucket, group]
            rows.append(
                {
                    "time": iso(bucket),
                    "group": group or NONE,
                    "failures": count,
                    "attempts": total,
                    "rate": count / total if total else None,
                }
            )
    return rows


def error_count_rows(counts: Iterable[ErrorCount], attempts: int) -> list[Row]:
    return [
        {
            "error type": count.error_type,
            "provider": count.provider or NONE,
            "model": count.model or NONE,
            "failures": count.count,
            "share of attempts": percent(count.count / attempts if attempts else None),
        }
        for count in counts
    ]


def failed_attempt_rows(failed: Iterable[FailedAttempt], links: Links) -> list[Row]:
    """The latest failed attempts, each linked to its session (when it has one) and its execution."""
    return [
        {
            "time": attempt.occurred_at,
            "error type": attempt.error_type,
            "status": attempt.status_code,
            "message": attempt.message,
            "model": attempt.model,
            "attempt": attempt.attempt,
            "next action": attempt.next_action,
            "step": attempt.step,
            "agent": attempt.agent_id,
            "session": links.session(attempt.session_id) if attempt.session_id else None,
            "execution": links.execution(attempt.execution_id, attempt.session_id),
        }
        for attempt in failed
    ]


# --- fallbacks ------------------------------------------------------------------------------------------


def fallback_rate_rows(points: Iterable[Point], buckets: Sequence[datetime]) -> list[Row]:
    """The share of executions that fell back per bucket; a bucket without executions is a gap."""
    by_bucket = {point.bucket_start: point.figures for point in points}
    rows: list[Row] = []
    for bucket in _every_bucket(buckets, by_bucket):
        figures = by_bucket.get(bucket)
        rows.append(
            {
                "time": iso(bucket),
                "executions": figures.executions if figures else 0,
                "fell back": figures.fallback_executions if figures else 0,
                "rate": figures.fallback_rate if figures else None,
            }
        )
    return rows


def edge_label(edge: FallbackEdge) -> str:
    return f"{edge.from_model} → {edge.to_model}"


def fallback_edge_rows(edges: Iterable[FallbackEdge], example_sessions: Mapping[FallbackEdge, str]) -> list[Row]:
    """One row per edge and reason; ``example_sessions`` holds a link to the latest session showing it."""
    return [
        {
            "from": edge.from_model,
            "to": edge.to_model,
            "reason": edge.reason,
            "fallbacks": edge.fallbacks,
            "succeeded after": edge.succeeded_after,
            "success after fallback": percent(edge.succeeded_after / edge.fallbacks if edge.fallbacks else None),
            "example": example_sessions.get(edge),
        }
        for edge in edges
    ]


def fallback_outcome_rows(edges: Iterable[FallbackEdge]) -> list[Row]:
    """Per edge and reason, how many executions then succeeded and how many did not (a stacked bar)."""
    rows: list[Row] = []
    for edge in edges:
        for outcome, count in (
            ("succeeded after", edge.succeeded_after),
            ("did not succeed", edge.fallbacks - edge.succeeded_after),
        ):
            if count:
                rows.append({"edge": edge_label(edge), "reason": edge.reason, "outcome": outcome, "executions": count})
    return rows


# --- tools ----------------------------------------------------------------------------------------------


def tool_call_rows(groups: Iterable[ToolCallGroup]) -> list[Row]:
    """One row per tool, outcome and step (``LedgerView.tool_calls``' default grouping)."""
    rows: list[Row] = []
    for group in groups:
        tool, outcome, step = group.key
        p50, p95, _ = group.latency_percentiles()
        rows.append(
            {
                "tool": tool,
                "outcome": outcome,
                "step": step or NONE,
                "calls": group.calls,
                "p50 ms": _rounded(p50),
                "p95 ms": _rounded(p95),
            }
        )
    return rows


def tool_series_rows(points: Iterable[ToolCallPoint], buckets: Sequence[datetime]) -> list[Row]:
    """Tool calls over time by outcome (``LedgerView.tool_call_series(by="outcome")``): a count, so an idle
    bucket is a zero."""
    calls: Counter[tuple[datetime, str]] = Counter()
    for point in points:
        calls[point.bucket_start, point.group] += point.calls
    every = _every_bucket(buckets, (key[0] for key in calls))
    return [
        {"time": iso(bucket), "outcome": outcome, "calls": calls[bucket, outcome]}
        for outcome in _groups(key[1] for key in calls)
        for bucket in every
    ]


CONTENT_STATES = {
    "erased": "erased",
    "no key access": "encrypted (no key access)",
    "key missing": "KEY MISSING (no key and no erasure of it: content lost)",
    "altered": "ALTERED (its ciphertext does not open under its key for this event and field: moved or changed)",
}
"""How a captured text that cannot be shown reads: its key was destroyed by an erasure, this login may not
read keys (``llm_ledger_keyholder``), its key is neither stored nor named by any erasure (a loss), or its
ciphertext was moved from another event or field or changed since it was recorded (tampering)."""
LOUD_STATES = frozenset({"key missing", "altered"})
"""The content states that are a fault to look into (shown as errors), not a policy (erased, no access)."""
ERROR_IN_PLAIN = "not encrypted (recorded in full before exception texts were): the message is the text"
"""The error text of a tool execution whose message is the exception's text itself, which no erasure covers."""


def tool_error_text(run: ToolCallView, opened: OpenedText | None) -> str | None:
    """What a tool execution's row shows of the exception's text: the text where this login opened it, why
    not where it could not, and nothing where the capture policy kept none (``hash``, ``none``)."""
    if run.error_in_plain:
        return ERROR_IN_PLAIN
    if opened is None:
        return None
    if opened.state is not None:
        return CONTENT_STATES[opened.state]
    return opened.text


def session_tool_rows(
    items: Iterable[TimelineItem],
    trace_url: Callable[[str | None], str | None],
    error_texts: Mapping[str, OpenedText] | None = None,
) -> list[Row]:
    """The session's tool executions in time order, each after the round trip that asked for it; the
    exception texts as ``error_texts`` has them opened (``DashboardView.opened_tool_errors``)."""
    opened = error_texts or {}
    rows: list[Row] = []
    asked_by: dict[str, int] = {}
    for item in items:
        if isinstance(item, ExecutionView):
            asked_by[item.execution_id] = len(asked_by) + 1
            continue
        rows.append(
            {
                "started": item.started_at,
                "tool": item.tool_name or NONE,
                "outcome": item.outcome,
                "integrity": item.integrity.status,
                "latency ms": _rounded(item.latency_ms),
                "asked by": f"execution #{asked_by[item.execution_id]}" if item.execution_id in asked_by else NONE,
                "step": item.step or NONE,
                "error": item.error_class,
                "message": item.message,
                "error text": tool_error_text(item, opened.get(item.tool_execution_id)),
                "trace": trace_url(item.trace_id),
                "tool call": item.tool_call_id,
            }
        )
    return rows


# --- sessions -------------------------------------------------------------------------------------------


def session_rows(summaries: Iterable[SessionSummary], session_link: Callable[[str], str]) -> list[Row]:
    return [
        {
            "session": summary.session_id,
            "agent": summary.agent_id,
            "first seen": summary.first_seen,
            "last seen": summary.last_seen,
            "executions": summary.executions,
            "failed": summary.failed,
            "fell back": summary.fallback_executions,
            "attempts": summary.attempts,
            "outcome": summary.outcome,
            "link": session_link(summary.session_id),
        }
        for summary in summaries
    ]


def session_choices(recent: Sequence[SessionSummary], chosen: str | None) -> list[str]:
    """The sessions to pick from: the one in the URL first (it may be older than the recent ones)."""
    ids = [summary.session_id for summary in recent]
    if chosen and chosen not in ids:
        ids.insert(0, chosen)
    return ids


def session_labels(
    recent: Iterable[SessionSummary], chosen: str, chosen_executions: Iterable[ExecutionView]
) -> Callable[[str], str]:
    """How the picker names each session: those with failed executions marked, and how many failed; the
    chosen one counted from its own executions (it may not be among the recent ones)."""
    failed = {summary.session_id: summary.failed for summary in recent if summary.failed}
    failed.pop(chosen, None)
    if chosen_failed := sum(execution.outcome == "failed" for execution in chosen_executions):
        failed[chosen] = chosen_failed

    def label(session: str) -> str:
        return f"🔴 {session} · {failed[session]} failed" if session in failed else session

    return label


def execution_rows(executions: Iterable[ExecutionView], session_id: str, links: Links) -> list[Row]:
    """One row per execution of the session ``session_id``, numbered as in the timeline (``#``), with the
    turn, why it failed (from its ``ExecutionFailed``: e.g. all models failed, and what each answered) and a
    link to its page."""
    return [
        {
            "#": number,
            "started": execution.started_at,
            "turn": execution.turn_id or NONE,
            "step": execution.step or NONE,
            "model": execution.model or NONE,
            "outcome": execution.outcome,
            "integrity": execution.integrity.status,
            "error type": execution.error_type,
            "message": execution.message,
            "latency ms": _rounded(execution.latency_ms),
            "attempts": len(execution.attempts),
            "fell back": execution.fallback_used,
            "trace": links.trace(execution.trace_id),
            "events": links.execution(execution.execution_id, session_id),
            "execution": execution.execution_id,
            "checked": execution.integrity.summary,
        }
        for number, execution in enumerate(executions, start=1)
    ]


def attempt_rows(executions: Iterable[ExecutionView]) -> list[Row]:
    """One row per attempt, under the number (``#``) and id of its execution in the executions table."""
    return [
        {
            "#": number,
            "execution": execution.execution_id,
            "step": execution.step or NONE,
            "attempt": attempt.attempt,
            "retry": attempt.retry,
            "model": attempt.model,
            "provider": attempt.provider,
            "started": attempt.started_at,
            "outcome": attempt.outcome,
            "latency ms": _rounded(attempt.latency_ms),
            "error type": attempt.error_type,
            "message": attempt.message,
            "next action": attempt.next_action,
        }
        for number, execution in enumerate(executions, start=1)
        for attempt in execution.attempts
    ]


def timeline_rows(executions: Iterable[ExecutionView]) -> list[Row]:
    """Bars of a waterfall: one lane per execution, in time order, holding the execution from its start
    and each attempt at its offset from that start (milliseconds).

    Executions last milliseconds to seconds while a session spans minutes or hours: on a shared time axis
    every bar would be a hairline, so each lane has its own origin and carries its start time in its name.
    An execution or attempt without a latency yet (in flight, or its process died) has ``end == start``.
    """
    rows: list[Row] = []
    for number, execution in enumerate(executions, start=1):
        lane = f"{execution.started_at:%H:%M:%S} #{number} {execution.step or 'execution'}"
        if execution.integrity.status != "intact":
            lane = f"{lane} ({execution.integrity.status.upper()})"
        origin = execution.started_at
        rows.append(_bar(lane, "execution", 0.0, execution.latency_ms, execution.outcome, execution.model, "execution"))
        for attempt in execution.attempts:
            offset = (attempt.started_at - origin) / timedelta(milliseconds=1)
            what = f"attempt {attempt.attempt}" + (f" ({attempt.error_type})" if attempt.error_type else "")
            rows.append(_bar(lane, "attempt", offset, attempt.latency_ms, attempt.outcome, attempt.model, what))
    return rows


def _bar(
    lane: str, kind: str, offset_ms: float, latency_ms: float | None, outcome: str, model: str | None, what: str
) -> Row:
    return {
        "lane": lane,
        "kind": kind,
        "what": what,
        "start_ms": round(offset_ms, 3),
        "end_ms": round(offset_ms + (latency_ms or 0.0), 3),
        "outcome": outcome,
        "model": model or NONE,
        "latency_ms": latency_ms,
    }


# --- audit ----------------------------------------------------------------------------------------------


def audit_metrics(audit: TenantAudit) -> list[tuple[str, str]]:
    """The tiles of the audit page: what the run checked and found for the tenant."""
    return [
        ("Streams", f"{audit.streams:,}"),
        ("Events", f"{audit.events:,}"),
        ("Seals", f"{audit.seals:,}"),
        ("Broken streams", f"{audit.broken_streams:,}"),
        ("Incomplete", f"{audit.incomplete_streams:,}"),
        ("Unsealed events", f"{audit.unsealed_events:,}"),
    ]


def audit_run_summary(audit: TenantAudit, now: datetime) -> str:
    """When the run was, how long it took and what it covered, in words."""
    tenants = f"tenant {audit.scope_tenant} only" if audit.scope_tenant else "every tenant"
    since = f", streams with events since {audit.since:%Y-%m-%d %H:%M} UTC" if audit.since else ""
    return (
        f"Verified {time_ago(audit.finished_at, now)} ({audit.finished_at:%Y-%m-%d %H:%M:%S} UTC, took "
        f"{duration(audit.duration)}) over {tenants}{since} · run `{audit.run_id}`"
    )


def finding_rows(findings: Iterable[AuditFinding], session_link: Callable[[str], str]) -> list[Row]:
    """One row per finding; ``session`` links to the Sessions page of the stream's session, when the
    stream still has events to show."""
    return [
        {
            "severity": finding.severity,
            "kind": finding.kind,
            "stream": finding.stream_id or NONE,
            "session": session_link(finding.session_id) if finding.session_id else None,
            "position": finding.stream_position,
            "detail": finding.detail,
            "event": finding.event_id or NONE,
            "seal": finding.seal_sequence,
        }
        for finding in findings
    ]
