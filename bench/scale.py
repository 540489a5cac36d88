"""The ledger over a year on one PostgreSQL: events over monthly partitions, what they take on disk, and what
the dashboard's and the auditor's queries cost on them, against the number of partitions.

Run by hand:  .venv/bin/python bench/scale.py [--events 24000000] [--months 12] [--tenants 20] [--runs 10]

1. Load: ``bench/dashboard_queries.py``'s generator (sessions of four-step turns through fallback chains,
   ids UUIDv7 of the event's time) with genuine hash chains (``Plan.genuine``: every stream verifies),
   ``--months`` x 30 days ending now, into a fresh database migrated to head, with a partition for every
   month of the data created first (``create_month_partitions``: the statements of migration 0008's
   ``llm_ledger_ensure_partitions``, which creates only the months from now on), COPYed by hour as the
   superuser. Then VACUUM (ANALYZE).
2. Sizes: rows, heap and index bytes of every partition, and per million events.
3. The projector catches up over every event (``Projector(batch_size=20,000)``): the read models the
   dashboard reads.
4. The dashboard's 30-day and 1-day queries (``dashboard_queries.run_queries``: read model and raw, per
   tenant, ``--runs`` runs) and ``llm-ledger audit verify --since 30d --json`` (a child process, every
   tenant), wall time and events checked.
5. Partition count: the same data with empty monthly partitions added after the last (up to each of
   ``--partition-counts``): per count, the median time of a raw 1-day breakdown of one tenant, a session's
   events (``EventStore.read_session``), an execution's (``read_stream``: one partition, by its id), a page
   of the projector's cursor (``read_all``) and the plan time of the raw query, the tenants in turn.

``--revision 0007`` loads the same data into the unpartitioned table of that revision, for comparison
(step 5 then times the one table). ``--keep`` keeps the database; ``--database-url`` reuses a loaded one
(steps 1 and 3 are skipped). Prints a markdown report and writes it to ``bench/results/SCALE_RESULTS.md``
unless ``--no-results``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from bench.dashboard_queries import (
    DEFAULT_SERVER,
    RawQueries,
    catch_up,
    check_sample,
    data_end,
    database,
    load,
    make_plan,
    run_queries,
    server_settings,
)
from bench.ingest import machine, write_results
from llm_ledger.projections.queries import Window
from llm_ledger.store import EventStore
from llm_ledger.store.dialects import Cursor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "SCALE_RESULTS.md"  # bench/results/ is not versioned
DAYS_PER_MONTH = 30
READER = "llm_ledger_reader"  # the dashboard's role: row-level security adds the tenant to every query
GENUINE_DAYS = 62  # the seals whose span reaches 30 days ago, with room: verify --since 30d reads their streams
CLI = [sys.executable, "-m", "llm_ledger.cli"]


@dataclass(slots=True)
class PartitionSize:
    name: str
    rows: int
    heap_bytes: int
    index_bytes: int


def partition_sizes(url: str) -> list[PartitionSize]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid)
            FROM pg_partition_tree('llm_ledger_events') t JOIN pg_class c ON c.oid = t.relid
            WHERE t.isleaf ORDER BY c.relname
            """
        ).fetchall()
    return [PartitionSize(str(r[0]), max(int(r[1]), 0), int(r[2]), int(r[3])) for r in rows]


def seal(url: str) -> None:
    done = subprocess.run([*CLI, "audit", "seal", "--database-url", url], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"audit seal exited {done.returncode}: {done.stderr}")


def verify_since(url: str, since: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(
        [*CLI, "audit", "verify", "--database-url", url, "--since", since, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"audit verify exited {done.returncode}: {done.stderr}")
    report: dict[str, object] = json.loads(done.stdout)
    return seconds, report


def median_ms(fn: Callable[[str], object], tenants: Sequence[str], runs: int) -> float:
    fn(tenants[0])  # warm-up
    times = []
    for i in range(runs):
        started = time.perf_counter()
        fn(tenants[i % len(tenants)])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@dataclass(slots=True)
class PartitionTiming:
    partitions: int
    raw_day_ms: float
    plan_ms: float
    session_ms: float
    stream_ms: float
    cursor_page_ms: float


def time_partition_count(url: str, tenants: Sequence[str], end: datetime, runs: int) -> PartitionTiming:
    raw = RawQueries(url)
    store = EventStore(url)
    day = Window.last(timedelta(days=1), end)
    with psycopg.connect(url) as conn:
        sessions = {
            t: str(conn.execute(
                "SELECT session_id FROM llm_ledger_events WHERE tenant_id = %s AND occurred_at > %s LIMIT 1",
                (t, end - timedelta(days=3)),
            ).fetchone()[0])  # type: ignore[index]
            for t in tenants
        }  # fmt: skip
        streams = {
            t: str(conn.execute(
                "SELECT stream_id FROM llm_ledger_events WHERE tenant_id = %s AND occurred_at > %s LIMIT 1",
                (t, end - timedelta(days=3)),
            ).fetchone()[0])  # type: ignore[index]
            for t in tenants
        }  # fmt: skip
        count = conn.execute("SELECT count(*) FROM pg_partition_tree('llm_ledger_events') WHERE isleaf").fetchone()
        cursor_row = conn.execute(
            "SELECT tx_id::text, global_position FROM llm_ledger_events"
            " ORDER BY global_position DESC LIMIT 1 OFFSET 50000"
        ).fetchone()

        def plan_ms(tenant: str) -> float:
            explain = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM llm_ledger_events"
                " WHERE tenant_id = %s AND occurred_at >= %s AND occurred_at < %s",
                (tenant, day.start, day.end),
            ).fetchone()
            return float(explain[0][0]["Planning Time"])  # type: ignore[index]

        plan = statistics.median(plan_ms(tenants[i % len(tenants)]) for i in range(runs))
    after = Cursor(int(cursor_row[0]), int(cursor_row[1])) if cursor_row else Cursor(0, 0)  # type: ignore[call-arg]
    try:
        return PartitionTiming(
            partitions=int(count[0]) if count else 0,
            raw_day_ms=median_ms(lambda t: raw.breakdown(t, day), tenants, runs),
            plan_ms=plan,
            session_ms=median_ms(
                lambda t: store.scoped(tenant_id=t, role=READER).read_session(sessions[t]), tenants, runs
            ),
            stream_ms=median_ms(
                lambda t: store.scoped(tenant_id=t, role=READER).read_stream(streams[t]), tenants, runs
            ),
            cursor_page_ms=median_ms(lambda t: store.read_all(after, limit=1000), tenants, runs),
        )
    finally:
        raw.close()
        store.close()


def create_month_partitions(url: str, first: datetime, months: int) -> int:
    """The monthly partitions of ``months`` months from ``first``'s that are missing, made as migration 0008's
    ``llm_ledger_ensure_partitions`` makes them (with the TRUNCATE trigger a partition does not inherit);
    returns how many were created."""
    created = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(months):
            month = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            year, index = divmod(month.month - 1 + i, 12)
            start = month.replace(year=month.year + year, month=index + 1)
            name = f"llm_ledger_events_{start:%Y_%m}"
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
            if exists and exists[0]:
                continue
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {name} PARTITION OF llm_ledger_events FOR VALUES FROM ({low}) TO ({high})"
                ).format(
                    name=sql.Identifier(name),
                    low=sql.Literal(_floor(conn, start, 0)),
                    high=sql.Literal(_floor(conn, start, 1)),
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER llm_ledger_events_reject_truncate BEFORE TRUNCATE ON {name}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION llm_ledger_events_reject_change()"
                ).format(name=sql.Identifier(name))
            )
            created += 1
    return created


def _floor(conn: psycopg.Connection[Any], month: datetime, later: int) -> str:
    row = conn.execute(
        "SELECT llm_ledger_month_floor((%s::timestamptz AT TIME ZONE 'UTC') + make_interval(months => %s))",
        (month, later),
    ).fetchone()
    return str(row[0]) if row else ""


def leaf_partitions(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_partition_tree('llm_ledger_events') WHERE isleaf").fetchone()
    return int(row[0]) if row else 0


def add_empty_partitions(url: str, end: datetime, total: int) -> None:
    """Empty monthly partitions after the data's, until ``total`` leaf partitions exist."""
    months = 1
    while leaf_partitions(url) < total:
        months += total - leaf_partitions(url)
        create_month_partitions(url, end, months)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=24_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--partition-counts", default="60,120", help="leaf partitions to time the queries at")
    parser.add_argument(
        "--revision", default="head", help="migrate to this revision (0007: the unpartitioned table, to compare)"
    )
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--database-url", default=None, help="reuse this loaded database")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-results", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/scale.py", *sys.argv[1:]])
    load_before = os.getloadavg()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    days = args.months * DAYS_PER_MONTH
    plan = make_plan(args.events, args.tenants, days, end, args.seed, genuine_days=GENUINE_DAYS)
    lines = [
        f"Measured on {datetime.now(UTC):%Y-%m-%d}: {machine()}; load average before the run "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}.",
        "",
        f"```bash\n{command}\n```",
        "",
    ]
    partitioned = args.revision == "head"
    with database(args.server, args.database_url, args.keep, args.revision) as (url, fresh):
        lines.insert(1, f"{server_settings(url)}.")
        if fresh:
            check_sample(plan)
            if partitioned:
                create_month_partitions(url, end - timedelta(days=days), args.months + 4)
            print(f"loading {args.events:,} events into {url} ...", file=sys.stderr, flush=True)
            loaded, sealing = 0, 0.0
            started = time.perf_counter()
            per_month = plan.slices // args.months
            for month in range(args.months):
                last = month == args.months - 1
                part = load(url, plan, range(month * per_month, plan.slices if last else (month + 1) * per_month))
                loaded += part.events
                seal_started = time.perf_counter()
                seal(url)
                sealing += time.perf_counter() - seal_started
            seconds = time.perf_counter() - started
            lines.append(
                f"- Load: {loaded:,} events over {days} days, the last {GENUINE_DAYS} days with genuine hash chains "
                f"(the older with random hashes of the right shape: verify --since does not read them), COPYed by "
                f"hour and sealed (`llm-ledger audit seal`, every tenant) after each of the {args.months} months: "
                f"{seconds:.0f} s in all ({loaded / seconds:,.0f} events/s), of which sealing {sealing:.0f} s; "
                f"load average after {os.getloadavg()[0]:.2f}."
            )
            caught = catch_up(url, 20_000, None)
            lines.append(
                f"- Projector catch-up: {caught.events:,} events in {caught.seconds:.0f} s ({caught.rate:,.0f}/s)."
            )
        sizes = partition_sizes(url)
        events = sum(p.rows for p in sizes)
        heap, index = sum(p.heap_bytes for p in sizes), sum(p.index_bytes for p in sizes)
        lines += [
            "",
            f"- {len(sizes)} partitions, {events:,} events: heap {heap / 2**30:.2f} GiB, "
            f"indexes {index / 2**30:.2f} GiB; "
            f"per million events {heap / max(events, 1) * 1e6 / 2**20:,.0f} MiB heap + "
            f"{index / max(events, 1) * 1e6 / 2**20:,.0f} MiB indexes.",
            "",
            "| partition | rows | heap MiB | indexes MiB |",
            "|---|---:|---:|---:|",
            *(
                f"| `{p.name}` | {p.rows:,} | {p.heap_bytes / 2**20:,.0f} | {p.index_bytes / 2**20:,.0f} |"
                for p in sizes
            ),
            "",
        ]
        end = data_end(url)
        with psycopg.connect(url) as conn:
            tenants = [r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM llm_ledger_step_stats ORDER BY 1")]
        queries = run_queries(url, end, tenants, args.runs)
        lines += ["| query (per tenant) | window | groups | median ms | p90 ms |", "|---|---|---|---|---|"]
        lines += [
            f"| {t.label} | {t.window} | {t.groups} | {t.median_ms:.1f} | {t.p90_ms:.1f} |" for t in queries.timings
        ]
        seconds, report = verify_since(url, "30d")
        lines += [
            "",
            f"- `llm-ledger audit verify --since 30d`: {seconds:.1f} s, {report.get('events', 0):,} events in "
            f"{report.get('streams', 0):,} streams checked ({float(report.get('events', 0)) / seconds:,.0f} events/s), "  # type: ignore[arg-type]
            f"ok={report.get('ok')}.",
            "",
            "| leaf partitions | raw 1-day breakdown ms | its plan ms | read_session ms | read_stream ms "
            "| read_all page ms |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        counts = [int(c) for c in args.partition_counts.split(",") if c] if partitioned else []
        for target in [0, *counts]:
            if target:
                add_empty_partitions(url, end, target)
            t = time_partition_count(url, tenants, end, args.runs)
            lines.append(
                f"| {t.partitions or '1 (unpartitioned)'} | {t.raw_day_ms:.1f} | {t.plan_ms:.2f} "
                f"| {t.session_ms:.1f} | {t.stream_ms:.1f} | {t.cursor_page_ms:.1f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_results:
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
