"""The ledger under an application's load: one process running N concurrent sessions of 4-call turns on
50 ms mock models, its events into PostgreSQL through the default writer, against the same process
recording into an ``InMemorySink`` (what the application would do with no ledger to keep up with).

Run by hand:  .venv/bin/python bench/e2e_load.py [--sessions 50 200 1000] [--rounds 3] [--seconds 10]

Each measurement runs in a process of its own (its RSS and its writer threads are its own): N sessions,
one asyncio task each, loop over turns of ``context_extraction``, ``rule_filtering``, ``generation`` and
``enforcement`` (one ``LLMExecutor.generate`` each, on ``mock/...?p50_ms=50``, the provider's time spent
sleeping, as a real provider keeps a call waiting) for ``--seconds``. Variants, run in a shuffled order each
round so that the machine's drift falls on both:

  memory   every executor's sink an ``InMemorySink``: nothing sealed, nothing stored;
  writer   the process's default writer (``LLM_LEDGER_DATABASE_URL`` a fresh PostgreSQL database, migrated,
           written as ``llm_ledger_writer``; the journal in a new directory; ``LLM_LEDGER_DURABILITY`` as
           given, ``journal`` by default): for PostgreSQL a writer process (``ProcessWriter``);
  thread   the same with ``LLM_LEDGER_WRITER=thread``: the buffered writer's threads in the application's
           own process, for comparison.

Measured: turns per second (the ratio writer/memory at equal N is the figure that matters), the event
loop's lag (a task that asks to wake every 10 ms records how late it wakes: p50, p99, max), the process's
peak RSS, and for ``writer`` what reached PostgreSQL: events per second during the load, the events stored
within 2 s after the load stopped against the events accepted, how long until all were, and what the writer
spooled or lost. Prints a markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.ingest import count_rows, fresh_database
from bench.logins import temporary_login
from llm_ledger.store.scoping import INGEST_ROLE, WRITER_ROLE

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
VARIANTS = ("memory", "writer", "thread")
STEPS = ("context_extraction", "rule_filtering", "generation", "enforcement")
MODEL = "mock/bench-step?p50_ms=50"
SETTLE_SECONDS = 2.0
TICK_SECONDS = 0.01
SERVICE_ROLES = (WRITER_ROLE, INGEST_ROLE)
"""A login of the application's kind, as the README prescribes for Focal's services."""


@dataclass(frozen=True)
class Run:
    variant: str
    sessions: int
    seconds: float
    turns: int
    events: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    rss_mb: float
    writer_rss_mb: float = 0.0  # the writer process's peak RSS (the process writer only)
    stored_during: int = 0  # events in PostgreSQL when the load stopped
    stored_settled: int = 0  # ... SETTLE_SECONDS later
    all_stored_after: float | None = None  # seconds after the load stopped until every accepted event was stored
    spooled: int = 0
    lost: int = 0
    load: float = 0.0

    @property
    def turns_per_second(self) -> float:
        return self.turns / self.seconds


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _load(sessions: int, seconds: float, sink: object | None) -> tuple[int, list[float]]:
    from llm_ledger import LLMExecutor, LLMMessage, execution_context

    executors = {step: LLMExecutor(MODEL, step_name=step, sink=sink, max_retries=0) for step in STEPS}  # type: ignore[arg-type]
    deadline = time.monotonic() + seconds
    turns = 0
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            asked = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            lags.append((time.perf_counter() - asked - TICK_SECONDS) * 1000)

    async def session(n: int) -> None:
        nonlocal turns
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            with execution_context(
                tenant_id=f"tenant-{n % 50}", agent_id=f"agent-{n % 5}", session_id=f"s-{n}", turn_id=str(turn)
            ):
                for step in STEPS:
                    await executors[step].generate([LLMMessage(role="user", content=f"{step} {n}.{turn}")])
            turns += 1

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(session(n) for n in range(sessions)))
    stop.set()
    await tick
    return turns, lags


def one(variant: str, sessions: int, seconds: float, url: str | None) -> Run:
    """One measurement, in this process (``--one``)."""
    from llm_ledger import InMemorySink
    from llm_ledger.store.default import make_default_writer

    # The writer the process would make on its first call, from the same variables, held here to read it.
    sink = InMemorySink() if variant == "memory" else make_default_writer()
    peak = [0.0, 0.0]
    done = threading.Event()

    def rss_of(pid: int | str) -> float:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return 0.0

    def watch_rss() -> None:  # ru_maxrss is the process's whole life: sampled here instead
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_of("self"))
            child = getattr(sink, "child_pid", None)
            if child is not None:
                peak[1] = max(peak[1], rss_of(child))

    before = count_rows(url, "llm_ledger_events") if url else 0  # earlier runs' events, in the same database
    watcher = threading.Thread(target=watch_rss, daemon=True)
    watcher.start()
    started = time.perf_counter()
    turns, lags = asyncio.run(_load(sessions, seconds, sink))
    elapsed = time.perf_counter() - started
    done.set()
    events = turns * len(STEPS) * 4  # a successful execution on a mock is four events
    run = Run(
        variant,
        sessions,
        elapsed,
        turns,
        events,
        _quantile(lags, 0.5),
        _quantile(lags, 0.99),
        max(lags, default=float("nan")),
        peak[0],
        writer_rss_mb=peak[1],
        load=os.getloadavg()[0],
    )
    if isinstance(sink, InMemorySink):
        return run
    writer = sink
    stopped = time.monotonic()
    during = count_rows(url, "llm_ledger_events") - before if url else 0
    accepted = writer.stats.accepted
    all_after: float | None = None
    settled = during
    while time.monotonic() - stopped < 60:
        settled_now = count_rows(url, "llm_ledger_events") - before if url else 0
        if time.monotonic() - stopped <= SETTLE_SECONDS:
            settled = settled_now
        if settled_now >= accepted:
            if all_after is None:
                all_after = time.monotonic() - stopped
            if time.monotonic() - stopped > SETTLE_SECONDS:
                break
        time.sleep(0.05)
    stats = writer.stats
    writer.close()
    return Run(
        **{
            **asdict(run),
            "events": accepted,
            "stored_during": during,
            "stored_settled": settled,
            "all_stored_after": all_after,
            "spooled": stats.spooled,
            "lost": stats.lost,
        }
    )


def measure(variant: str, sessions: int, seconds: float, url: str, login: str, durability: str) -> Run:
    env = dict(os.environ)
    home = tempfile.mkdtemp(prefix=f"e2e-{variant}-")
    env.update(LLM_LEDGER_HOME=home, LLM_LEDGER_DURABILITY=durability, PYTHONPATH=str(Path(__file__).parent.parent))
    env.pop("LLM_LEDGER_WRITER", None)
    if variant == "thread":
        env["LLM_LEDGER_WRITER"] = "thread"
    if variant != "memory":
        env["LLM_LEDGER_DATABASE_URL"] = login
        with_count = url  # counted as the superuser, whom row-level security does not hide rows from
    else:
        env.pop("LLM_LEDGER_DATABASE_URL", None)
        with_count = ""
    done = subprocess.run(
        [sys.executable, __file__, "--one", variant, str(sessions), str(seconds), with_count],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 180,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {sessions}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))


def report(runs: list[Run], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.rounds} rounds of {args.seconds:g} s runs, durability {args.durability}",
        "",
        "| sessions | variant | turns/s | / memory | loop lag ms p50 | p99 | max | RSS MB | writer RSS MB | "
        f"in PG at stop | in PG {SETTLE_SECONDS:g} s after | all stored after s | spooled | lost | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sessions in args.sessions:
        memory = [r.turns_per_second for r in runs if r.sessions == sessions and r.variant == "memory"]
        base = statistics.median(memory) if memory else float("nan")
        for run in sorted((r for r in runs if r.sessions == sessions), key=lambda r: r.variant):
            stored = (
                f"{run.stored_during:,} / {run.events:,} | {run.stored_settled:,} / {run.events:,} | "
                f"{f'{run.all_stored_after:.2f}' if run.all_stored_after is not None else 'not in 60 s'} | "
                f"{run.spooled:,} | {run.lost:,}"
                if run.variant != "memory"
                else " | | | | "
            )
            lines.append(
                f"| {run.sessions:,} | {run.variant} | {run.turns_per_second:.0f} | "
                f"{run.turns_per_second / base:.2f} | "
                f"{run.lag_p50_ms:.1f} | {run.lag_p99_ms:.1f} | {run.lag_max_ms:.0f} | {run.rss_mb:.0f} | "
                f"{run.writer_rss_mb:.0f} | "
                f"{stored} | {run.load:.1f} |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("LLM_LEDGER_BENCH_SERVER", DEFAULT_SERVER))
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--durability", choices=("journal", "buffered"), default="journal")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--one":
        variant, sessions, seconds, url = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
        print(json.dumps(asdict(one(variant, sessions, seconds, url or None))))
        return
    args = parse_args(argv)
    runs: list[Run] = []
    with fresh_database(args.server) as url, temporary_login(url, "service", SERVICE_ROLES) as login:
        for round_ in range(args.rounds):
            plan = [(variant, sessions) for variant in VARIANTS for sessions in args.sessions]
            random.shuffle(plan)
            for variant, sessions in plan:
                run = measure(variant, sessions, args.seconds, url, login, args.durability)
                runs.append(run)
                print(
                    f"round {round_ + 1}: {variant:6} {sessions:5} sessions {run.turns_per_second:7.0f} turns/s "
                    f"lag p99 {run.lag_p99_ms:6.1f} ms  RSS {run.rss_mb:5.0f} MB  "
                    f"stored {run.stored_settled:,}/{run.events:,} at +{SETTLE_SECONDS:g} s  load {run.load:.1f}",
                    flush=True,
                )
    print()
    print(report(runs, args))


if __name__ == "__main__":
    main()
