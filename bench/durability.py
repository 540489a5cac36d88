"""What the journal costs: calls that wait for their events' fsync (``durability="journal"``, the default)
against calls that return at once (``"buffered"``), at realistic provider latencies and as raw events/s.

Run by hand:  .venv/bin/python bench/durability.py [--rounds 3] [--seconds 8] [--sessions 200 1000]

Each measurement is a fresh ``BufferedWriter`` (its journal in a new directory of ``--spool-root``, on the
machine's real disk by default) writing to a freshly migrated PostgreSQL database as ``llm_ledger_writer``.

1. Latency: ``--sessions`` concurrent sessions (one asyncio task each) call ``LLMExecutor.generate`` in a
   loop for ``--seconds`` on a mock model whose latency is log-normal, p50 400 ms and p99 1 s (the mock
   sleeps: the provider's time is spent waiting, as with a real one). A call's added time is its wall time
   minus the execution's own ``latency_ms`` (measured inside the execution, before the durability wait):
   what the wait for the journal adds, plus event-loop scheduling, which both variants pay.
2. Throughput: 64 sessions on an instant mock (``p50_ms=0``) for ``--seconds``: calls and events per second
   that returned to their callers, and the events per second journaled by the writer.

The variants run interleaved, in a shuffled order each round, so that the machine's drift falls on both.
The load average is printed with each run (the machine is shared). Prints a markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.ingest import fresh_database
from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
VARIANTS = ("journal", "buffered")
REALISTIC = "mock/bench-provider?p50_ms=400&p99_ms=1000"
INSTANT = "mock/bench-instant?p50_ms=0"


@dataclass(frozen=True)
class Run:
    variant: str
    sessions: int
    calls: int
    events: int
    seconds: float
    added_ms: list[float]
    load: float

    def added(self, quantile: float) -> float:
        ordered = sorted(self.added_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else float("nan")


async def _sessions(writer: BufferedWriter, model: str, sessions: int, seconds: float) -> tuple[int, list[float]]:
    executor = LLMExecutor(model, step_name="generation", sink=writer)
    added: list[float] = []
    deadline = time.monotonic() + seconds

    async def session(n: int) -> None:
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            with execution_context(tenant_id=f"tenant-{n % 20}", agent_id="a", session_id=f"s-{n}", turn_id=str(turn)):
                started = time.perf_counter()
                response = await executor.generate([LLMMessage(role="user", content=f"question {n}.{turn}")])
                added.append((time.perf_counter() - started) * 1000 - response.latency_ms)

    await asyncio.gather(*(session(n) for n in range(sessions)))
    return len(added), added


def measure(url: str, spool_root: Path, variant: str, model: str, sessions: int, seconds: float) -> Run:
    spool = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=spool_root))
    writer = BufferedWriter(EventStore(url, role="llm_ledger_writer"), spool, durability=variant)
    started = time.perf_counter()
    calls, added = asyncio.run(_sessions(writer, model, sessions, seconds))
    elapsed = time.perf_counter() - started
    events = writer.stats.accepted
    writer.wait_stored(120)
    writer.close()
    return Run(variant, sessions, calls, events, elapsed, added, os.getloadavg()[0])


def report(latency: list[Run], throughput: list[Run], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"journal in {args.spool_root} ({args.rounds} rounds of {args.seconds:g} s runs)",
        "",
        "| variant | sessions | calls | calls/s | added ms: median | p99 | max | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(latency, key=lambda r: (r.sessions, r.variant)):
        lines.append(
            f"| {run.variant} | {run.sessions} | {run.calls} | {run.calls / run.seconds:.0f} | "
            f"{run.added(0.5):.2f} | {run.added(0.99):.2f} | {max(run.added_ms):.1f} | {run.load:.2f} |"
        )
    lines += [
        "",
        "| variant | calls/s | events/s returned | added ms: median | p99 | load (1 min) |",
        "|---|---|---|---|---|---|",
    ]
    for run in sorted(throughput, key=lambda r: r.variant):
        lines.append(
            f"| {run.variant} | {run.calls / run.seconds:.0f} | {run.events / run.seconds:.0f} | "
            f"{run.added(0.5):.2f} | {run.added(0.99):.2f} | {run.load:.2f} |"
        )
    lines.append("")
    for variant in VARIANTS:
        rates = [r.events / r.seconds for r in throughput if r.variant == variant]
        if rates:
            lines.append(f"- {variant}: median {statistics.median(rates):.0f} events/s over {len(rates)} runs")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("LLM_LEDGER_BENCH_SERVER", DEFAULT_SERVER))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--sessions", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--throughput-sessions", type=int, default=64)
    parser.add_argument("--spool-root", type=Path, default=Path(tempfile.gettempdir()))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    latency: list[Run] = []
    throughput: list[Run] = []
    with fresh_database(args.server) as url:
        for round_ in range(args.rounds):
            plan = [(v, REALISTIC, s) for v in VARIANTS for s in args.sessions]
            plan += [(v, INSTANT, args.throughput_sessions) for v in VARIANTS]
            random.shuffle(plan)
            for variant, model, sessions in plan:
                run = measure(url, args.spool_root, variant, model, sessions, args.seconds)
                (throughput if model == INSTANT else latency).append(run)
                print(
                    f"round {round_ + 1}: {variant:8} {sessions:5} sessions {model.split('?')[0]:20} "
                    f"{run.calls / run.seconds:7.0f} calls/s  added p50 {run.added(0.5):6.2f} ms "
                    f"p99 {run.added(0.99):7.2f} ms  load {run.load:.2f}",
                    flush=True,
                )
    print()
    print(report(latency, throughput, args))


if __name__ == "__main__":
    main()
