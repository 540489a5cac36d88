"""The dashboard's latency queries and the projector's catch-up rate, on 10,000,000 events.

Run by hand:  .venv/bin/python bench/dashboard_queries.py [--events 10000000] [--tenants 20] [--days 30]

1. Load: ``--events`` events for ``--tenants`` tenants over ``--days`` days ending now (rounded down to the
   hour), COPYed as the superuser into a fresh database migrated with ``llm_ledger.store.migrate.upgrade``.
   The rows are built directly (no executor, no sealing): sessions of several turns, each turn four
   executions (context_extraction, rule_filtering, generation, enforcement) through chains of two or
   three models of different providers, log-normal latencies per provider and step, a few per cent of
   attempts failing (rate_limit, server_error, timeout; more during a few provider outages) with a retry
   and then a fallback, a few non-retryable failures that fail their execution. Payloads are what the
   executor records (valid per ``llm_ledger.events.model``, checked on a sample); ``hash``/``prev_hash``
   are random hex of the right shape linked along each stream (only the projector reads these rows; no
   chain is verified). Two worker processes build one hour of every tenant's traffic at a time, sorted by
   time; the main process COPYs the hours in order, one transaction per hour. Then VACUUM (ANALYZE).
2. Catch-up: ``Projector(url, batch_size=...).catch_up()`` from an empty projection over every event,
   per batch size (the read models are emptied between runs), events per second.
3. Queries, per tenant, the Latency page's percentiles: ``LedgerView.breakdown(tenant, window, ("step",
   "model"))`` with ``latency_percentiles()`` of every group, and ``series(tenant, window, by="step")``
   with the percentiles of every point, over the last 30 days and the last day of the data; against
   ``percentile_cont`` over the raw events (ExecutionSucceeded/ExecutionFailed of the tenant in the window,
   grouped the same way). Both read as ``llm_ledger_auditor`` (row-level security in force). Median over
   ``--runs`` runs, the tenants taken in turn.
4. Check, per tenant and window: the breakdown's groups and execution counts equal the raw events', and
   every percentile of every group is within 2% of the exact nearest-rank one (``percentile_disc``: the
   definition the histograms promise). Not ``percentile_cont``, the timed query's: where the tail is
   sparse, its interpolation between two ranks is a latency no execution had (a group of 1,087 executions
   whose 99th percentile lies between ranks of 17,323 ms and 20,056 ms: ``percentile_cont`` 17,706 ms,
   nearest rank 20,056 ms, the histogram 20,244 ms).

``--keep`` keeps the database (its URL is printed); ``--database-url`` reuses one (loaded and projected
already: only the queries run, unless ``--catch-up`` asks for the projector runs again). Prints a
markdown report and writes it to ``bench/DASHBOARD_RESULTS.md`` unless ``--no-results``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import random
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import psycopg
from psycopg import sql

from bench.ingest import machine, write_results
from bench.percentiles import p90
from llm_ledger.events import PAYLOAD_TYPES, Event, compute_hash, parse_event, verify_chain
from llm_ledger.projections import Projector
from llm_ledger.projections.grains import DAY, HOUR, MINUTE, display_grain, floor
from llm_ledger.projections.queries import LedgerView, Window
from llm_ledger.projections.rollup import provider_of
from llm_ledger.projections.schema import READ_MODELS
from llm_ledger.store.migrate import upgrade
from llm_ledger.store.schema import STORED_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
RESULTS = ROOT / "bench" / "DASHBOARD_RESULTS.md"
SLICE_SECONDS = HOUR
EVENTS_PER_EXECUTION = 4.1  # measured on this generator: 4 events, plus retries and fallbacks

# --- the workload's shape ------------------------------------------------------------------------------

STEPS = ("context_extraction", "rule_filtering", "generation", "enforcement")
HAIKU_OR = "openrouter/anthropic/claude-3-haiku"
HAIKU = "anthropic/claude-3-haiku"
MINI = "openai/gpt-4o-mini"
LLAMA = "groq/llama-3.1-8b-instant"
SONNET = "anthropic/claude-3-5-sonnet"
GPT4O = "openai/gpt-4o"
CHAINS: tuple[dict[str, tuple[str, ...]], ...] = (
    # one configuration per agent kind: step -> chain
    {
        "context_extraction": (LLAMA, MINI),
        "rule_filtering": (MINI, LLAMA),
        "generation": (HAIKU_OR, HAIKU, MINI),
        "enforcement": (HAIKU, MINI),
    },
    {
        "context_extraction": (MINI, LLAMA),
        "rule_filtering": (LLAMA, HAIKU),
        "generation": (GPT4O, SONNET, HAIKU_OR),
        "enforcement": (MINI, HAIKU),
    },
    {
        "context_extraction": (HAIKU, MINI),
        "rule_filtering": (LLAMA, MINI),
        "generation": (SONNET, GPT4O),
        "enforcement": (LLAMA, HAIKU_OR),
    },
)
AGENT_NAMES = ("support-assistant", "claims-triage", "sales-copilot", "kb-answerer")
# log-normal latency: median ms and sigma per provider; a factor per step
PROVIDER_LATENCY = {
    "groq": (180.0, 0.45),
    "openai": (620.0, 0.55),
    "anthropic": (900.0, 0.5),
    "openrouter": (1150.0, 0.65),
}
MODEL_FACTOR = {SONNET: 1.8, GPT4O: 1.5}
STEP_FACTOR = {"context_extraction": 0.7, "rule_filtering": 0.45, "generation": 2.6, "enforcement": 0.6}
STEP_TOKENS = {
    "context_extraction": (900, 60),
    "rule_filtering": (600, 20),
    "generation": (1800, 420),
    "enforcement": (700, 30),
}
BASE_FAILURE = {"groq": 0.035, "openai": 0.02, "anthropic": 0.025, "openrouter": 0.03}
RETRY_FAILURE = 0.3
NON_RETRYABLE = 0.002  # an invalid request or an overlong context: the execution fails at once
ERRORS = (  # error type, class, status, cumulative share of transient failures (55%, 30%, 15%)
    ("rate_limit", "RateLimitError", 429, 0.55),
    ("server_error", "ServerError", 503, 0.85),
    ("timeout", "TimeoutError", None, 1.01),
)
ATTEMPT_TIMEOUT_S = 30
MAX_RETRIES = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """What every worker needs to build its slices the same way."""

    start: float  # epoch seconds of the first slice
    slices: int
    events_per_slice: int
    tenants: tuple[tuple[str, float, tuple[tuple[str, int], ...]], ...]  # tenant, weight, (agent, chain kind)
    outages: dict[str, tuple[tuple[float, float, float], ...]]  # provider -> (start, end, failure probability)
    seed: int
    genuine_from: float | None = None  # epoch seconds: streams of slices from then on get real hash chains


def make_plan(events: int, tenants: int, days: int, end: datetime, seed: int, *, genuine_days: float = 0) -> Plan:
    """``genuine_days``: the last days of the data get real hash chains (what ``audit verify`` checks; building
    such an event costs four times as much), the others random hex of the right shape."""
    rng = random.Random(seed)
    slices = days * DAY // SLICE_SECONDS
    start = end.timestamp() - days * DAY
    tenant_rows = []
    for t in range(tenants):
        weight = rng.lognormvariate(0, 0.6)  # some tenants several times busier than others
        agents = tuple((f"{AGENT_NAMES[a]}", (t + a) % len(CHAINS)) for a in range(rng.choice((2, 3, 3, 4))))
        tenant_rows.append((f"tenant-{t:02d}", weight, agents))
    outages: dict[str, tuple[tuple[float, float, float], ...]] = {}
    for provider in PROVIDER_LATENCY:
        windows = []
        for _ in range(3):
            begin = start + rng.uniform(0, days * DAY - 4 * HOUR)
            windows.append((begin, begin + rng.uniform(0.5, 3) * HOUR, rng.uniform(0.3, 0.7)))
        outages[provider] = tuple(windows)
    genuine_from = end.timestamp() - genuine_days * DAY if genuine_days else None
    return Plan(start, slices, math.ceil(events / slices), tuple(tenant_rows), outages, seed, genuine_from)


class SliceBuilder:
    """Builds the COPY text of one slice (an hour of every tenant's traffic), rows sorted by time."""

    def __init__(self, plan: Plan, index: int) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.slice_start = plan.start + index * SLICE_SECONDS
        self.rows: list[tuple[float, bytes]] = []
        self.sequence = 0
        self._weights = [w for _, w, _ in plan.tenants]
        self._cumulative = [sum(self._weights[: i + 1]) for i in range(len(self._weights))]
        self._stamps: dict[int, str] = {}
        self.genuine = plan.genuine_from is not None and self.slice_start >= plan.genuine_from

    # --- ids and text ---------------------------------------------------------------------------------

    def uuid7(self, ts: float) -> str:
        h = f"{int(ts * 1000):012x}{self.rng.getrandbits(76):019x}"
        return f"{h[:8]}-{h[8:12]}-7{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-{h[19:31]}"

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def stamp(self, ts: float) -> str:
        second = int(ts)
        prefix = self._stamps.get(second)
        if prefix is None:
            prefix = self._stamps[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{prefix}.{int((ts - second) * 1e6):06d}+00"

    # --- traffic ------------------------------------------------------------------------------------------

    def build(self) -> tuple[bytes, int]:
        quota = self.plan.events_per_slice
        # busier in the (UTC) day than at night, +-40%
        hour = (self.slice_start % DAY) / HOUR
        quota = int(quota * (1 + 0.4 * math.sin((hour - 8) / 24 * 2 * math.pi)))
        while len(self.rows) < quota:
            self.session()
        self.rows.sort(key=lambda row: row[0])
        return b"".join(row for _, row in self.rows), len(self.rows)

    def session(self) -> None:
        rng = self.rng
        t = rng.choices(range(len(self.plan.tenants)), cum_weights=self._cumulative)[0]
        tenant, _, agents = self.plan.tenants[t]
        agent, kind = agents[rng.randrange(len(agents))]
        session_id = f"sess-{self.uuid7(self.slice_start)[-12:]}{self.hex(4)}"
        ts = self.slice_start + rng.uniform(0, SLICE_SECONDS)
        for turn in range(rng.randint(2, 8)):
            turn_id = f"turn-{turn + 1}"
            for step in STEPS:
                ts = self.execution(tenant, agent, session_id, turn_id, step, CHAINS[kind][step], ts) + rng.uniform(
                    0.005, 0.05
                )
            ts += rng.lognormvariate(math.log(25), 0.8)  # the user reads and answers

    def failure_probability(self, provider: str, ts: float) -> float:
        p = BASE_FAILURE[provider]
        for begin, end, outage in self.plan.outages[provider]:
            if begin <= ts < end:
                p = max(p, outage)
        return p

    def latency_ms(self, model: str, step: str) -> float:
        median, sigma = PROVIDER_LATENCY[provider_of(model)]
        median *= STEP_FACTOR[step] * MODEL_FACTOR.get(model, 1.0)
        return min(self.rng.lognormvariate(math.log(median), sigma), ATTEMPT_TIMEOUT_S * 1000 * 0.98)

    def execution(
        self, tenant: str, agent: str, session: str, turn: str, step: str, chain: tuple[str, ...], t0: float
    ) -> float:
        """Rows of one execution starting at ``t0``; returns when it ended."""
        rng = self.rng
        stream = self.uuid7(t0)
        trace = self.hex(32)
        span = self.hex(16)
        common = (tenant, stream, agent, session, turn, step, trace)
        prompt_mean, completion_mean = STEP_TOKENS[step]
        prompt_tokens = int(rng.lognormvariate(math.log(prompt_mean), 0.4))
        chars = prompt_tokens * 4
        events: list[tuple[str, float, str, dict[str, Any]]] = [
            (
                "ExecutionStarted",
                t0,
                span,
                {
                    "operation": "generate",
                    "chain": list(chain),
                    "max_retries": MAX_RETRIES,
                    "timeout_seconds": 120,
                    "attempt_timeout_seconds": ATTEMPT_TIMEOUT_S,
                    "parameters": {"temperature": 0.2, "max_tokens": 1024},
                    "input": {"message_count": 3, "chars": chars, "bytes": chars + 12, "sha256": self.hex(64)},
                    "output_schema": None,
                    "capture": "hash",
                },
            )
        ]
        t = t0 + rng.uniform(0.0002, 0.001)
        attempt = 0
        outcome: dict[str, Any] | None = None
        last_model = chain[0]
        for index, model in enumerate(chain):
            provider = provider_of(model)
            for retry in range(MAX_RETRIES + 1):
                attempt += 1
                last_model = model
                attempt_span = self.hex(16)
                events.append(
                    (
                        "AttemptStarted",
                        t,
                        attempt_span,
                        {
                            "attempt": attempt,
                            "model": model,
                            "provider": provider,
                            "fallback_index": index,
                            "retry": retry,
                            "timeout_seconds": ATTEMPT_TIMEOUT_S,
                        },
                    )
                )
                roll = rng.random()
                if roll < NON_RETRYABLE:
                    latency = self.latency_ms(model, step) * 0.1
                    t += latency / 1000
                    error_type = rng.choice(("invalid_request", "context_length"))
                    events.append(
                        (
                            "AttemptFailed",
                            t,
                            attempt_span,
                            self.failed_payload(attempt, model, latency, error_type, "BadRequestError", 400, "fail"),
                        )
                    )
                    outcome = {"failed": error_type}
                    break
                failure = self.failure_probability(provider, t)
                if retry:
                    failure = max(failure, RETRY_FAILURE)  # what failed a moment ago often fails again
                if roll < NON_RETRYABLE + failure:
                    pick = rng.random()
                    error_type, error_class, status, _ = next(e for e in ERRORS if pick < e[3])
                    if error_type == "timeout":
                        latency = ATTEMPT_TIMEOUT_S * 1000 + rng.uniform(0.5, 20)
                    elif error_type == "rate_limit":
                        latency = rng.lognormvariate(math.log(90), 0.5)
                    else:
                        latency = self.latency_ms(model, step) * rng.uniform(0.2, 1.0)
                    t += latency / 1000
                    if retry < MAX_RETRIES:
                        action = "retry"
                    elif index + 1 < len(chain):
                        action = "fall_back"
                    else:
                        action = "fail"
                    events.append(
                        (
                            "AttemptFailed",
                            t,
                            attempt_span,
                            self.failed_payload(attempt, model, latency, error_type, error_class, status, action),
                        )
                    )
                    if action == "retry":
                        t += rng.uniform(0.25, 1.5) if error_type == "rate_limit" else rng.uniform(0.1, 0.6)
                        continue
                    if action == "fall_back":
                        t += 0.0003
                        events.append(
                            (
                                "FallbackTriggered",
                                t,
                                span,
                                {
                                    "from_model": model,
                                    "to_model": chain[index + 1],
                                    "from_index": index,
                                    "to_index": index + 1,
                                    "reason": error_type,
                                },
                            )
                        )
                        t += 0.0002
                        break
                    outcome = {"failed": "all_models_failed"}
                    break
                latency = self.latency_ms(model, step)
                t += latency / 1000
                completion = max(1, int(rng.lognormvariate(math.log(completion_mean), 0.6)))
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                }
                output = {"chars": completion * 4, "bytes": completion * 4 + 3, "sha256": self.hex(64)}
                events.append(
                    (
                        "AttemptSucceeded",
                        t,
                        attempt_span,
                        {
                            "attempt": attempt,
                            "model": model,
                            "provider": provider,
                            "latency_ms": round(latency, 3),
                            "usage": usage,
                            "finish_reason": "stop",
                            "request_id": f"req_{self.hex(24)}",
                            "response_id": f"resp_{self.hex(24)}",
                            "response_model": model.split("/", 1)[1],
                            "output": output,
                        },
                    )
                )
                outcome = {"succeeded": model, "usage": usage, "output": output, "fallback": index > 0}
                break
            if outcome is not None:
                break
        assert outcome is not None
        t += rng.uniform(0.0001, 0.0005)
        total_ms = round((t - t0) * 1000, 3)
        if "succeeded" in outcome:
            model = outcome["succeeded"]
            events.append(
                (
                    "ExecutionSucceeded",
                    t,
                    span,
                    {
                        "model": model,
                        "provider": provider_of(model),
                        "attempts": attempt,
                        "fallback_used": outcome["fallback"],
                        "latency_ms": total_ms,
                        "usage": outcome["usage"],
                        "finish_reason": "stop",
                        "output": outcome["output"],
                    },
                )
            )
        else:
            error_type = outcome["failed"]
            events.append(
                (
                    "ExecutionFailed",
                    t,
                    span,
                    {
                        "error_type": error_type,
                        "message": f"{error_type}: the execution failed after {attempt} attempts",
                        "attempts": attempt,
                        "latency_ms": total_ms,
                        "last_model": last_model,
                        "chunks_delivered": 0,
                    },
                )
            )
        self.emit(common, events)
        return t

    def failed_payload(
        self,
        attempt: int,
        model: str,
        latency: float,
        error_type: str,
        error_class: str,
        status: int | None,
        action: str,
    ) -> dict[str, Any]:
        return {
            "attempt": attempt,
            "model": model,
            "provider": provider_of(model),
            "latency_ms": round(latency, 3),
            "error_type": error_type,
            "error_class": error_class,
            "message": f"{error_class} from {provider_of(model)}: {error_type.replace('_', ' ')} (request [REDACTED])",
            "status_code": status,
            "request_id": f"req_{self.hex(24)}",
            "retry_after_seconds": 1 if error_type == "rate_limit" else None,
            "next_action": action,
            "backoff_seconds": 0.5 if action == "retry" else None,
            "chunks_delivered": 0,
        }

    def emit(self, common: tuple[str, ...], events: list[tuple[str, float, str, dict[str, Any]]]) -> None:
        tenant, stream, agent, session, turn, step, trace = common
        prev = "\\N"
        for position, (event_type, ts, span, payload) in enumerate(events):
            event_id, stamp = self.uuid7(ts), self.stamp(ts)
            if self.genuine:
                # every field of today's payload model, as the executor would store it (the hash covers them)
                payload = PAYLOAD_TYPES[event_type].model_validate(payload).model_dump(mode="json")
                record = {
                    "event_id": event_id, "event_type": event_type, "schema_version": 1, "stream_id": stream,
                    "stream_position": position, "tenant_id": tenant, "agent_id": agent, "session_id": session,
                    "turn_id": turn, "step": step, "occurred_at": _hashed_time(stamp), "trace_id": trace,
                    "span_id": span, "payload": payload, "prev_hash": None if prev == "\\N" else prev,
                }  # fmt: skip
                digest = compute_hash(record)
            else:
                digest = self.hex(64)
            text = orjson.dumps(payload)
            if b"\\" in text:
                text = text.replace(b"\\", b"\\\\")
            line = (
                (
                    f"{tenant}\t{event_id}\t{event_type}\t1\t{stream}\t{position}\t{agent}\t{session}\t{turn}\t"
                    f"{step}\t{stamp}\t{trace}\t{span}\t"
                ).encode()
                + text
                + f"\t{prev}\t{digest}\n".encode()
            )
            self.rows.append((ts, line))
            prev = digest


def _hashed_time(stamp: str) -> str:
    """The stored ``occurred_at`` (``2026-01-01 12:00:00.123000+00``) as the hash covers it (the event's JSON
    form: ``2026-01-01T12:00:00.123000Z``, no fraction when it is zero)."""
    date_time = stamp[:-3].replace(" ", "T")
    return (date_time[:-7] if date_time.endswith(".000000") else date_time) + "Z"


def build_slice(args: tuple[Plan, int]) -> tuple[int, bytes, int]:
    plan, index = args
    data, count = SliceBuilder(plan, index).build()
    return index, data, count


def parse_copy_rows(data: bytes, limit: int) -> list[Event]:
    """The first ``limit`` rows of COPY text (``SliceBuilder.emit``'s) parsed as events: ``parse_event``
    raises on a payload the executor would not record."""
    events = []
    for line in data.decode().splitlines()[:limit]:
        values = [None if v == "\\N" else v for v in line.split("\t")]
        record: dict[str, object] = dict(zip(STORED_COLUMNS, values, strict=True))
        record["payload"] = orjson.loads(str(record["payload"]).replace("\\\\", "\\"))
        record["occurred_at"] = datetime.fromisoformat(str(record["occurred_at"]))
        events.append(parse_event(record))
    return events


def check_sample(plan: Plan) -> None:
    """Every row of the last slice parses as a valid event (payloads as the executor records them), and
    where the plan asks for genuine hash chains there, they verify."""
    builder = SliceBuilder(plan, plan.slices - 1)
    data, _ = builder.build()
    events = parse_copy_rows(data, 5000)
    if builder.genuine:
        streams = sorted(events, key=lambda e: (str(e.stream_id), e.stream_position))
        report = verify_chain(streams)
        if not report.ok:
            raise RuntimeError(f"the generator's hash chains do not verify: {report}")


# --- databases -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(server: str, reuse: str | None, keep: bool, revision: str = "head") -> Iterator[tuple[str, bool]]:
    """Yields (url, fresh). A fresh database is migrated (to ``revision``), and dropped on exit unless ``keep``."""
    if reuse:
        yield reuse, False
        return
    name = f"llm_ledger_dash_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    try:
        upgrade(url, revision)
        yield url, True
    finally:
        if keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(slots=True)
class Load:
    events: int
    seconds: float
    vacuum_seconds: float
    table_bytes: int


def load(url: str, plan: Plan, slices: range | None = None) -> Load:
    """COPY the plan's slices (``slices``: some of them, in order) and VACUUM (ANALYZE)."""
    statement = sql.SQL("COPY llm_ledger_events ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, STORED_COLUMNS))
    )
    total = 0
    start = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool, psycopg.connect(url) as conn:
        pending = [(plan, index) for index in (slices if slices is not None else range(plan.slices))]
        results = pool.imap(build_slice, pending, chunksize=1)
        for index, data, count in results:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(data)
            conn.commit()
            total += count
            if index % 24 == 23:
                rate = total / (time.perf_counter() - start)
                print(f"  loaded {total:,} events ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) llm_ledger_events")
        conn.execute("CHECKPOINT")
        # A partitioned table has no storage of its own: its size is its partitions' (and on 0007, itself).
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('llm_ledger_events')"
        ).fetchone()
    return Load(total, seconds, time.perf_counter() - started, int(row[0]) if row else 0)


# --- the projector ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CatchUp:
    batch_size: int
    events: int
    seconds: float
    batches: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def empty_read_models(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(t.name for t in READ_MODELS)}")
        conn.execute("DELETE FROM llm_ledger_projection_checkpoints")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def catch_up(url: str, batch_size: int, limit: int | None) -> CatchUp:
    projector = Projector(url, batch_size=batch_size)
    applied = batches = 0
    last = time.perf_counter()
    start = last
    try:
        while True:
            outcome = projector.apply_batch()
            assert outcome is not None
            count, _ = outcome
            applied += count
            batches += 1
            now = time.perf_counter()
            if now - last > 30:
                print(
                    f"  batch {batch_size}: {applied:,} events ({applied / (now - start):,.0f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
                last = now
            if count < batch_size or (limit is not None and applied >= limit):
                break
    finally:
        projector.close()
    return CatchUp(batch_size, applied, time.perf_counter() - start, batches)


def read_model_figures(url: str) -> list[tuple[str, int, int, int]]:
    """(table, grain or 0, rows, bytes of the whole table)."""
    figures = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        for table in READ_MODELS:
            size = conn.execute("SELECT pg_total_relation_size(%s)", (table.name,)).fetchone()
            total_bytes = int(size[0]) if size else 0
            if "grain_seconds" in table.c:
                query = sql.SQL("SELECT grain_seconds, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
                    sql.Identifier(table.name)
                )
                for grain, n in conn.execute(query):
                    figures.append((table.name, int(grain), int(n), total_bytes))
            else:
                n = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))).fetchone()
                figures.append((table.name, 0, int(n[0]) if n else 0, total_bytes))
    return figures


# --- the queries --------------------------------------------------------------------------------------------

RAW_BREAKDOWN = """
SELECT coalesce(step, '') AS step, coalesce(payload->>'model', payload->>'last_model', '') AS model,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY (payload->>'latency_ms')::float8),
       count(*)
FROM llm_ledger_events
WHERE tenant_id = %(tenant)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
  AND event_type IN ('ExecutionSucceeded', 'ExecutionFailed')
GROUP BY 1, 2
"""
RAW_EXACT_BREAKDOWN = RAW_BREAKDOWN.replace("percentile_cont(", "percentile_disc(")
"""The accuracy check's reference: the nearest-rank percentiles, exactly."""
RAW_SERIES = """
SELECT date_bin(%(grain)s, occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket, coalesce(step, '') AS step,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY (payload->>'latency_ms')::float8)
FROM llm_ledger_events
WHERE tenant_id = %(tenant)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
  AND event_type IN ('ExecutionSucceeded', 'ExecutionFailed')
GROUP BY 1, 2
"""


def read_model_breakdown(view: LedgerView, tenant: str, window: Window) -> dict[tuple[str, ...], Any]:
    groups = view.breakdown(tenant, window, ("step", "model"))
    return {g.key: (*g.figures.latency_percentiles(), g.figures.executions) for g in groups}


def read_model_series(view: LedgerView, tenant: str, window: Window) -> dict[tuple[Any, ...], Any]:
    return {(p.bucket_start, p.group): p.figures.latency_percentiles() for p in view.series(tenant, window, by="step")}


class RawQueries:
    """The same questions in SQL over the raw events, as ``llm_ledger_auditor`` (row-level security on)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)

    def _run(self, query: str, params: dict[str, Any]) -> list[Any]:
        with self.conn.transaction():
            self.conn.execute("SET LOCAL ROLE llm_ledger_auditor")
            return list(self.conn.execute(query, params))

    def breakdown(self, tenant: str, window: Window, query: str = RAW_BREAKDOWN) -> dict[tuple[str, ...], Any]:
        rows = self._run(query, {"tenant": tenant, "start": window.start, "end": window.end})
        return {(step, model): (*p, n) for step, model, p, n in rows}

    def exact_breakdown(self, tenant: str, window: Window) -> dict[tuple[str, ...], Any]:
        return self.breakdown(tenant, window, RAW_EXACT_BREAKDOWN)

    def series(self, tenant: str, window: Window) -> dict[tuple[Any, ...], Any]:
        grain = timedelta(seconds=display_grain(window.start, window.end))
        params = {
            "tenant": tenant,
            "start": floor(window.start, int(grain.total_seconds())),
            "end": window.end,
            "grain": grain,
        }
        return {(bucket, step): tuple(p) for bucket, step, p in self._run(RAW_SERIES, params)}

    def close(self) -> None:
        self.conn.close()


@dataclass(slots=True)
class Timing:
    label: str
    window: str
    runs: list[float]
    groups: int

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs) * 1000

    @property
    def p90_ms(self) -> float:
        return p90(self.runs) * 1000


def time_runs(fn: Callable[[str], dict[Any, Any]], tenants: Sequence[str], runs: int) -> tuple[list[float], int]:
    fn(tenants[0])  # warm the connection pool and the caches once
    seconds: list[float] = []
    groups = 0
    for i in range(runs):
        tenant = tenants[i % len(tenants)]
        start = time.perf_counter()
        result = fn(tenant)
        seconds.append(time.perf_counter() - start)
        groups += len(result)
    return seconds, groups // runs


ACCURACY_LIMIT = 0.02
"""What the dashboard promises of a percentile: within 2% of the exact nearest-rank one."""


@dataclass(frozen=True, slots=True)
class Check:
    """One tenant's breakdown over one window against the exact percentiles of the raw events."""

    same: bool
    """Same groups, with the same numbers of executions."""
    worst: float
    """The largest relative difference of a percentile from the exact nearest-rank one."""
    compared: int
    """Groups whose percentiles were compared."""

    @property
    def ok(self) -> bool:
        return self.same and self.worst <= ACCURACY_LIMIT


def compare(read: dict[Any, Any], exact: dict[Any, Any]) -> Check:
    """The read model's groups against ``exact`` (``RawQueries.exact_breakdown``), every group: the
    histogram is within 1.5% of the nearest rank whatever the group's size."""
    worst = 0.0
    compared = 0
    # A group of attempts only (a model that was tried and fell back, every execution answered by another)
    # has no execution to take a percentile of, and no row in the raw query.
    read = {key: figures for key, figures in read.items() if figures[-1]}
    same = set(read) == set(exact)
    for key, (*percentiles, n) in exact.items():
        mine = read.get(key)
        if mine is None or mine[-1] != n:
            same = False
            continue
        compared += 1
        for a, b in zip(mine[:-1], percentiles, strict=True):
            if a is None:
                same = False
            elif b:
                worst = max(worst, abs(a - b) / b)
    return Check(same, worst, compared)


def check_breakdown(view: LedgerView, raw: RawQueries, tenant: str, window: Window) -> Check:
    return compare(read_model_breakdown(view, tenant, window), raw.exact_breakdown(tenant, window))


@dataclass(slots=True)
class QueryResults:
    timings: list[Timing]
    checks: list[tuple[str, str, Check]]


def run_queries(url: str, end: datetime, tenants: Sequence[str], runs: int) -> QueryResults:
    view = LedgerView(url)
    raw = RawQueries(url)
    windows = {"30 days": Window.last(timedelta(days=30), end), "1 day": Window.last(timedelta(days=1), end)}
    timings: list[Timing] = []
    checks: list[tuple[str, str, Check]] = []
    try:
        for name, window in windows.items():
            for label, fn in (
                (
                    "read model: breakdown(step, model) + percentiles",
                    lambda t, w=window: read_model_breakdown(view, t, w),
                ),
                ("raw: percentile_cont by step, model", lambda t, w=window: raw.breakdown(t, w)),
                ("read model: series(by=step) + percentiles", lambda t, w=window: read_model_series(view, t, w)),
                ("raw: percentile_cont by bucket, step", lambda t, w=window: raw.series(t, w)),
            ):
                seconds, groups = time_runs(fn, tenants, runs)
                timings.append(Timing(label, name, seconds, groups))
                print(f"  {name:8} {label}: median {timings[-1].median_ms:.1f} ms", file=sys.stderr, flush=True)
            for tenant in tenants:
                checks.append((name, f"{tenant} breakdown", check_breakdown(view, raw, tenant, window)))
    finally:
        view.close()
        raw.close()
    return QueryResults(timings, checks)


# --- the report ------------------------------------------------------------------------------------------


def server_settings(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        names = ("shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather", "synchronous_commit")
        values = [f"{n}={conn.execute(sql.SQL('SHOW {}').format(sql.Identifier(n))).fetchone()[0]}" for n in names]  # type: ignore[index]
    return f"PostgreSQL {version[0] if version else '?'} ({', '.join(values)})"


def report(
    *,
    command: str,
    settings: str,
    load_before: tuple[float, float, float],
    loaded: Load | None,
    events: int,
    tenants: int,
    days: int,
    catch_ups: list[CatchUp],
    models: list[tuple[str, int, int, int]],
    queries: QueryResults,
) -> str:
    lines = [
        f"Measured on {datetime.now(UTC):%Y-%m-%d}: {machine()}, "
        f"CPython {platform.python_version()}, "
        f"{settings}; load average before the run {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} "
        "(the machine is shared).",
        "",
        f"```bash\n{command}\n```",
        "",
    ]
    if loaded is not None:
        lines += [
            f"- Load: {loaded.events:,} events ({tenants} tenants, {days} days) built and COPYed in "
            f"{loaded.seconds:.0f} s ({loaded.events / loaded.seconds:,.0f} events/s); VACUUM (ANALYZE) "
            f"{loaded.vacuum_seconds:.0f} s; events table with its indexes {loaded.table_bytes / 2**30:.2f} GiB.",
        ]
    else:
        lines.append(f"- Reused a loaded database of {events:,} events.")
    if catch_ups:
        lines += ["", "| projector catch-up | events | seconds | batches | events/s |", "|---|---|---|---|---|"]
        for c in catch_ups:
            lines.append(
                f"| batch_size {c.batch_size:,} | {c.events:,} | {c.seconds:.0f} | {c.batches:,} | {c.rate:,.0f} |"
            )
    if models:
        lines += ["", "| read model | grain | rows | table size (with indexes) |", "|---|---|---|---|"]
        for table, grain, rows, size in models:
            grain_text = {MINUTE: "minute", HOUR: "hour", DAY: "day"}.get(grain, "-")
            lines.append(f"| `{table}` | {grain_text} | {rows:,} | {size / 2**20:,.0f} MiB |")
    lines += ["", "| query (per tenant) | window | groups | median ms | p90 ms |", "|---|---|---|---|---|"]
    for t in queries.timings:
        lines.append(f"| {t.label} | {t.window} | {t.groups} | {t.median_ms:.1f} | {t.p90_ms:.1f} |")
    lines.append("")
    by_key = {
        (t.window, t.label.split(":")[0], "breakdown" in t.label or "by step, model" in t.label): t
        for t in queries.timings
    }
    for window, target in (("30 days", 100.0), ("1 day", 20.0)):
        read = by_key.get((window, "read model", True))
        raw_q = by_key.get((window, "raw", True))
        read_s = by_key.get((window, "read model", False))
        raw_s = by_key.get((window, "raw", False))
        if read and raw_q and read_s and raw_s:
            lines.append(
                f"- **{window}**: breakdown {read.median_ms:.1f} ms against {raw_q.median_ms:.1f} ms raw "
                f"(**{raw_q.median_ms / read.median_ms:.0f}x**); series {read_s.median_ms:.1f} ms against "
                f"{raw_s.median_ms:.1f} ms raw ({raw_s.median_ms / read_s.median_ms:.0f}x) "
                f"(target <= {target:.0f} ms, >= 20x)."
            )
    for window in dict.fromkeys(window for window, _, _ in queries.checks):
        checks = [(what, check) for name, what, check in queries.checks if name == window]
        failed = [
            f"{what} ({check.worst * 100:.2f}%, same groups {check.same})" for what, check in checks if not check.ok
        ]
        worst = max(check.worst for _, check in checks)
        lines.append(
            f"- check {window}, {len(checks)} tenants' breakdowns, {sum(c.compared for _, c in checks):,} groups: "
            f"largest difference from the nearest-rank percentile (`percentile_disc`) {worst * 100:.2f}% "
            f"(limit {ACCURACY_LIMIT * 100:.0f}%); " + ("all pass" if not failed else "FAILED: " + ", ".join(failed))
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--batch-sizes", default="5000,20000", help="projector batch sizes to time")
    parser.add_argument(
        "--catch-up-limit", type=int, default=None, help="stop each catch-up but the last after this many events"
    )
    parser.add_argument("--catch-up", action="store_true", help="time the projector again on a reused database")
    parser.add_argument("--runs", type=int, default=20, help="runs of each query (the tenants in turn)")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL, without a database")
    parser.add_argument("--database-url", default=None, help="reuse this loaded database")
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-results", action="store_true", help="print the report only")
    return parser.parse_args(argv)


def data_end(url: str) -> datetime:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(occurred_at) FROM llm_ledger_events").fetchone()
    if not row or row[0] is None:
        raise RuntimeError("the database holds no events")
    return row[0].astimezone(UTC)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/dashboard_queries.py", *sys.argv[1:]])
    load_before = os.getloadavg()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    plan = make_plan(args.events, args.tenants, args.days, end, args.seed)
    loaded: Load | None = None
    catch_ups: list[CatchUp] = []
    with database(args.server, args.database_url, args.keep) as (url, fresh):
        settings = server_settings(url)
        if fresh:
            check_sample(plan)
            print(f"loading {args.events:,} events into {url} ...", file=sys.stderr, flush=True)
            loaded = load(url, plan)
            print(f"  {loaded.events:,} events in {loaded.seconds:.0f} s", file=sys.stderr, flush=True)
        if fresh or args.catch_up:
            sizes = [int(size) for size in args.batch_sizes.split(",") if size]
            for i, size in enumerate(sizes):
                # every size but the last may stop at --catch-up-limit; the last projects every event
                # (the queries need them all)
                empty_read_models(url)
                catch_ups.append(catch_up(url, size, args.catch_up_limit if i < len(sizes) - 1 else None))
                print(f"  catch-up batch {size}: {catch_ups[-1].rate:,.0f} events/s", file=sys.stderr, flush=True)
        models = read_model_figures(url)
        end = data_end(url)
        with psycopg.connect(url) as conn:
            tenants = [
                row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM llm_ledger_step_stats ORDER BY 1")
            ]
            count = conn.execute("SELECT count(*) FROM llm_ledger_events").fetchone()
        queries = run_queries(url, end, tenants, args.runs)
        text = report(
            command=command,
            settings=settings,
            load_before=load_before,
            loaded=loaded,
            events=int(count[0]) if count else 0,
            tenants=len(tenants),
            days=args.days,
            catch_ups=catch_ups,
            models=models,
            queries=queries,
        )
    print(text)
    if not args.no_results:
        write_results(args.results, text)
        print(f"written to {args.results}", file=sys.stderr)
    if not all(check.ok for _, _, check in queries.checks):
        sys.exit("dashboard_queries: a percentile is more than 2% off the exact one, or the groups differ")


if __name__ == "__main__":
    main()
