"""The demo's printed output: the summary table, when it happened, one execution's event stream, and
what to run next."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from llm_ledger.demo.summary import Figures, WorkloadSummary
from llm_ledger.events import Event

_COLUMNS = ("executions", "failed", "fell back", "fallbacks", "retries", "p50 ms", "p95 ms")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _row(name: str, figures: Figures, width: int) -> str:
    cells = (
        f"{figures.executions:,}",
        f"{figures.failed:,}",
        f"{figures.fell_back:,}",
        f"{figures.fallbacks:,}",
        f"{figures.retries:,}",
        _ms(figures.p50_ms),
        _ms(figures.p95_ms),
    )
    return f"{name:<{width}}" + "".join(
        f"{cell:>{len(column) + 2}}" for cell, column in zip(cells, _COLUMNS, strict=True)
    )


def summary_table(summary: WorkloadSummary) -> str:
    """Executions, failures, fallbacks, retries and latency percentiles by step, then by tenant."""
    width = max(len(name) for name in [*summary.by_step, *summary.by_tenant, "tenant", "all"]) + 2
    header = "".join(f"{column:>{len(column) + 2}}" for column in _COLUMNS)
    rule = "-" * (width + len(header))
    lines = [f"{'step':<{width}}{header}", rule]
    lines += [_row(step, figures, width) for step, figures in summary.by_step.items()]
    lines += [rule, _row("all", summary.total, width), "", f"{'tenant':<{width}}{header}", rule]
    lines += [_row(tenant, figures, width) for tenant, figures in summary.by_tenant.items()]
    return "\n".join(lines)


def headline(summary: WorkloadSummary) -> str:
    agents = len(summary.agents)
    return (
        f"{summary.sessions} sessions ({summary.turns} turns) of {agents} agents in {len(summary.tenants)} tenants: "
        f"{summary.executions:,} executions, {summary.tool_calls:,} tool calls, {summary.events:,} events "
        f"in {summary.duration_seconds:.1f} s"
    )


def tools_line(summary: WorkloadSummary) -> str:
    """The tool executions by tool, and the turns the Agno Agent answered."""
    tools = (
        ", ".join(f"{name} {figures.calls:,} ({figures.failed:,} failed)" for name, figures in summary.tools.items())
        or "none"
    )
    return (
        f"tool calls by tool:  {tools}\n"
        f"Agno Agent turns:    {summary.agent_turns:,} (sales agents, on AuditedModel: every round trip an execution)"
    )


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def span_text(history: timedelta) -> str:
    """``7 days``, ``36 hours``: a history as ``--history`` took it."""
    days, hours = history.days, history.seconds // 3600
    count, unit = (days, "day") if not hours else (days * 24 + hours, "hour")
    return f"{count} {unit}{'s' if count != 1 else ''}"


def timeline_lines(summary: WorkloadSummary) -> str:
    """When the events happened and, for a history demo, the incident and the fallbacks it caused."""
    if summary.first_at is None or summary.last_at is None:
        return "timeline:            no events"
    happened = f"timeline:            {_utc(summary.first_at)} to {_utc(summary.last_at)}"
    figures, timeline = summary.incident, summary.timeline
    if timeline is None:
        return f"{happened} (today: --history 0)"
    lines = [f"{happened} (the {span_text(timeline.history)} before {_utc(timeline.anchor)}, busier in working hours)"]
    if figures is not None:
        incident = figures.incident
        lines.append(
            f"incident:            {incident.provider} rate-limited {incident.starts_at:%Y-%m-%d %H:%M} to"
            f" {incident.ends_at:%H:%M} UTC: {figures.fallbacks:,} fallbacks away from its models"
            f" (at most {figures.busiest_other_hour:,} in any other hour)"
        )
    return "\n".join(lines)


def dashboard_window(history: timedelta | None) -> str | None:
    """The shortest of the dashboard's windows as long as the history (a window ends now, up to an hour
    past the anchor: it may cut the history's first hour, in which no session starts); None for the
    dashboard's default."""
    if not history:
        return None
    return next((name for name, span in _WINDOWS if history <= span), "30d")


_WINDOWS = (("1d", timedelta(days=1)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)))


def reasons_line(summary: WorkloadSummary) -> str:
    fallbacks = ", ".join(f"{reason} {count}" for reason, count in summary.fallback_reasons.items()) or "none"
    failures = ", ".join(f"{kind} {count}" for kind, count in summary.failure_types.items()) or "none"
    return f"fallbacks by reason: {fallbacks}\nfailed executions:   {failures}"


def describe(event: Event) -> str:
    """One line of what an event says."""
    p = event.payload
    match event.event_type:
        case "ExecutionStarted":
            return f"{getattr(p, 'operation', '')} on {' -> '.join(getattr(p, 'chain', ()))}"
        case "AttemptStarted":
            return f"attempt {getattr(p, 'attempt', '')} on {getattr(p, 'model', '')} (retry {getattr(p, 'retry', 0)})"
        case "AttemptFailed":
            return (
                f"{getattr(p, 'error_type', '')} after {getattr(p, 'latency_ms', 0):.0f} ms"
                f" -> {getattr(p, 'next_action', '')}"
            )
        case "AttemptSucceeded":
            usage = getattr(p, "usage", None)
            tokens = f", {usage.total_tokens} tokens" if usage else ""
            return f"{getattr(p, 'latency_ms', 0):.0f} ms{tokens}"
        case "FallbackTriggered":
            return f"{getattr(p, 'from_model', '')} -> {getattr(p, 'to_model', '')} ({getattr(p, 'reason', '')})"
        case "ExecutionSucceeded":
            return f"answered by {getattr(p, 'model', '')} after {getattr(p, 'attempts', 0)} attempts"
        case "ToolCallStarted":
            return f"{getattr(p, 'tool_name', '')} (call {getattr(p, 'tool_call_id', '')})"
        case "ToolCallSucceeded":
            return f"{getattr(p, 'tool_name', '')} returned after {getattr(p, 'latency_ms', 0):.0f} ms"
        case _:
            return f"{getattr(p, 'error_type', '')}: {getattr(p, 'message', '')}"


def event_stream(events: Sequence[Event]) -> str:
    """An execution's events, one per line, with the start of each hash of the chain."""
    first = events[0]
    lines = [
        f"execution {first.stream_id}: tenant {first.tenant_id}, agent {first.agent_id}, "
        f"{first.session_id} {first.turn_id}, step {first.step}"
    ]
    lines += [
        f"{event.stream_position:>5}  {event.event_type:<19} {event.hash[:10]}  {describe(event)}" for event in events
    ]
    return "\n".join(lines)


def next_steps(summary: WorkloadSummary, database_url: str | None, *, has_dashboard: bool) -> str:
    """What to run next, for the ledger the demo wrote to."""
    url_option = f" --database-url '{database_url}'" if database_url else ""
    dashboard = f"llm-ledger dashboard{url_option}"
    if not has_dashboard:
        dashboard = f"pip install 'llm-ledger[dashboard]' && {dashboard}"
    window = dashboard_window(summary.timeline.history if summary.timeline else None)
    link = "http://127.0.0.1:8501" + (f"/?window={window}" if window else "")
    commands = [
        (dashboard, f"the dashboard, at {link}"),
        (f"llm-ledger audit verify{url_option}", "check the hash chains and seals again, any time"),
    ]
    width = max(len(command) for command, _ in commands) + 3
    lines = ["what to run next:", *(f"  {command:<{width}}{what}" for command, what in commands)]
    execution = summary.example_execution
    where = f"stream_id = '{execution}'" if execution else f"session_id = '{summary.session_ids[0]}'"
    query = (
        "SELECT stream_position, event_type, payload->>'model' AS model, payload->>'error_type' AS error "
        f"FROM llm_ledger_events WHERE {where} ORDER BY stream_position;"
    )
    if summary.database.startswith("sqlite"):
        path = summary.database.split("///", 1)[1]
        lines.append(f'  sqlite3 {path} "{query}"')
    else:
        lines.append(f'  psql {_libpq(summary.database)} -c "{query}"')
    return "\n".join(lines)


def _libpq(database: str) -> str:
    # psql takes postgresql:// URLs but not SQLAlchemy's driver suffix.
    return "'" + database.replace("postgresql+psycopg://", "postgresql://", 1) + "'"
