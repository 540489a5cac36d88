"""Retention of the oldest month of a partitioned, sealed ledger: how long ``llm-ledger retention apply`` takes,
the archive's size against the partition's, and ``llm-ledger audit verify --archive``'s rate.

Run by hand:  .venv/bin/python bench/retention.py [--events 1500000] [--months 3] [--tenants 10]

1. Load: ``bench/dashboard_queries.py``'s generator with genuine hash chains on every day (``genuine_days`` =
   the whole span: the archived month must verify), ``--months`` x 30 days ending now, into a fresh database
   ``llm_ledger_retention_bench_<hex>`` migrated to head, a partition for every month of the data made first
   (``bench/scale.py``'s ``create_month_partitions``), COPYed by hour as the superuser, sealed (``llm-ledger
   audit seal``) after each month, as ``bench/scale.py`` does; the oldest month's ``recorded_at`` then set
   to its events' ``occurred_at``, as if stored in their month (retention keeps a month stored late).
2. The oldest monthly partition's rows, heap and index bytes (``pg_table_size``, ``pg_indexes_size``).
3. ``llm-ledger audit verify --no-record`` once (every tenant): the full verify that ``retention apply`` runs
   before it removes anything, timed alone.
4. ``llm-ledger retention apply --older-than Nd --archive DIR`` (a child process), N chosen so that only the
   oldest month is due: wall time, the part of it that proves the archive from its files before the drop,
   the archive's bytes (Parquet files and manifest).
5. ``llm-ledger audit verify --archive DIR --json --no-record``: wall time, events checked (live and archived),
   events per second; and a plain ``audit verify`` for comparison.

``--keep`` keeps the database. Prints a markdown report and writes it to ``bench/results/RETENTION_RESULTS.md``
unless ``--no-results``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from bench.dashboard_queries import DEFAULT_SERVER, check_sample, load, make_plan, server_settings
from bench.ingest import machine, write_results
from bench.scale import DAYS_PER_MONTH, create_month_partitions, seal
from llm_ledger.store import migrate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "RETENTION_RESULTS.md"
CLI = [sys.executable, "-m", "llm_ledger.cli"]


@contextmanager
def fresh_database(server: str, keep: bool) -> Iterator[str]:
    name = f"llm_ledger_retention_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        if keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def oldest_month(url: str) -> tuple[str, int, int, int]:
    """The oldest monthly partition that holds events: name, rows, heap bytes, index bytes."""
    with psycopg.connect(url) as conn:
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_partition_tree('llm_ledger_events') t JOIN pg_class c ON c.oid = t.relid"
            " WHERE t.isleaf AND c.relname ~ '_[0-9]{4}_[0-9]{2}$' ORDER BY c.relname"
        ).fetchall():
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
            if rows and rows[0]:
                sizes = conn.execute(
                    "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)", (name, name)
                ).fetchone()
                assert sizes is not None
                return str(name), int(rows[0]), int(sizes[0]), int(sizes[1])
    raise RuntimeError("no monthly partition holds events")


def backdate_recorded(url: str, partition: str) -> None:
    """Give the month's events the storage time of their occurrence, as if stored in their month (the COPY
    stores them now, and retention keeps a month whose events were stored late): as the superuser, the
    partition's append-only triggers set aside for the update and restored as they were. ``recorded_at``
    is no part of an event's hash."""
    modes = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}
    table = sql.Identifier(partition)
    with psycopg.connect(url) as conn:
        states = conn.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", (partition,)
        ).fetchall()
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        conn.execute(sql.SQL("UPDATE {} SET recorded_at = occurred_at").format(table))
        for name, state in states:
            conn.execute(
                sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(table, sql.SQL(modes[state]), sql.Identifier(name))
            )


def run(arguments: Sequence[str], ok: Sequence[int] = (0,)) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([*CLI, *arguments], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        raise RuntimeError(f"llm-ledger {shlex.join(arguments)} exited {done.returncode}: {done.stderr}{done.stdout}")
    return seconds, done.stdout


def directory_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-results", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/retention.py", *sys.argv[1:]])
    load_before = os.getloadavg()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    days = args.months * DAYS_PER_MONTH
    plan = make_plan(args.events, args.tenants, days, end, args.seed, genuine_days=days)
    lines = [
        f"Measured on {datetime.now(UTC):%Y-%m-%d}: {machine()}; load average before the run "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}.",
        "",
        f"```bash\n{command}\n```",
        "",
    ]
    with fresh_database(args.server, args.keep) as url, tempfile.TemporaryDirectory(prefix="ledger-archive-") as tmp:
        lines.insert(1, f"{server_settings(url)}.")
        check_sample(plan)
        create_month_partitions(url, end - timedelta(days=days), args.months + 4)
        print(f"loading {args.events:,} events into {url} ...", file=sys.stderr, flush=True)
        started, loaded = time.perf_counter(), 0
        per_month = plan.slices // args.months
        for month in range(args.months):
            last = month == args.months - 1
            loaded += load(url, plan, range(month * per_month, plan.slices if last else (month + 1) * per_month)).events
            seal(url)
        built = time.perf_counter() - started
        name, rows, heap, index = oldest_month(url)
        backdate_recorded(url, name)
        month_end = datetime(int(name[-7:-3]) + int(name[-2:]) // 12, int(name[-2:]) % 12 + 1, 1, tzinfo=UTC)
        older_than = f"{(datetime.now(UTC) - month_end).days}d"
        lines += [
            f"- Load: {loaded:,} events of {args.tenants} tenants over {days} days, every stream a genuine hash chain,"
            f" COPYed by hour and sealed after each of the {args.months} months: {built:.0f} s; load average after"
            f" {os.getloadavg()[0]:.2f}.",
            f"- Oldest month `{name}`: {rows:,} events, heap {heap / 2**20:,.0f} MiB + indexes {index / 2**20:,.0f} MiB"
            f" = {(heap + index) / 2**20:,.0f} MiB.",
        ]
        print("full verify ...", file=sys.stderr, flush=True)
        verify_seconds, _ = run(["audit", "verify", "--no-record", "--database-url", url])
        lines.append(
            f"- `audit verify` (every tenant, before retention): {verify_seconds:.1f} s"
            f" ({loaded / verify_seconds:,.0f} events/s): the check `retention apply` makes before removing anything."
        )
        archive = Path(tmp) / "archive"
        print(f"retention apply --older-than {older_than} ...", file=sys.stderr, flush=True)
        apply_seconds, out = run(
            ["retention", "apply", "--older-than", older_than, "--archive", str(archive), "--database-url", url]
        )
        archived = directory_bytes(archive)
        apply_verify = float(re.search(r"verify run \S+: ([0-9.]+) s", out).group(1))  # type: ignore[union-attr]
        writing = float(re.search(r"and dropped in ([0-9.]+) s", out).group(1))  # type: ignore[union-attr]
        proving = float(re.search(r"([0-9.]+) s of it proving", out).group(1))  # type: ignore[union-attr]
        partition_mib = (heap + index) / 2**20
        lines += [
            f"- `retention apply --older-than {older_than}` (only `{name}` due): **{apply_seconds:.1f} s** in all,"
            f" of which {apply_verify:.1f} s its full verify and {writing:.1f} s reading the month, writing, fsyncing"
            f" and re-reading its Parquet files, proving them and dropping the partition"
            f" ({rows / max(writing, 1e-9):,.0f} events/s), {proving:.1f} s of it the proof from the files (the"
            " month's streams' chains and its seals' roots, as `verify --archive` checks them); the plan's queries"
            " (counts, seal coverage per tenant) the rest.",
            f"- Archive: **{archived / 2**20:,.1f} MiB** (zstd Parquet + manifest) against {partition_mib:,.0f}"
            f" MiB of partition heap and indexes: {archived / (heap + index):.1%} of it,"
            f" {archived / rows:,.0f} bytes per event.",
            f"- Output: `{out.strip().splitlines()[-1]}`",
        ]
        print("verify --archive ...", file=sys.stderr, flush=True)
        archive_seconds, report_text = run(
            ["audit", "verify", "--no-record", "--json", "--archive", str(archive), "--database-url", url]
        )
        report = json.loads(report_text)
        plain_seconds, _ = run(["audit", "verify", "--no-record", "--json", "--database-url", url])
        lines += [
            f"- `audit verify --archive DIR`: **{archive_seconds:.1f} s**, ok={report['ok']}, {report['events']:,}"
            f" events checked ({rows:,} of them from the archive): **{report['events'] / archive_seconds:,.0f}"
            " events/s**.",
            f"- Plain `audit verify` after the drop (the archived month reported as not checked):"
            f" {plain_seconds:.1f} s.",
            f"- Load average at the end {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f}.",
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_results:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
