"""``llm-ledger demo``: the workload with a progress bar, what the ledger then holds, the steps that
check it, and what to run next."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from llm_ledger.demo.plan import plan_workload
from llm_ledger.demo.report import (
    event_stream,
    headline,
    next_steps,
    reasons_line,
    span_text,
    summary_table,
    timeline_lines,
    tools_line,
)
from llm_ledger.demo.summary import WorkloadSummary
from llm_ledger.demo.timeline import DEFAULT_HISTORY, anchor_at
from llm_ledger.demo.workload import run_workload
from llm_ledger.events import verify_chain
from llm_ledger.exit_codes import ExitCode
from llm_ledger.progress import ProgressBar
from llm_ledger.store import StoreSettings, StoreUnavailableError, shown_url

DEFAULT_SESSIONS = 100
"""About 1,300 executions over a week, most in working hours: 10 to 20 seconds with the mock models'
realistic latencies, 50 sessions at a time (``workload.DEFAULT_CONCURRENCY``)."""


@dataclass(frozen=True, slots=True)
class AfterStep:
    """Something done with the ledger once the workload is in it (catch the projector up, seal, verify).

    ``run`` gets the ledger's URL, prints its own lines, and returns whether it passed; the demo exits
    with status 1 if one did not."""

    name: str
    run: Callable[[str], bool]


@dataclass(slots=True)
class DemoOptions:
    """The command's options; ``after`` adds steps of the caller's own after ``after_workload_steps()``."""

    sessions: int = DEFAULT_SESSIONS
    seed: int = 7
    database_url: str | None = None
    latency_scale: float = 1.0
    history: timedelta = DEFAULT_HISTORY
    anchor: datetime | None = None
    """The end of the history; None: the hour the demo starts in (``timeline.anchor_at``)."""
    after: list[AfterStep] = field(default_factory=list)


def catch_up_read_models(url: str) -> bool:
    """Apply the new events to the dashboard's read models, so that it opens on current figures."""
    from llm_ledger.projections import Projector

    projector = Projector(url)
    try:
        bar = ProgressBar(projector.status().pending, "events")
        result = projector.catch_up(progress=bar.advance)
        bar.finish()
        print(f"  applied {result.events:,} events; the read models now hold {projector.status().events_applied:,}")
    finally:
        projector.close()
    return True


def seal_events(url: str) -> bool:
    """Seal each tenant's new events (a Merkle root per tenant, signed when ``LLM_LEDGER_SEAL_KEY`` is set),
    so that ``audit verify`` can tell a deleted or inserted event from an intact ledger."""
    from llm_ledger.audit import AuditConfigurationError, SigningKey, seal_ledger

    try:
        seals = seal_ledger(url, signing_key=SigningKey.from_env())
    except AuditConfigurationError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return False
    for seal in seals:
        signed = "signed" if seal.signature else "unsigned"
        print(
            f"  {seal.tenant_id}: seal {seal.sequence} over {seal.event_count:,} events,"
            f" root {seal.merkle_root[:16]}, {signed}"
        )
    if not seals:
        print("  nothing new to seal")
    return True


def verify_ledger_integrity(url: str) -> bool:
    """``llm-ledger audit verify`` over the whole ledger; its result is recorded for the dashboard's audit page."""
    from llm_ledger.audit import AuditConfigurationError, PublicKey, verify_ledger

    try:
        # As the command does: with LLM_LEDGER_SEAL_PUBLIC_KEY set, every seal must carry its signature.
        report = verify_ledger(url, public_key=PublicKey.from_env())
    except AuditConfigurationError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return False
    print("\n".join(f"  {line}" for line in report.to_text().splitlines()))
    return report.ok


def after_workload_steps() -> list[AfterStep]:
    """What ``llm-ledger demo`` does with the ledger after the workload, in order."""
    return [
        AfterStep("dashboard read models", catch_up_read_models),
        AfterStep("seals", seal_events),
        AfterStep("audit verify", verify_ledger_integrity),
    ]


def run_demo(options: DemoOptions) -> int:
    """The ``llm-ledger demo`` command; returns its exit status."""
    from llm_ledger.telemetry import configure_tracing

    configure_tracing()  # no-op without OTEL_* variables; with them, the run's traces are exported
    url = options.database_url or StoreSettings.from_env().database_url
    shown = shown_url(url)
    anchor = options.anchor or anchor_at(datetime.now(UTC))  # one for the plan here and the run's
    total = plan_workload(options.sessions, options.seed, history=options.history, anchor=anchor).step_calls
    sessions = f"{options.sessions} session{'s' if options.sessions > 1 else ''}"
    when = f"over the {span_text(options.history)} before {anchor:%Y-%m-%d %H:%M} UTC" if options.history else "now"
    print(f"llm-ledger demo: {sessions} {when}, {total:,} pipeline steps, into {shown}")
    bar = ProgressBar(total, "steps")
    try:
        summary = run_workload(
            options.database_url,
            sessions=options.sessions,
            seed=options.seed,
            progress=bar.advance,
            latency_scale=options.latency_scale,
            history=options.history,
            anchor=anchor,
        )
    except StoreUnavailableError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return ExitCode.NO_LEDGER
    bar.finish()
    lines = (reasons_line(summary), tools_line(summary), timeline_lines(summary))
    print(f"\n{headline(summary)}\n\n{summary_table(summary)}\n\n" + "\n".join(lines))
    if summary.example:
        print(
            "\none execution that retried and fell back, as the ledger holds it:\n"
            f"{event_stream(summary.example)}\n       verify_chain: {verify_chain(summary.example)}"
        )
    passed = _complete(summary)
    for step in [*after_workload_steps(), *options.after]:
        print(f"\n{step.name}:")
        try:
            passed = step.run(url) and passed
        except StoreUnavailableError as exc:
            print(f"llm-ledger: {step.name}: {exc}", file=sys.stderr)
            passed = False
    has_dashboard = importlib.util.find_spec("streamlit") is not None
    print(f"\n{next_steps(summary, shown if options.database_url else None, has_dashboard=has_dashboard)}")
    return ExitCode.OK if passed else ExitCode.FAILED


def _complete(summary: WorkloadSummary) -> bool:
    if summary.incomplete:
        print(
            f"\n{summary.incomplete} executions or tool executions have no terminal event in the ledger: the "
            "writer could not deliver every event (see the log above; spooled events are written at the next start)",
            file=sys.stderr,
        )
    return summary.incomplete == 0
