"""Ingest throughput and memory of the event store on a local PostgreSQL.

Run by hand:  .venv/bin/python bench/ingest.py [--events 75000] [--backlog 1000000] [--revision 0007]

1. Writer rate: events per second through the real ``BufferedWriter`` into a freshly migrated database
   (indexes, append-only triggers, FORCEd row-level security), the store built with ``llm_ledger_writer``
   (which COPYs each batch straight into the table as ``llm_ledger_ingest``, migration 0003). The drafts
   are made beforehand by the real executor on mock models (20 tenants running concurrently) and kept
   unsealed, so the timed part includes what the writer does in production:
   sealing (hashing) each draft, checking it (``event_to_row``) and inserting it. The clock runs from the
   first ``emit`` until ``wait_stored()`` returns, i.e. until every event is committed. The producer never lets
   more than ``max_queue`` events wait (beyond that the writer spills to its spool instead of writing).
   Also timed: the database stage alone (``EventStore.append_rows`` on rows checked beforehand), by the
   direct COPY and by the staging path (the ingest role's INSERT revoked in that database), and
   sealing + checking alone (no database).
2. COPY rate: the same rows (payload as JSON text, built beforehand) through psycopg's ``cursor.copy()``
   into a twin table, ``LIKE llm_ledger_events INCLUDING ALL`` (same columns, ``tx_id`` included, defaults,
   identity, constraints and indexes; no trigger, no row-level security, no role: the costs the writer
   adds), from the first row to the commit (median of three): the baseline of the ratio. At head the events
   table is partitioned (migration 0008) and the baseline is its partitioned twin: ``LIKE ... INCLUDING
   ALL`` partitioned by ``stream_id`` with partitions of the same bounds (the unpartitioned twin is still
   measured). ``--revision 0007`` measures everything on the unpartitioned table instead, for comparison.
   Also into a bare table (columns and defaults, no index or constraint) and into the events table itself.
3. Writer memory at a backlog: the writer points at a closed port, drafts are made one by one just before
   they are emitted (so the benchmark holds none), as fast as possible; peak RSS against the RSS before
   emitting, and what went to the spool. Runs in a child process so that its peak RSS is its own.

Each timed measurement gets a database of its own (created, migrated, CHECKPOINTed, dropped).
Prints a markdown report and writes it to ``bench/INGEST_RESULTS.md`` (text after the
``<!-- notes -->`` line of an existing file is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import os
import platform
import resource
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the workload lives with the store tests

import orjson
import psycopg
import sqlalchemy
from psycopg import sql

from llm_ledger.events import EventDraft, StreamHeader, StreamSealer, uuid7
from llm_ledger.events.model import Payload
from llm_ledger.events.values import JsonPayload
from llm_ledger.store.migrate import upgrade
from llm_ledger.store.process_writer import ProcessWriter
from llm_ledger.store.rows import event_to_row
from llm_ledger.store.schema import STORED_COLUMNS
from llm_ledger.store.scoping import INGEST_ROLE, WRITER_ROLE
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import DEFAULT_BATCH_SIZE, BufferedWriter
from tests.store.workload import DraftSink, run_executions

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:9/x"
RESULTS = ROOT / "bench" / "INGEST_RESULTS.md"
NOTES_MARKER = "<!-- notes -->"
TWIN = "llm_ledger_events_twin"
PARTITIONED_TWIN = "llm_ledger_events_partitioned_twin"
"""The partitioned events table's twin (0008): the same, partitioned alike, with the same partitions."""
BARE = "llm_ledger_events_bare"
# How each COPY target is made from the events table (the events table itself needs nothing).
TABLE_LIKE = {TWIN: "INCLUDING ALL", BARE: "INCLUDING DEFAULTS INCLUDING IDENTITY"}
COPY_RUNS = 3
EVENTS_PER_EXECUTION = 4.9  # measured on the workload's mock chain (retries, some fallbacks)


# --- databases ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(server: str, revision: str = "head", keep: bool = False) -> Iterator[str]:
    """A new database migrated to ``revision`` (0007: the events table unpartitioned), CHECKPOINTed, dropped
    on exit unless ``keep`` (its URL is then printed); yields its URL."""
    name = f"llm_ledger_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    try:
        upgrade(url, revision)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        yield url
    finally:
        if keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:  # the superuser: row-level security does not hide rows from it
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the benchmark's own heap (pre-made drafts or rows: millions of objects) out of the garbage
    collector's full passes while measuring: a production writer does not carry it."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()


# --- event generation ---------------------------------------------------------------------------------


def generate_drafts(count: int, tenants: int) -> list[EventDraft]:
    """At least ``count`` drafts from the real executor on mock models, ``tenants`` tenants at once (their
    events interleave as they would in one process serving them all); the first ``count`` are returned."""
    sink = DraftSink()
    round_ = 0
    while len(sink.drafts) < count:
        missing = count - len(sink.drafts)
        per_tenant = max(1, math.ceil(missing / (tenants * EVENTS_PER_EXECUTION) * 1.02))

        async def one_round(per_tenant: int = per_tenant, round_: int = round_) -> None:
            await asyncio.gather(
                *(
                    run_executions(sink, per_tenant, tenant=f"tenant-{t:02d}", session=f"s-{t}-{round_}")
                    for t in range(tenants)
                )
            )

        asyncio.run(one_round())
        round_ += 1
    return sink.drafts[:count]


def tenants_per_batch(drafts: Sequence[EventDraft], batch_size: int) -> float:
    return statistics.fmean(
        len({d.tenant_id for d in drafts[i : i + batch_size]}) for i in range(0, len(drafts), batch_size)
    )


# --- 1. the writer -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriterRun:
    batch_size: int
    events: int
    seconds: float
    tenants_per_batch: float
    kind: str = "thread"

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run_writer(url: str, drafts: list[EventDraft], batch_size: int, spool_dir: Path, kind: str = "thread") -> WriterRun:
    """Emit every draft to a BufferedWriter (``kind="process"``: a ``ProcessWriter``, its writer process
    sealing and storing) and time until ``wait_stored()`` returns (all committed).

    The writer sends a batch to its spool instead of the database when more than ``max_queue`` events wait
    (it assumes the database cannot keep up), so the producer here never lets more than ``max_queue`` wait:
    it emits a batch whenever there is room for one. The writer is never idle and never spills.
    """
    store = EventStore(url, role=WRITER_ROLE)
    writer: BufferedWriter | ProcessWriter
    if kind == "process":
        writer = ProcessWriter(url, spool_dir, role=WRITER_ROLE, batch_size=batch_size)
    else:
        writer = BufferedWriter(store, spool_dir, batch_size=batch_size)
    ceiling = 10_000 - batch_size
    spread = tenants_per_batch(drafts, batch_size)
    start = time.perf_counter()
    for i in range(0, len(drafts), batch_size):
        while writer.stats.queued > ceiling:
            time.sleep(0.01)  # the headroom is thousands of events: no need to wake (and take the GIL) often
        for draft in drafts[i : i + batch_size]:
            writer.emit(draft)
    if not writer.wait_stored(timeout=3600):
        raise RuntimeError("the writer did not store every event")
    seconds = time.perf_counter() - start
    stats = writer.close()
    store.close()
    stored = count_rows(url, "llm_ledger_events")
    if not (stats.written == stored == len(drafts) and stats.spooled == stats.rejected == 0):
        raise RuntimeError(f"not every event was written exactly once: {stats}, {stored} rows in the table")
    return WriterRun(batch_size, len(drafts), seconds, spread, kind)


@dataclass(frozen=True, slots=True)
class AppendRun:
    batch_size: int
    events: int
    seconds: float
    staged: bool = False

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run_append_rows(url: str, rows: list[dict[str, Any]], batch_size: int, *, staged: bool = False) -> AppendRun:
    """The writer's database stage alone: ``EventStore.append_rows`` (as the writer calls it, same role and
    store) on rows checked beforehand, one batch after the other."""
    if staged:
        # As in a database without migration 0003's grant: the store then keeps the staging path.
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"REVOKE INSERT ON llm_ledger_events FROM {INGEST_ROLE}"))
        engine.dispose()
    store = EventStore(url, role=WRITER_ROLE)
    start = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        store.append_rows(rows[i : i + batch_size])
    seconds = time.perf_counter() - start
    store.close()
    stored = count_rows(url, "llm_ledger_events")
    if stored != len(rows):
        raise RuntimeError(f"append_rows stored {stored} rows of {len(rows)}")
    return AppendRun(batch_size, len(rows), seconds, staged)


def prepare_seconds_per_event(drafts: list[EventDraft]) -> float:
    """What the writer thread spends per event before the database: sealing plus ``event_to_row``."""
    start = time.perf_counter()
    for index, draft in enumerate(drafts):
        event_to_row(draft, index)
    return (time.perf_counter() - start) / len(drafts)


# --- 2. COPY ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyRun:
    table: str
    per_transaction: int | None
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def copy_values(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as COPY takes them, payload as JSON text."""
    return [tuple(orjson.dumps(row[c]).decode() if c == "payload" else row[c] for c in STORED_COLUMNS) for row in rows]


def run_copy(url: str, values: list[tuple[Any, ...]], per_transaction: int | None, table: str = TWIN) -> CopyRun:
    """COPY ``values`` into ``table``: by default the twin of the events table (``LIKE ... INCLUDING ALL``:
    its columns, defaults, identity, check and unique constraints and indexes, but no trigger or row-level
    security); the bare table (defaults and NOT NULLs only); or ``llm_ledger_events`` itself, as the
    superuser (row-level security does not apply to a superuser, and no trigger fires on INSERT)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, STORED_COLUMNS))
    )
    with psycopg.connect(url) as conn:
        if table == PARTITIONED_TWIN:
            make_partitioned_twin(conn)
            conn.commit()
        elif table in TABLE_LIKE:
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE llm_ledger_events {})").format(
                    sql.Identifier(table), sql.SQL(TABLE_LIKE[table])
                )
            )
            conn.commit()
        step = per_transaction or len(values)
        start = time.perf_counter()
        with conn.cursor() as cursor:
            for i in range(0, len(values), step):
                with cursor.copy(statement) as copy:
                    for value in values[i : i + step]:
                        copy.write_row(value)
                conn.commit()
        seconds = time.perf_counter() - start
    stored = count_rows(url, table)
    if stored != len(values):
        raise RuntimeError(f"COPY stored {stored} rows of {len(values)}")
    return CopyRun(table, per_transaction, len(values), seconds)


def is_partitioned(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = 'llm_ledger_events'::regclass").fetchone()
        return bool(row and row[0])


def make_partitioned_twin(conn: psycopg.Connection[Any]) -> None:
    """``LIKE llm_ledger_events INCLUDING ALL``, partitioned by ``stream_id`` like it, with a partition of the
    same bounds for each of its partitions (the months made ahead and the default): the rows are routed to
    the same partitions as in the events table."""
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE llm_ledger_events INCLUDING ALL) PARTITION BY RANGE (stream_id)").format(
            sql.Identifier(PARTITIONED_TWIN)
        )
    )
    partitions = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'llm_ledger_events'::regclass"
    ).fetchall()
    for name, bound in partitions:
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
                sql.Identifier(f"twin_{name}"), sql.Identifier(PARTITIONED_TWIN), sql.SQL(bound)
            )
        )


# --- 3. memory at a backlog (child process) ---------------------------------------------------------------

Template = tuple[StreamHeader, list[tuple[str, Any, str | None, str | None]]]


def executions_as_templates(tenants: int, per_tenant: int) -> list[Template]:
    """Real executions (their stream headers and, per event, type, payload builder, trace and span ids),
    to be re-drafted as new streams."""
    sink = DraftSink()

    async def executions() -> None:
        await asyncio.gather(
            *(run_executions(sink, per_tenant, tenant=f"tenant-{t:02d}", session=f"s-{t}") for t in range(tenants))
        )

    asyncio.run(executions())
    streams: dict[Any, Template] = {}
    for draft in sink.drafts:
        header = draft._sealer.header
        _, events = streams.setdefault(header.stream_id, (header, []))
        events.append((draft.event_type, draft._build or draft._payload, draft.trace_id, draft.span_id))
    return list(streams.values())


def _own_payload(payload: Any) -> Payload | Callable[[], Payload] | JsonPayload:
    """A payload (builder) of the draft's own, as the executor gives each draft (a ``JsonPayload`` stays one)."""
    if isinstance(payload, functools.partial):
        return type(payload)(payload.func, *payload.args, **payload.keywords)
    if callable(payload):
        return payload  # type: ignore[no-any-return]
    return payload.model_copy()  # type: ignore[no-any-return]


def lazy_drafts(templates: list[Template], count: int) -> Iterator[EventDraft]:
    """``count`` drafts of new streams (new ids, times now), each made just before it is taken."""
    made = 0
    while True:
        for header, events in templates:
            sealer = StreamSealer(
                StreamHeader(uuid7(), header.tenant_id, header.agent_id, header.session_id, header.turn_id, header.step)
            )
            for event_type, payload, trace_id, span_id in events:
                if made == count:
                    return
                yield sealer.draft(
                    event_type,
                    _own_payload(payload),
                    occurred_at=datetime.now(UTC),
                    trace_id=trace_id,
                    span_id=span_id,
                )
                made += 1


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def backlog_child(events: int, tenants: int) -> dict[str, Any]:
    logging.getLogger("llm_ledger.store").setLevel(logging.ERROR)  # one warning per outage; not wanted here
    templates = executions_as_templates(tenants, 20)
    with tempfile.TemporaryDirectory(prefix="llm-ledger-bench-spool-") as spool:
        store = EventStore(UNREACHABLE_URL, role=WRITER_ROLE)
        writer = BufferedWriter(store, spool)
        gc.collect()
        before_kib = _status_kib("VmRSS")
        samples: list[tuple[int, int]] = []  # (VmRSS KiB, events waiting in memory), every 50 ms
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                samples.append((_status_kib("VmRSS"), writer.stats.queued))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        for draft in lazy_drafts(templates, events):
            writer.emit(draft)
        emitted = time.perf_counter() - start
        if not writer.flush(timeout=1800):
            raise RuntimeError("the writer did not drain its backlog")
        drained = time.perf_counter() - start
        done.set()
        sampler.join()
        stats = writer.close()
        store.close()
        after_kib = _status_kib("VmRSS")
        peak_kib = _status_kib("VmHWM")
        files = list(Path(spool).iterdir())
        peak_queue = max(queued for _, queued in samples)
        # RSS while the queue is full, apart from what the writer thread reads back from the spool later.
        full = [rss for rss, queued in samples if queued >= writer.hard_limit - 2 * writer.batch_size] or [0]
        return {
            "events": events,
            "emit_seconds": emitted,
            "drain_seconds": drained,
            "rss_before_mib": before_kib / 1024,
            "rss_peak_mib": peak_kib / 1024,
            "rss_after_mib": after_kib / 1024,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_queued": peak_queue,
            "max_queue": writer.max_queue,
            "hard_limit": writer.hard_limit,
            "stats": asdict(stats),
            "spool_bytes": sum(f.stat().st_size for f in files),
            "spool_files": len(files),
            "largest_file_bytes": max((f.stat().st_size for f in files), default=0),
            "rss_full_queue_mib": max(full) / 1024,
        }


def run_backlog(events: int, tenants: int) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--backlog-child", "--backlog", str(events)]
    command += ["--tenants", str(tenants)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the backlog child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the report ----------------------------------------------------------------------------------------------


def machine() -> str:
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return f"{os.cpu_count()} cores, {total_kib / 2**20:.0f} GiB, {platform.processor() or platform.machine()}"


def server_version(server: str) -> str:
    with psycopg.connect(f"{server}/postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings = conn.execute(
            "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings"
            " WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size')"
        ).fetchone()
    return f"PostgreSQL {row[0] if row else '?'} ({settings[0] if settings else ''})"


def report(
    *,
    command: str,
    server: str,
    load: tuple[float, float, float],
    writers: list[WriterRun],
    copies: list[CopyRun],
    prepare_us: float | None,
    append: AppendRun | None,
    staged: AppendRun | None,
    backlog: dict[str, Any] | None,
    revision: str = "head",
) -> str:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        "## Ingest: writer, COPY, backlog memory (`bench/ingest.py`)",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Measured on {today}: {machine()}, CPython {platform.python_version()}, {server_version(server)},",
        f"psycopg {psycopg.__version__}, SQLAlchemy {sqlalchemy.__version__}; schema revision {revision}; load"
        " average before the run "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the machine is shared).",
        "",
    ]
    if writers or copies:
        lines += ["| measurement | events | seconds | events/s |", "|---|---|---|---|"]
        for w in writers:
            tag = " (default)" if w.batch_size == DEFAULT_BATCH_SIZE else ""
            lines.append(
                f"| {'ProcessWriter' if w.kind == 'process' else 'BufferedWriter'}, batch_size {w.batch_size}{tag},"
                f" ~{w.tenants_per_batch:.0f} tenants a batch "
                f"| {w.events} | {w.seconds:.2f} | {w.rate:,.0f} |"
            )
        for run in (append, staged):
            if run is not None:
                how = (
                    "staging path (ingest role without INSERT)" if run.staged else "direct COPY as `llm_ledger_ingest`"
                )
                lines.append(
                    f"| its database stage alone: `EventStore.append_rows`, {how}, batches of {run.batch_size}, rows "
                    f"checked beforehand | {run.events} | {run.seconds:.2f} | {run.rate:,.0f} |"
                )
        for c in copies:
            how = "one transaction" if c.per_transaction is None else f"one transaction per {c.per_transaction} rows"
            what = {
                TWIN: "the twin table (`LIKE llm_ledger_events INCLUDING ALL`: all its indexes and constraints)",
                PARTITIONED_TWIN: "the partitioned twin (the same, partitioned alike, with the same partitions)",
                BARE: "a bare table (same columns and defaults, no index or constraint)",
            }.get(c.table, f"`{c.table}` itself (superuser)")
            lines.append(f"| COPY into {what}, {how} | {c.events} | {c.seconds:.2f} | {c.rate:,.0f} |")
        lines.append("")
        twin = PARTITIONED_TWIN if any(c.table == PARTITIONED_TWIN for c in copies) else TWIN
        copy_one = next((c for c in copies if c.per_transaction is None and c.table == twin), None)
        bare = next((c for c in copies if c.per_transaction is None and c.table == BARE), None)
        default = next((w for w in writers if w.batch_size == DEFAULT_BATCH_SIZE), None)
        best = max(writers, key=lambda w: w.rate) if writers else None
        if copy_one and default and best:
            lines.append(
                f"- **writer / COPY into the {'partitioned ' if twin == PARTITIONED_TWIN else ''}twin:"
                f" {default.rate / copy_one.rate:.2f}** at the default batch_size "
                f"{DEFAULT_BATCH_SIZE}; {best.rate / copy_one.rate:.2f} at the best, batch_size {best.batch_size} "
                "(target >= 0.8)."
            )
        if bare and default and best:
            lines.append(
                f"- writer / COPY into the bare table: {default.rate / bare.rate:.2f} at the default batch_size; "
                f"{best.rate / bare.rate:.2f} at the best."
            )
        if prepare_us is not None:
            lines.append(
                f"- Sealing + `event_to_row` alone (no database), on drafts of the same workload: "
                f"{prepare_us:.1f} us an event, i.e. at most {1e6 / prepare_us:,.0f} events/s for one writer thread "
                f"before any SQL."
            )
        lines.append("")
    if backlog:
        stats = backlog["stats"]
        lines += [
            f"Backlog of {backlog['events']:,} events, database unreachable (default writer settings: "
            f"max_queue {backlog['max_queue']:,}, hard_limit {backlog['hard_limit']:,}, "
            f"batch_size {DEFAULT_BATCH_SIZE}):",
            "",
            "| figure | value |",
            "|---|---|",
            f"| emitting all events took (emit blocks at hard_limit) | {backlog['emit_seconds']:.1f} s |",
            f"| until every event was spooled (`flush()` returned) | {backlog['drain_seconds']:.1f} s "
            f"({backlog['events'] / backlog['drain_seconds']:,.0f} events/s) |",
            f"| RSS before emitting | {backlog['rss_before_mib']:.0f} MiB |",
            f"| peak RSS (VmHWM) | {backlog['rss_peak_mib']:.0f} MiB "
            f"(+{backlog['rss_peak_mib'] - backlog['rss_before_mib']:.0f} MiB) |",
            f"| highest RSS sampled while the queue was full | {backlog['rss_full_queue_mib']:.0f} MiB "
            f"(+{backlog['rss_full_queue_mib'] - backlog['rss_before_mib']:.0f} MiB) |",
            f"| RSS after the backlog was spooled | {backlog['rss_after_mib']:.0f} MiB |",
            f"| most events waiting in memory (sampled every 50 ms) | {backlog['peak_queued']:,} |",
            f"| spooled / written / rejected | {stats['spooled']:,} / {stats['written']:,} / {stats['rejected']:,} |",
            f"| spool on disk | {backlog['spool_bytes'] / 2**20:.0f} MiB in {backlog['spool_files']} files "
            f"({backlog['spool_bytes'] / max(1, stats['spooled']):.0f} bytes an event), the largest "
            f"{backlog['largest_file_bytes'] / 2**20:.0f} MiB |",
            "",
        ]
    lines += [
        "**Method.** Each timed measurement runs in a database of its own (`llm_ledger_bench_<random>`), "
        "migrated with `llm_ledger.store.migrate.upgrade` (all indexes, the append-only triggers, roles, "
        "row-level security FORCEd), CHECKPOINTed before the clock starts, and dropped afterwards.",
        "",
        "- *Writer*: the events come from the real executor on mock models (`p50_ms=0`, 30% rate limits, "
        "one retry, fallbacks: ~4.9 events an execution) for 20 tenants running concurrently in one event "
        "loop, so a batch mixes every tenant. The sink keeps the executor's `EventDraft`s unsealed; they "
        "are made before the clock starts, so the timed part is what the writer thread does in production: "
        "seal (hash) each draft, check it (`event_to_row`), and insert the batch in one transaction (store built "
        "as `EventStore(url, role='llm_ledger_writer')` on a superuser connection, which may take "
        "`llm_ledger_ingest`: each batch is `SET LOCAL ROLE llm_ledger_ingest` and one `COPY` into the events "
        "table, triggers and row-level security in force, the role bypassing the latter; a unique conflict "
        "would redo the batch through the staging path). One thread seals each batch and appends it to the "
        "journal (fsynced); a second copies the journaled batches to the database "
        "(`EventStore.append_streaming`), so that the next batch is sealed while the server stores the last. "
        "The clock runs from the "
        "first `emit` to `wait_stored()` returning, i.e. until every event is committed; the table is then "
        "counted. The writer sends batches to its spool when more than `max_queue` events wait, so the "
        "producer emits a batch whenever there is room for one: the writer is never idle and never spills "
        "(checked: `spooled == 0`, `written == rows == N`). Defaults otherwise (`max_queue` 10,000).",
        "- *Database stage alone*: the same rows (`event_to_row` of the sealed drafts, made before the clock) "
        "given to `EventStore.append_rows` batch after batch (the same transaction and direct `COPY` as the "
        "writer's, rows made beforehand): what the insert path costs without sealing and checking. Twice: by "
        "the direct COPY, and by the staging path (COPY into "
        "a temporary table, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` per tenant under "
        "`llm_ledger_writer` and row-level security), which the store takes when the ingest role's `INSERT` is "
        "revoked in that database.",
        "- *COPY*: the very rows the writer stored, payload serialized to JSON text beforehand, written with "
        "psycopg's `cursor.copy()` / `write_row` (text format), timed from the first row to the commit; the "
        "median of three runs, each in a fresh database. The baseline of the ratio is the twin, `CREATE TABLE "
        "twin (LIKE llm_ledger_events INCLUDING ALL)`: the same columns (`tx_id` included), defaults, identity, "
        "check and unique constraints and indexes (the `tx_id` one included), without the append-only triggers, "
        "row-level security and roles, which are costs the writer adds. For scale, also a bare table (`LIKE "
        "... INCLUDING DEFAULTS INCLUDING IDENTITY`: no index or constraint) and the events table itself (as "
        "the superuser, whom row-level security does not apply to).",
        "- *Backlog*: in a child process (its peak RSS is its own), the writer's URL is a closed port "
        "(`127.0.0.1:9`). Drafts are made one at a time just before `emit` (new streams re-drafted through "
        "`StreamSealer.draft` from real executions' payload builders, each draft with its own builder), as "
        "fast as the process can, so the benchmark itself holds no drafts. RSS is read from "
        "`/proc/self/status` (VmRSS before emitting, VmHWM for the peak); the writer's queue length is "
        "sampled every 50 ms.",
        "",
    ]
    return "\n".join(lines)


def write_results(path: Path, text: str) -> None:
    """Write ``text``, keeping what follows the notes marker of the existing file."""
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    path.write_text(text + "\n" + (notes or NOTES_MARKER + "\n"))


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--events", type=int, default=75_000, help="events per rate measurement (~30 s a writer variant here)"
    )
    parser.add_argument(
        "--batch-sizes",
        default=f"{DEFAULT_BATCH_SIZE},500,2000",
        help="writer batch sizes; the first also sizes the database-stage and per-batch COPY runs",
    )
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument(
        "--writer", choices=("thread", "process"), default="thread", help="the writer measured (process: ProcessWriter)"
    )
    parser.add_argument("--backlog", type=int, default=1_000_000, help="events of the memory measurement (0: skip)")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL, without a database")
    parser.add_argument("--skip-copy", action="store_true")
    parser.add_argument(
        "--revision",
        default="head",
        help="the schema revision of every database: head (the events table partitioned, migration 0008; its"
        " COPY baseline the partitioned twin) or 0007 (unpartitioned, for comparison)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the report")
    parser.add_argument("--no-results", action="store_true", help="print the report only")
    parser.add_argument("--backlog-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.backlog_child:
        print(json.dumps(backlog_child(args.backlog, args.tenants)))
        return
    command = shlex.join([".venv/bin/python", "bench/ingest.py", *sys.argv[1:]])
    load = os.getloadavg()
    batch_sizes = [int(size) for size in args.batch_sizes.split(",") if size]
    writers: list[WriterRun] = []
    copies: list[CopyRun] = []
    prepare_us: float | None = None
    append: AppendRun | None = None
    staged: AppendRun | None = None
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="llm-ledger-bench-") as tmp:
        # Not reported: the first writer run of a process measured 5-10% below the next ones (same batch
        # size, fresh database each), which would have charged the warm-up to whichever variant came first.
        warm_up = generate_drafts(min(args.events, 20_000), args.tenants)
        with frozen_heap(), fresh_database(args.server, args.revision) as url:
            run_writer(url, warm_up, DEFAULT_BATCH_SIZE, Path(tmp) / "spool-warm-up", args.writer)
        del warm_up
        for batch_size in batch_sizes:
            print(f"generating {args.events:,} events for batch_size {batch_size} ...", file=sys.stderr, flush=True)
            drafts = generate_drafts(args.events, args.tenants)
            with frozen_heap(), fresh_database(args.server, args.revision) as url:
                run = run_writer(url, drafts, batch_size, Path(tmp) / f"spool-{batch_size}", args.writer)
            print(f"  writer batch_size {batch_size}: {run.rate:,.0f} events/s", file=sys.stderr, flush=True)
            writers.append(run)
            if batch_size == batch_sizes[0]:
                # The very rows the writer stored (the drafts are sealed now: this only reads them back).
                rows = [event_to_row(draft, index) for index, draft in enumerate(drafts)]
            del drafts
        if rows:
            with frozen_heap(), fresh_database(args.server, args.revision) as url:
                append = run_append_rows(url, rows, batch_sizes[0])
            print(f"  append_rows alone: {append.rate:,.0f} events/s", file=sys.stderr, flush=True)
            with frozen_heap(), fresh_database(args.server, args.revision) as url:
                staged = run_append_rows(url, rows, batch_sizes[0], staged=True)
            print(f"  append_rows alone, staging path: {staged.rate:,.0f} events/s", file=sys.stderr, flush=True)
        if rows and not args.skip_copy:
            values = copy_values(rows)
            targets: tuple[tuple[str, int | None], ...] = (
                (TWIN, None),
                (TWIN, batch_sizes[0]),
                (BARE, None),
                ("llm_ledger_events", None),
            )
            with fresh_database(args.server, args.revision) as url:
                partitioned = is_partitioned(url)
            if partitioned:
                targets = ((PARTITIONED_TWIN, None), (PARTITIONED_TWIN, batch_sizes[0]), *targets)
            for table, per_transaction in targets:
                # COPY takes a second or two: the median of three runs, each in a fresh database.
                runs = []
                for _ in range(COPY_RUNS):
                    with frozen_heap(), fresh_database(args.server, args.revision) as url:
                        runs.append(run_copy(url, values, per_transaction, table))
                copies.append(sorted(runs, key=lambda run: run.seconds)[len(runs) // 2])
                print(
                    f"  COPY into {table}, per {per_transaction}: {copies[-1].rate:,.0f} rows/s",
                    file=sys.stderr,
                    flush=True,
                )
            del values
        del rows
        sample = generate_drafts(min(args.events, 50_000), args.tenants)
        with frozen_heap():
            prepare_us = prepare_seconds_per_event(sample) * 1e6
        del sample
    backlog = None
    if args.backlog:
        print(f"backlog of {args.backlog:,} events, database unreachable ...", file=sys.stderr, flush=True)
        backlog = run_backlog(args.backlog, args.tenants)
    text = report(
        command=command,
        server=args.server,
        load=load,
        writers=writers,
        copies=copies,
        prepare_us=prepare_us,
        append=append,
        staged=staged,
        backlog=backlog,
        revision=args.revision,
    )
    print(text)
    if not args.no_results:
        write_results(args.results, text)
        print(f"written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
