"""Seal and verify throughput of ``llm-ledger audit`` on a generated PostgreSQL ledger.

Run by hand:  .venv/bin/python bench/audit_verify.py [--events 1000000] [--tenants 10] [--seals 2]

1. Load: ``--events`` events of real executions (the executor on ``mock/`` models, re-drafted as new streams
   by ``bench/ingest.py``'s ``lazy_drafts``, so every hash chain is genuine), ``--tenants`` tenants
   interleaved, appended in batches of 5,000 through ``EventStore.append`` into a fresh database migrated
   to head, then VACUUM (ANALYZE). The load is split into ``--seals`` equal parts, each sealed after it is
   stored, so that every tenant has that many seals.
2. Seal: ``llm-ledger audit seal`` as a subprocess after each part (the sealer role, every tenant):
   wall time, events per second.
3. Verify: ``llm-ledger audit verify --json`` as a subprocess (the auditor role, every tenant, recording its
   run), ``--runs`` times: wall time, events per second (events checked by the stream pass; the seal pass
   reads them a second time), and the peak resident memory of the process (``ru_maxrss`` of the child),
   which must not grow with the ledger.

``--keep`` keeps the loaded and sealed database (its URL is printed); ``--database-url`` verifies one kept
so, without loading or sealing again: variants (another checkout's ``PYTHONPATH``, ``--jobs``) can then be
timed against the same ledger, interleaved. ``--jobs`` is passed to ``audit verify`` (default: its own).

Prints a markdown report and writes it to ``bench/results/AUDIT_RESULTS.md`` unless ``--no-results``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.ingest import executions_as_templates, fresh_database, lazy_drafts, machine, server_version, write_results
from llm_ledger.store import EventStore

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
RESULTS = ROOT / "bench" / "results" / "AUDIT_RESULTS.md"  # bench/results/ is not versioned
BATCH = 5_000
CLI = [sys.executable, "-m", "llm_ledger.cli"]


def load(url: str, count: int, tenants: int) -> float:
    """Append ``count`` events; returns the seconds it took."""
    templates = executions_as_templates(tenants, 25)
    store = EventStore(url)
    started = time.perf_counter()
    batch = []
    try:
        for draft in lazy_drafts(templates, count):
            batch.append(draft)
            if len(batch) == BATCH:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
    finally:
        store.close()
    return time.perf_counter() - started


def vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def run_cli(*arguments: str) -> tuple[float, str]:
    """Run ``llm-ledger`` in a child process; its wall time and output."""
    started = time.perf_counter()
    done = subprocess.run([*CLI, *arguments], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"llm-ledger {' '.join(arguments)} exited {done.returncode}: {done.stderr}")
    return seconds, done.stdout


def peak_child_rss_mib() -> float:
    """The largest resident set of any child so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--seals", type=int, default=2, help="seals per tenant (the load is split in as many parts)")
    parser.add_argument("--runs", type=int, default=3, help="verify runs (median reported)")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--jobs", type=int, help="audit verify --jobs (default: the command's own)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--database-url", help="verify this database, loaded and sealed by an earlier --keep")
    parser.add_argument("--no-results", action="store_true")
    return parser.parse_args(argv)


@contextlib.contextmanager
def ledger(args: argparse.Namespace) -> Iterator[tuple[str, list[str]]]:
    """The database to verify, and the table rows of loading and sealing it (none when reused)."""
    if args.database_url:
        yield args.database_url, []
        return
    part = args.events // args.seals
    with fresh_database(args.server, keep=args.keep) as url:
        seal_seconds = []
        loaded = 0.0
        for _ in range(args.seals):
            loaded += load(url, part, args.tenants)
            seconds, out = run_cli("audit", "seal", "--database-url", url)
            seal_seconds.append(seconds)
            print(out, end="", file=sys.stderr)
        vacuum(url)
        seal_rss = peak_child_rss_mib()
        rate = part * args.seals / loaded
        seal_rows = [
            f"| `audit seal` #{i + 1} | {s:.1f} s | {part / s:,.0f} | {args.tenants} seals over {part:,} events;"
            f" peak RSS of the seal processes {seal_rss:.0f} MiB |"
            for i, s in enumerate(seal_seconds)
        ]
        yield url, [f"| load (`EventStore.append`, {BATCH:,} a batch) | {loaded:.1f} s | {rate:,.0f} | |", *seal_rows]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    lines = [
        "# Audit seal and verify (`bench/audit_verify.py`)",
        "",
        f"- machine: {machine()}; {server_version(args.server)}",
        f"- {args.events:,} events, {args.tenants} tenants, {args.seals} seals per tenant"
        if not args.database_url
        else f"- the ledger of {args.database_url}",
        "",
    ]
    jobs = [] if args.jobs is None else ["--jobs", str(args.jobs)]
    with ledger(args) as (url, loading):
        verify_seconds, report = [], {}
        for _ in range(args.runs):
            seconds, out = run_cli("audit", "verify", "--database-url", url, "--json", *jobs)
            verify_seconds.append(seconds)
            report = json.loads(out)
        verify_rss = peak_child_rss_mib()
    events = int(report["events"])
    verify = statistics.median(verify_seconds)
    lines += [
        "| step | wall time | events/s | notes |",
        "|---|---:|---:|---|",
        *loading,
        f"| `audit verify`{' '.join(['', *jobs])} (median of {args.runs}) | {verify:.1f} s | {events / verify:,.0f} |"
        f" {report['streams']:,} streams, {report['seals']} seals, ok={report['ok']};"
        f" runs {', '.join(f'{s:.1f}' for s in verify_seconds)} s; peak RSS {verify_rss:.0f} MiB |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_results:
        RESULTS.parent.mkdir(exist_ok=True)
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
