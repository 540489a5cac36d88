"""Erasing one session (``llm-ledger erase``'s work) as the ledger grows: the time does not depend on its size.

Run by hand:  .venv/bin/python bench/erasure.py [--events 1000000] [--sessions 40] [--keys 200000]

1. A fresh PostgreSQL database (``llm_ledger_erasure_<random>``, dropped at the end unless ``--keep``),
   migrated to head. ``--sessions`` sessions of one tenant are recorded in full (encrypted) by the real
   executor on a ``mock/`` model through a buffered writer (three executions each, every first one followed
   by a tool run: 11 events with content a session), with their data keys; ``--keys`` more key rows for
   other sessions are copied in, so that the key table is not trivially small.
2. The ledger is padded with ``bench/dashboard_queries.py``'s generator (its events keep sizes and digests,
   as capture ``hash``): first a tenth of ``--events``, then the rest.
3. At each size, half the recorded sessions (a different one each time) are erased with
   ``llm_ledger.audit.erasure.erase``, as a login granted only ``llm_ledger_eraser`` (row-level security and
   the grants in force): the plan (the keys by the key table's session index), then one call of
   ``llm_ledger_erase`` (the lock, the DELETE returning the keys, the events affected counted from the
   session's events by the events' session index, the erasure record).
   Median and maximum wall-clock time per erasure; each one is checked (one key, 11 events affected).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from bench.dashboard_queries import load, make_plan
from llm_ledger import LLMExecutor, LLMMessage, execution_context, record_tool_call
from llm_ledger.audit.erasure import erase
from llm_ledger.store import EventStore
from llm_ledger.store.migrate import upgrade
from llm_ledger.store.writer import BufferedWriter

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
TENANT = "tenant-erasure"


def record_sessions(url: str, sessions: int) -> None:
    with tempfile.TemporaryDirectory() as spool:
        store = EventStore(url)
        writer = BufferedWriter(store, Path(spool))

        async def run() -> None:
            executor = LLMExecutor("mock/primary?p50_ms=0", sink=writer, capture="full")
            for s in range(sessions):
                with execution_context(tenant_id=TENANT, agent_id="a", session_id=f"s-{s}"):
                    for i in range(3):
                        await executor.generate([LLMMessage(role="user", content=f"question {i} of session {s}")])
                    with record_tool_call("lookup", {"session": s}, sink=writer, capture="full") as tool:
                        tool.result = "found"

        asyncio.run(run())
        stats = writer.close(timeout=60)
        store.close()
        assert stats.written == stats.accepted, stats


def pad_keys(url: str, count: int) -> None:
    """Key rows of sessions nobody erases, spread over the padding's tenants."""
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO llm_ledger_content_keys (tenant_id, key_id, session_id, secret, created_at)"
            " SELECT 'tenant-' || lpad((n %% 20)::text, 2, '0'), gen_random_uuid(), 'pad-' || n,"
            " decode(md5(n::text) || md5((-n)::text), 'hex'), now() FROM generate_series(1, %s) AS n",
            (count,),
        )


def eraser_login(server: str, name: str, database: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        admin.execute(sql.SQL("GRANT llm_ledger_eraser TO {}").format(sql.Identifier(name)))
    scheme, rest = server.split("://", 1)
    return f"{scheme}://{name}@{rest.split('@', 1)[-1]}/{database}"


def time_erasures(url: str, sessions: list[int]) -> list[float]:
    store = EventStore(url)
    seconds = []
    try:
        for s in sessions:
            started = time.perf_counter()
            done = erase(store, TENANT, session_id=f"s-{s}")
            seconds.append(time.perf_counter() - started)
            assert done is not None and done.key_count == 1 and done.events_affected == 11, done
    finally:
        store.close()
    return seconds


def count_events(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        events = conn.execute("SELECT count(*) FROM llm_ledger_events").fetchone()
        keys = conn.execute("SELECT count(*) FROM llm_ledger_content_keys").fetchone()
    return (int(events[0]) if events else 0), (int(keys[0]) if keys else 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    name = f"llm_ledger_erasure_{secrets.token_hex(4)}"
    login = f"llm_ledger_erasure_login_{secrets.token_hex(4)}"
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{args.server}/{name}"
    try:
        upgrade(url)
        record_sessions(url, args.sessions)
        pad_keys(url, args.keys)
        eraser = eraser_login(args.server, login, name)
        plan = make_plan(args.events, 20, 30, datetime.now(UTC).replace(minute=0, second=0, microsecond=0), 5)
        tenth = plan.slices // 10
        half = args.sessions // 2
        rows = []
        for slices, erased in ((range(tenth), range(0, half)), (range(tenth, plan.slices), range(half, args.sessions))):
            load(url, plan, slices)
            events, keys = count_events(url)
            seconds = time_erasures(eraser, list(erased))
            rows.append((events, keys, statistics.median(seconds), max(seconds), len(seconds)))
            print(f"  {events:,} events: {statistics.median(seconds) * 1000:.1f} ms", file=sys.stderr, flush=True)
        print(f"load averages at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("| events in the ledger | key rows | erasures | median ms | max ms |")
        print("|---:|---:|---:|---:|---:|")
        for events, keys, median, worst, count in rows:
            print(f"| {events:,} | {keys:,} | {count} | {median * 1000:.1f} | {worst * 1000:.1f} |")
    finally:
        if args.keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


if __name__ == "__main__":
    main()
