"""Where an ``llm-ledger audit verify`` spends its time: wall, the CPU of the command and its worker processes,
and the CPU of the PostgreSQL backends serving them, per event; variants interleaved on one kept ledger.

Run by hand, on a ledger ``bench/audit_verify.py --keep`` left:

    .venv/bin/python bench/audit_verify_cpu.py --database-url postgresql://.../llm_ledger_bench_... --rounds 3 \\
        before=/path/to/other/checkout after=. after-1-job=.:1

Each variant is ``NAME=PYTHONPATH[:JOBS]``: the checkout whose code runs (``.`` for this one), and ``--jobs``
(the command's default when left out). Round by round, each variant runs ``llm-ledger audit verify --json
--no-record`` once as a child process (every tenant). Its CPU is the child's and its workers' (user + system,
``RUSAGE_CHILDREN``: the workers are the child's children, waited for); the database's is read from
``/proc/<pid>/stat`` of each backend whose ``application_name`` is this run's, polled every 20 ms while it runs
(so it needs the benchmark to run on the database's machine). On a shared machine wall time follows the load;
CPU per event follows it far less, and the ratio of two variants run in turn is what compares them. The load
average is printed with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variant:
    name: str
    path: str
    jobs: str | None

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, equals, rest = text.partition("=")
        if not equals or not name:
            raise SystemExit(f"a variant is NAME=PYTHONPATH[:JOBS], not {text!r}")
        path, _, jobs = rest.partition(":")
        return cls(name, str((ROOT / path).resolve()) if path in ("", ".") else path, jobs or None)


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    database_cpu: float
    events: int
    ok: bool
    load: float


def backends_cpu(url: str, application: str, stop: threading.Event, seen: dict[int, float]) -> None:
    """Keep, per backend of ``application``, the CPU seconds it has used, until ``stop``."""
    ticks = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(url, autocommit=True) as connection:
        while not stop.is_set():
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
            ).fetchall()
            for (pid,) in rows:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # the backend has just ended: its last reading stands
                    continue
                seen[pid] = (int(fields[11]) + int(fields[12])) / ticks
            stop.wait(0.02)


def run(url: str, variant: Variant) -> Run:
    application = f"llm_ledger_bench_{secrets.token_hex(3)}"
    seen: dict[int, float] = {}
    stop = threading.Event()
    poller = threading.Thread(target=backends_cpu, args=(url, application, stop, seen))
    poller.start()
    command = [sys.executable, "-m", "llm_ledger.cli", "audit", "verify", "--json", "--no-record"]
    command += ["--database-url", f"{url}?application_name={application}"]
    if variant.jobs is not None:
        command += ["--jobs", variant.jobs]
    environment = {**os.environ, "PYTHONPATH": variant.path, "AGNO_TELEMETRY": "false"}
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Run from the variant's own checkout: ``python -m`` puts the working directory first on the path, ahead
    # of PYTHONPATH, so from this one every variant would run this checkout's code.
    done = subprocess.run(command, env=environment, cwd=variant.path, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    poller.join()
    if done.returncode not in (0, 1):
        raise SystemExit(f"{variant.name}: audit verify exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, sum(seen.values()), int(report["events"]), bool(report["ok"]), load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a ledger bench/audit_verify.py --keep left")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("variants", nargs="+", type=Variant.parse, help="NAME=PYTHONPATH[:JOBS]")
    args = parser.parse_args()
    print(
        "| round | variant | load | wall s | events/s | verify CPU us/event | database CPU us/event | total us/event |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for round_number in range(1, args.rounds + 1):
        for variant in args.variants:
            done = run(args.database_url, variant)
            per_event = 1e6 / done.events
            print(
                f"| {round_number} | {variant.name}{'' if done.ok else ' (not ok)'} | {done.load:.1f} | {done.wall:.1f}"
                f" | {done.events / done.wall:,.0f} | {done.cpu * per_event:.1f} | {done.database_cpu * per_event:.1f}"
                f" | {(done.cpu + done.database_cpu) * per_event:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
