"""Every page of the dashboard, with its filters, as the page itself queries a loaded ledger.

Run by hand, on a database loaded and projected by ``bench/dashboard_queries.py --keep``:

    .venv/bin/python bench/dashboard_pages.py --database-url postgresql://postgres@127.0.0.1:5432/<db> \\
        [--add-tool-calls] [--runs 20]

1. Tool calls (``--add-tool-calls``, once; the generator makes none): a quarter of the generation steps'
   successful executions (chosen by a hash of their id) get one tool execution after their answer, three
   in ten a second one: ``ToolCallStarted`` naming the execution, then ``ToolCallSucceeded`` (4% fail:
   ``ToolCallFailed``, ``tool_error``), payloads as the executor records them under capture ``hash``
   (a sample is parsed with ``parse_event``). COPYed as the superuser (like the loader), then projected
   (``Projector.apply_batch`` until none is left). The answers that asked are not changed (events are
   facts): their ``AttemptSucceeded`` holds no ``tool_calls``, so the Execution page has no requested call
   to look tool executions up for; the Tools page and the Sessions page (a session's tool executions) read
   them.
2. A login of the bench's own, granted ``llm_ledger_auditor`` alone (the README's login for a dashboard of
   every tenant), made for the run and dropped after it: the dashboard's queries run as that role, under
   row-level security, and its catch-up is off (the login may not take ``llm_ledger_projector``;
   ``LLM_LEDGER_DASHBOARD_CATCH_UP=false`` as well): the loader projected every event before.
3. Every page rendered in-process by Streamlit's ``AppTest`` from ``llm_ledger/dashboard/app.py``, as a
   browser opening its link would (``?page=...&tenant=...&window=30d|1d`` and the filters' parameters),
   each render a new browser session; the failed sessions are the Sessions page after ticking its
   "Failed sessions only" box (the timed run is the one after the tick). Each SQL statement the dashboard's
   engines send is timed by SQLAlchemy's ``before_cursor_execute`` / ``after_cursor_execute`` events (the
   statement's round trip and its rows' transfer; a transaction's COMMIT is not a cursor execute and is not
   in it) and named by the ``LedgerView`` / ``DashboardView`` method that the page called. Per render: the
   statements, their total time ("query ms") and the render's wall time (``AppTest.run``: Streamlit, the
   charts and tables too). Drill-down ids are each tenant's own: its busiest session with a failed execution
   that was seen in the last day, the execution of its latest failed attempt (the Errors page's link), its
   session with the most tool executions in the last day.
4. Each (page, variant, window) ``--runs`` times over the tenants in turn after one untimed render (the
   first render of the process opens the cached view), median and 90th percentile.

The windows end at the time of the run (the dashboard's ``now``): data loaded earlier leaves the last
minutes or hours of the window empty, as the report says.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql
from sqlalchemy import Engine, event
from streamlit.testing.v1 import AppTest

from bench.dashboard_queries import (
    SliceBuilder,
    catch_up,
    data_end,
    make_plan,
    parse_copy_rows,
    server_settings,
)
from bench.ingest import machine, write_results
from bench.logins import temporary_login
from bench.percentiles import p90
from llm_ledger.dashboard.state import PAGES
from llm_ledger.dashboard.views.sessions import FAILED_ONLY_KEY
from llm_ledger.projections.rollup import provider_of
from llm_ledger.store.schema import STORED_COLUMNS
from llm_ledger.store.scoping import AUDITOR_ROLE

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llm_ledger"
APP = PACKAGE / "dashboard" / "app.py"
PAGE_CODE = (str(PACKAGE / "dashboard" / "views") + os.sep, str(APP), str(PACKAGE / "dashboard" / "sidebar.py"))
"""Where the dashboard's pages (and the app and sidebar around them) call the view."""
RESULTS = ROOT / "bench" / "DASHBOARD_PAGES_RESULTS.md"
TARGET_MS = 100.0
"""Issue 15: each page's queries at most 100 ms over 30 days."""
WINDOWS = ("30d", "1d")
BROKEN_CHAINS = re.compile(r"not as (it was|they were) recorded")
DASHBOARD_ENV = ("LLM_LEDGER_DASHBOARD_TENANT", "LLM_LEDGER_TRACE_URL", "LLM_LEDGER_JAEGER_URL")

# --- tool calls for a loaded ledger -----------------------------------------------------------------------

TOOL_SHARE = 25
"""Per cent of the generation steps' successful executions that asked for a tool."""
SECOND_TOOL = 0.3
TOOL_FAILURE = 0.04
TOOLS = {  # tool -> median latency ms, sigma
    "search_knowledge_base": (140.0, 0.6),
    "lookup_customer": (60.0, 0.5),
    "get_order_status": (90.0, 0.5),
    "create_ticket": (320.0, 0.7),
}
TOOL_ERRORS = ("TimeoutError", "ValueError", "HTTPError")
ASKING_EXECUTIONS = f"""
SELECT tenant_id, stream_id::text, agent_id, session_id, turn_id, step, trace_id,
       extract(epoch FROM occurred_at)
FROM llm_ledger_events
WHERE event_type = 'ExecutionSucceeded' AND step = 'generation'
  AND abs(hashtext(stream_id::text)) % 100 < {TOOL_SHARE}
"""


def has_tool_calls(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT EXISTS (SELECT FROM llm_ledger_tool_stats)").fetchone()
    return bool(row and row[0])


def add_tool_calls(url: str, seed: int) -> int:
    """Append tool executions after a share of the generation answers (module docstring, 1.), COPYed as the
    superuser in transactions of ~50,000 executions' worth, and project them. Returns the events added."""
    statement = sql.SQL("COPY llm_ledger_events ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, STORED_COLUMNS))
    )
    builder = SliceBuilder(make_plan(1, 1, 1, datetime.now(UTC), seed), 0)
    added = 0
    checked = False
    started = time.perf_counter()
    with psycopg.connect(url) as reading, psycopg.connect(url) as writing, reading.cursor(name="asking") as cursor:
        cursor.itersize = 10_000
        cursor.execute(ASKING_EXECUTIONS)
        while rows := cursor.fetchmany(50_000):
            for row in rows:
                tool_executions(builder, row)
            builder.rows.sort(key=lambda r: r[0])
            data = b"".join(line for _, line in builder.rows)
            if not checked:
                parse_copy_rows(data, 5_000)  # raises on a payload the executor would not record
                checked = True
            with writing.cursor() as copying, copying.copy(statement) as copy:
                copy.write(data)
            writing.commit()
            added += len(builder.rows)
            builder.rows.clear()
            print(f"  added {added:,} tool-call events", file=sys.stderr, flush=True)
    print(f"  {added:,} events in {time.perf_counter() - started:.0f} s; projecting ...", file=sys.stderr, flush=True)
    # The projector reads below the gap-safe cursor's horizon: until every transaction of the cluster older
    # than these COPYs has ended (another database's, too), it sees none of them.
    projected = 0
    waited = time.monotonic()
    while projected < added:
        projected += catch_up(url, 20_000, None).events
        if projected < added:
            if time.monotonic() - waited > 600:
                raise RuntimeError(f"projected {projected:,} of the {added:,} tool-call events in 10 minutes")
            time.sleep(2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE llm_ledger_events")
        conn.execute("VACUUM ANALYZE llm_ledger_tool_stats")
        conn.execute("VACUUM ANALYZE llm_ledger_sessions")
    print(f"  projected {projected:,} events", file=sys.stderr, flush=True)
    return added


def tool_executions(builder: SliceBuilder, asking: Sequence[Any]) -> None:
    """One or two tool executions after the answer of the execution ``asking`` (a row of ASKING_EXECUTIONS),
    one after the other, in its session and turn."""
    tenant, execution, agent, session, turn, step, trace, ended = asking
    rng = builder.rng
    t = float(ended)
    for _ in range(2 if rng.random() < SECOND_TOOL else 1):
        t += rng.uniform(0.002, 0.02)
        name = rng.choice(tuple(TOOLS))
        median, sigma = TOOLS[name]
        latency = round(rng.lognormvariate(math.log(median), sigma), 3)
        chars = rng.randint(20, 400)
        start: dict[str, Any] = {
            "tool_name": name,
            "tool_call_id": f"call_{builder.hex(24)}",
            "execution_id": execution,
            "arguments": {"chars": chars, "bytes": chars, "sha256": builder.hex(64)},
            "capture": "hash",
        }
        end = t + latency / 1000
        terminal: tuple[str, dict[str, Any]]
        if rng.random() < TOOL_FAILURE:
            error = rng.choice(TOOL_ERRORS)
            terminal = (
                "ToolCallFailed",
                {
                    "tool_name": name,
                    "latency_ms": latency,
                    "error_type": "tool_error",
                    "error_class": error,
                    "message": f"the tool raised {error} (its text is kept under capture 'full' only, not 'hash')",
                },
            )
        else:
            size = rng.randint(40, 4000)
            result = {"chars": size, "bytes": size, "sha256": builder.hex(64)}
            terminal = ("ToolCallSucceeded", {"tool_name": name, "latency_ms": latency, "result": result})
        span = builder.hex(16)
        common = (tenant, builder.uuid7(t), agent, session or "\\N", turn or "\\N", step or "\\N", trace or "\\N")
        builder.emit(common, [("ToolCallStarted", t, span, start), (terminal[0], end, span, terminal[1])])
        t = end


# --- timing the statements ------------------------------------------------------------------------------------


def _asked_by(frame: FrameType | None) -> str:
    """The view's method a page (or the app around it) called for the statement being sent: the outermost
    llm_ledger frame inside the first page frame."""
    inner = "?"
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(PAGE_CODE):
            return inner
        if path.startswith(str(PACKAGE)):
            inner = frame.f_code.co_qualname
        frame = frame.f_back
    return inner


class StatementClock:
    """Times every statement of every SQLAlchemy engine of this process (the dashboard's among them)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, float]] = []

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, *_: Any) -> None:
        conn.info["bench_statement"] = (_asked_by(sys._getframe(1)), time.perf_counter())

    def _after(self, conn: Any, *_: Any) -> None:
        ended = time.perf_counter()
        label, started = conn.info.pop("bench_statement")
        self.statements.append((label, ended - started))

    def take(self) -> list[tuple[str, float]]:
        taken, self.statements = self.statements, []
        return taken


# --- what is rendered -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantData:
    """What of one tenant the links name: its filter values and drill-down ids."""

    tenant: str
    agents: tuple[str, ...]
    models: tuple[str, ...]
    failed_session: str | None
    failed_execution: str | None
    tool_session: str | None


Query = dict[str, str | list[str]]


@dataclass(frozen=True, slots=True)
class Case:
    page: str
    variant: str
    query: Callable[[TenantData], Query | None]
    """The link's parameters besides page, tenant and window; None when the tenant has nothing to open."""
    tick_failed_only: bool = False


def _filters(data: TenantData) -> dict[str, Query]:
    model = data.models[0]
    return {
        "no filter": {},
        "one agent": {"agent": data.agents[0]},
        "one step": {"step": "generation"},
        "one model + provider": {"model": model, "provider": provider_of(model)},
        "several values": {
            "agent": list(data.agents[:2]),
            "step": ["generation", "enforcement"],
            "model": list(data.models[:3]),
        },
    }


FILTER_SETS = ("no filter", "one agent", "one step", "one model + provider", "several values")
FILTERED_PAGES = ("overview", "latency", "errors", "fallbacks", "cost", "tools")


def _with(name: str, value: Callable[[TenantData], str | None]) -> Callable[[TenantData], Query | None]:
    def query(data: TenantData) -> Query | None:
        found = value(data)
        return None if found is None else {name: found}

    return query


def _filter_set(variant: str) -> Callable[[TenantData], Query | None]:
    return lambda data: _filters(data)[variant]


def cases() -> list[Case]:
    found = [Case(page, variant, _filter_set(variant)) for page in FILTERED_PAGES for variant in FILTER_SETS]
    return [
        *found,
        Case("sessions", "latest session", lambda _: {}),
        Case("sessions", "busiest failed session", _with("session", lambda d: d.failed_session)),
        Case("sessions", "failed sessions only", lambda _: {}, tick_failed_only=True),
        Case("sessions", "session with tool calls", _with("session", lambda d: d.tool_session)),
        Case("execution", "latest failed attempt's", _with("execution", lambda d: d.failed_execution)),
        Case("execution", "from a failed session", _with("session", lambda d: d.failed_session)),
        Case("audit", "no verify run", lambda _: {}),
    ]


def tenant_data(url: str, end: datetime) -> list[TenantData]:
    """Each tenant's filter values (its busiest agents and models first) and drill-down ids (as the superuser,
    before the clock)."""
    since = end - timedelta(days=1)
    found = []
    with psycopg.connect(url) as conn:
        tenants = [row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM llm_ledger_sessions ORDER BY 1")]
        for tenant in tenants:

            def ranked(column: str, tenant: str = tenant) -> tuple[str, ...]:
                query = sql.SQL(
                    "SELECT {c} FROM llm_ledger_step_stats WHERE tenant_id = %s AND grain_seconds = 86400 "
                    "AND {c} <> '' GROUP BY {c} ORDER BY sum(executions) DESC, {c}"
                ).format(c=sql.Identifier(column))
                return tuple(row[0] for row in conn.execute(query, (tenant,)))

            def one(query: str, *params: object) -> str | None:
                row = conn.execute(query, params).fetchone()
                return None if row is None else str(row[0])

            found.append(
                TenantData(
                    tenant=tenant,
                    agents=ranked("agent_id"),
                    models=ranked("model"),
                    failed_session=one(
                        "SELECT session_id FROM llm_ledger_sessions WHERE tenant_id = %s AND failed > 0 "
                        "AND last_seen >= %s ORDER BY executions DESC, session_id LIMIT 1",
                        tenant,
                        since,
                    ),
                    failed_execution=one(
                        "SELECT stream_id FROM llm_ledger_failed_attempts WHERE tenant_id = %s "
                        "ORDER BY occurred_at DESC LIMIT 1",
                        tenant,
                    ),
                    tool_session=one(
                        "SELECT session_id FROM llm_ledger_events WHERE tenant_id = %s AND occurred_at >= %s "
                        "AND event_type = 'ToolCallStarted' AND session_id IS NOT NULL "
                        "GROUP BY session_id ORDER BY count(*) DESC, session_id LIMIT 1",
                        tenant,
                        since,
                    ),
                )
            )
    return found


@dataclass(slots=True)
class Render:
    statements: list[tuple[str, float]]
    wall: float

    @property
    def query_seconds(self) -> float:
        return sum(seconds for _, seconds in self.statements)


class RenderFailedError(RuntimeError):
    pass


def render(clock: StatementClock, case: Case, data: TenantData, window: str) -> Render | None:
    """One render of the case's page for the tenant, timed; None when the tenant has nothing to open."""
    extra = case.query(data)
    if extra is None:
        return None
    app = AppTest.from_file(str(APP), default_timeout=180)
    app.query_params.update({"page": case.page, "tenant": data.tenant, "window": window, **extra})
    if case.tick_failed_only:
        app.run()
        _check(app, case, data)
        app.checkbox(key=FAILED_ONLY_KEY).check()
    clock.take()
    started = time.perf_counter()
    app.run()
    wall = time.perf_counter() - started
    statements = clock.take()
    _check(app, case, data)
    if not statements:
        raise RenderFailedError(f"{case.page} ({case.variant}) of {data.tenant} sent no statement")
    return Render(statements, wall)


def _check(app: AppTest, case: Case, data: TenantData) -> None:
    """The page drew itself for the tenant: no exception or error, no warning about its link."""
    what = f"{case.page} ({case.variant}) of {data.tenant}"
    problems = [str(e.value) for e in app.exception]
    # The generator's hashes are random hex, not chains: the Sessions and Execution pages say so, as they must.
    problems += [str(e.value) for e in app.error if not BROKEN_CHAINS.search(str(e.value))]
    problems += [str(w.value) for w in app.warning if str(w.value).startswith("This link")]
    if problems:
        raise RenderFailedError(f"{what}: {problems}")
    headers = [str(h.value) for h in app.header]
    if PAGES[case.page] not in headers:
        raise RenderFailedError(f"{what}: no {PAGES[case.page]!r} header, drew {headers}")


# --- measuring ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Measured:
    page: str
    variant: str
    window: str
    renders: list[Render] = field(default_factory=list)

    def statements(self) -> float:
        return statistics.median(len(r.statements) for r in self.renders)

    def query_ms(self) -> list[float]:
        return [r.query_seconds * 1000 for r in self.renders]

    def wall_ms(self) -> list[float]:
        return [r.wall * 1000 for r in self.renders]


def measure(clock: StatementClock, data: Sequence[TenantData], runs: int, chosen: Sequence[Case]) -> list[Measured]:
    results: list[Measured] = []
    for window in WINDOWS:
        for case in chosen:
            openable = [d for d in data if case.query(d) is not None]
            if not openable:
                print(f"  {window} {case.page} ({case.variant}): no tenant has one", file=sys.stderr)
                continue
            render(clock, case, openable[0], window)  # untimed: the first render of a case
            measured = Measured(case.page, case.variant, window)
            for run in range(runs):
                timed = render(clock, case, openable[run % len(openable)], window)
                assert timed is not None
                measured.renders.append(timed)
            results.append(measured)
            print(
                f"  {window} {case.page:9} {case.variant:24} {measured.statements():4.0f} statements, "
                f"query {statistics.median(measured.query_ms()):7.1f} ms (p90 {p90(measured.query_ms()):7.1f}), "
                f"wall {statistics.median(measured.wall_ms()):7.0f} ms; "
                + ", ".join(f"{label} {ms:.1f}" for label, ms in calls([measured])[:3]),
                file=sys.stderr,
                flush=True,
            )
    return results


# --- the report -----------------------------------------------------------------------------------------------


def calls(measured: Sequence[Measured]) -> list[tuple[str, float]]:
    """The view methods the renders called, by the median time of their statements per render (a render
    that did not call one counts 0 ms), slowest first."""
    per_call: dict[str, list[float]] = defaultdict(list)
    renders = [r for m in measured for r in m.renders]
    for r in renders:
        summed: dict[str, float] = defaultdict(float)
        for label, seconds in r.statements:
            summed[label] += seconds
        for label, seconds in summed.items():
            per_call[label].append(seconds * 1000)
    medians = {
        label: statistics.median(times + [0.0] * (len(renders) - len(times))) for label, times in per_call.items()
    }
    return sorted(medians.items(), key=lambda item: -item[1])


def report(
    *,
    command: str,
    settings: str,
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    events: int,
    tool_events: int,
    end: datetime,
    started: datetime,
    tenants: int,
    results: Sequence[Measured],
) -> str:
    before, after = loads
    lines = [
        f"Measured on {started:%Y-%m-%d} from {started:%H:%M} to {datetime.now(UTC):%H:%M} UTC: {machine()}, "
        f"CPython {platform.python_version()}, {settings}; load average before {before[0]:.2f} / {before[1]:.2f} / "
        f"{before[2]:.2f}, after {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} (the machine is shared).",
        "",
        f"```bash\n{command}\n```",
        "",
        f"- Ledger: {events:,} events of {tenants} tenants, {tool_events:,} of them tool-call events; its last "
        f"event at {end:%Y-%m-%d %H:%M} UTC ({(started - end).total_seconds() / 60:.0f} minutes before the run "
        "began: the windows end at the run's time).",
        "",
        "| page | window | renders | statements | query ms median | query ms p90 | wall ms median | slowest call "
        "(median ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_page: dict[tuple[str, str], list[Measured]] = defaultdict(list)
    for m in results:
        by_page[(m.page, m.window)].append(m)
    verdicts: dict[str, tuple[float, float]] = {}
    for (page, window), measured in by_page.items():
        query = [q for m in measured for q in m.query_ms()]
        wall = [w for m in measured for w in m.wall_ms()]
        statements = statistics.median(len(r.statements) for m in measured for r in m.renders)
        label, slowest = calls(measured)[0]
        if window == "30d":
            verdicts[page] = (statistics.median(query), p90(query))
        lines.append(
            f"| {PAGES[page]} | {window} | {len(query)} | {statements:.0f} | {statistics.median(query):.1f} | "
            f"{p90(query):.1f} | {statistics.median(wall):.0f} | `{label}` ({slowest:.1f}) |"
        )
    lines += [
        "",
        "| page | variant | statements | 30d query ms median / p90 | 1d query ms median / p90 | 30d wall ms |",
        "|---|---|---|---|---|---|",
    ]
    by_variant: dict[tuple[str, str], dict[str, Measured]] = defaultdict(dict)
    for m in results:
        by_variant[(m.page, m.variant)][m.window] = m
    for (page, variant), windows in by_variant.items():
        cells = []
        for window in WINDOWS:
            found = windows.get(window)
            cells.append(f"{statistics.median(found.query_ms()):.1f} / {p90(found.query_ms()):.1f}" if found else "-")
        month = windows.get("30d")
        count = f"{month.statements():.0f}" if month else "-"
        month_wall = f"{statistics.median(month.wall_ms()):.0f}" if month else "-"
        lines.append(f"| {PAGES[page]} | {variant} | {count} | {cells[0]} | {cells[1]} | {month_wall} |")
    if verdicts:
        worst = max(verdicts, key=lambda page: verdicts[page][1])
        lines += [
            "",
            f"- Worst page at 30 days: **{PAGES[worst]}**, median {verdicts[worst][0]:.1f} ms, p90 "
            f"{verdicts[worst][1]:.1f} ms of queries per render.",
        ]
        for index, name in enumerate(("median", "p90")):
            over = [PAGES[page] for page, figures in verdicts.items() if figures[index] > TARGET_MS]
            lines.append(
                f"- Every page's queries <= {TARGET_MS:.0f} ms at 30 days ({name} over its variants and tenants): "
                + ("**met**." if not over else f"**not met** by {', '.join(over)}.")
            )
    return "\n".join(lines) + "\n"


# --- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a database loaded by bench/dashboard_queries.py")
    parser.add_argument("--runs", type=int, default=20, help="timed renders of each page variant (tenants in turn)")
    parser.add_argument("--add-tool-calls", action="store_true", help="append tool executions first (once)")
    parser.add_argument("--pages", default=",".join(PAGES), help="the pages to render (comma-separated)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-results", action="store_true", help="print the report only")
    return parser.parse_args(argv)


def _dashboard_environment(url: str) -> Mapping[str, str]:
    for name in DASHBOARD_ENV:
        os.environ.pop(name, None)
    for name in [n for n in os.environ if n.startswith("LLM_LEDGER_OIDC_")]:
        os.environ.pop(name)
    os.environ["LLM_LEDGER_DATABASE_URL"] = url
    os.environ["LLM_LEDGER_DASHBOARD_CATCH_UP"] = "false"
    return os.environ


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Streamlit warns of every call made outside a script run (the app's imports): noise here.
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    command = shlex.join([".venv/bin/python", "bench/dashboard_pages.py", *sys.argv[1:]])
    url = args.database_url
    if args.add_tool_calls:
        if has_tool_calls(url):
            print("the ledger has tool calls already: none added", file=sys.stderr)
        else:
            add_tool_calls(url, args.seed)
    end = data_end(url)
    data = tenant_data(url, end)
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM llm_ledger_events").fetchone()
        daily_calls = "SELECT coalesce(sum(calls), 0) FROM llm_ledger_tool_stats WHERE grain_seconds = 86400"
        tool_calls = conn.execute(daily_calls).fetchone()
    settings = server_settings(url)
    pages = set(args.pages.split(","))
    chosen = [case for case in cases() if case.page in pages]
    clock = StatementClock()
    clock.install()
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with temporary_login(url, "pages", [AUDITOR_ROLE]) as login:
        _dashboard_environment(login)
        results = measure(clock, data, args.runs, chosen)
    text = report(
        command=command,
        settings=settings,
        loads=(load_before, os.getloadavg()),
        events=int(count[0]) if count else 0,
        tool_events=2 * int(tool_calls[0]) if tool_calls else 0,
        end=end,
        started=started,
        tenants=len(data),
        results=results,
    )
    print(text)
    if not args.no_results:
        write_results(args.results, text)
        print(f"written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
