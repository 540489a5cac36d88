"""An Agno Agent on ``AuditedModel`` against the same Agent on the bare Agno model, one tool round trip each
(two model calls and one tool), on a local fake provider in its own process.

Run by hand:  .venv/bin/python bench/agno_agent.py [--rounds 300]

Variants, interleaved run by run in a shuffled order each round, so that drift of the machine falls on
all of them alike:
  bare        Agent(model=OpenAIChat(...)): Agno alone, nothing recorded;
  audited     Agent(model=AuditedModel("openai/...")): every round trip an execution, the tool run
              recorded, into the process's default writer (the journal, then SQLite), waiting for the
              journal as a deployment's default LLM_LEDGER_DURABILITY=journal does;
  audited-mem the same into an in-memory sink (no writer thread, nothing stored: the adapter's and the
              executor's own cost);
  bare-fb     Agent(model=OpenAIChat(primary, 429), fallback_models=[OpenAIChat(...)]): Agno's own fallback
              (which records nothing of the failed attempt);
  audited-fb  AuditedModel(["openai/primary", "openai/..."], max_retries=0): the same fallback, every
              attempt recorded.
Medians and p99s of the per-run wall time, and the ratios of the medians to the bare Agent's. With
``--gc-freeze`` the objects alive after the warm-up are frozen (``gc.freeze()``), as a long-lived service
may do after start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fake servers live with the tests

from bench.executor_overhead import start_server

API_KEY = "sk-bench-0000000000000000"
MODEL = "tool-rt"
PRIMARY = "primary-429"  # the 429 model of executor_overhead.start_server


def lookup_order(order_id: str) -> str:
    """The status of one of the customer's orders."""
    return f"{order_id}: shipped"


async def bench(rounds: int, port: int, freeze: bool) -> dict[str, list[float]]:
    from agno.agent import Agent
    from agno.models.openai import OpenAIChat

    from llm_ledger import aclose, execution_context
    from llm_ledger.agno import AuditedModel
    from llm_ledger.executor import InMemorySink, ProviderSettings, RetryPolicy

    base_url = f"http://127.0.0.1:{port}/v1"
    providers = {"openai": ProviderSettings(api_key=API_KEY, base_url=base_url)}

    def bare(model_id: str) -> OpenAIChat:
        return OpenAIChat(id=model_id, api_key=API_KEY, base_url=base_url, max_retries=0)

    no_wait = RetryPolicy(base_delay=0, jitter=0)
    memory = InMemorySink()
    agents = {
        "bare": Agent(model=bare(MODEL), tools=[lookup_order], telemetry=False),
        "audited": Agent(
            model=AuditedModel(f"openai/{MODEL}", step_name="generation", providers=providers, retry_policy=no_wait),
            tools=[lookup_order],
            telemetry=False,
        ),
        "audited-mem": Agent(
            model=AuditedModel(
                f"openai/{MODEL}", step_name="generation", providers=providers, retry_policy=no_wait, sink=memory
            ),
            tools=[lookup_order],
            telemetry=False,
        ),
        "bare-fb": Agent(model=bare(PRIMARY), fallback_models=[bare(MODEL)], tools=[lookup_order], telemetry=False),
        "audited-fb": Agent(
            model=AuditedModel(
                [f"openai/{PRIMARY}", f"openai/{MODEL}"],
                step_name="generation",
                max_retries=0,
                providers=providers,
                retry_policy=no_wait,
            ),
            tools=[lookup_order],
            telemetry=False,
        ),
    }

    def runner(agent: Agent) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            output = await agent.arun("Where is order A1?", session_state={"tenant_id": "bench"})
            assert output.content == "A1 is shipped.", output.content
            return output

        return run

    runs = {name: runner(agent) for name, agent in agents.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with execution_context(tenant_id="bench", agent_id="bench", session_id="bench"):
        for _ in range(20):  # warm up: connections, the writer's thread, Agno's caches
            for run in runs.values():
                await run()
        if freeze:
            # What a long-lived service does after start-up: the objects alive now are never collected
            # again, so a collection walks only what the runs allocate (the cost of the collector walking
            # the whole heap more often, since an audited run allocates more, falls away).
            gc.collect()
            gc.freeze()
        order = list(runs)
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                started = time.perf_counter()
                await runs[name]()
                times[name].append((time.perf_counter() - started) * 1000)
    await aclose()
    return times


def report(times: dict[str, list[float]]) -> None:
    def p99(values: list[float]) -> float:
        return sorted(values)[int(0.99 * (len(values) - 1))]

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'variant':<13}{'runs':>6}{'median ms':>11}{'p99 ms':>9}{'/ bare':>8}")
    for name, values in times.items():
        ratio = medians[name] / medians["bare"]
        print(f"{name:<13}{len(values):>6}{medians[name]:>11.2f}{p99(values):>9.2f}{ratio:>8.3f}")
    print(f"audited-fb / bare-fb: {medians['audited-fb'] / medians['bare-fb']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument(
        "--durability", choices=("journal", "buffered"), default="journal", help="LLM_LEDGER_DURABILITY"
    )
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the warm-up")
    args = parser.parse_args()
    os.environ["LLM_LEDGER_DURABILITY"] = args.durability
    from agno.utils import log as agno_log

    for logger in (agno_log.agent_logger, agno_log.team_logger, agno_log.workflow_logger):
        logger.disabled = True  # Agno's fallback logs each 429 it meets
    home = tempfile.mkdtemp(prefix="llm-ledger-bench-")
    os.environ["LLM_LEDGER_HOME"] = home  # the default writer: journal in home/spool, SQLite in home
    process, port = start_server("--tool-round-trip-model", MODEL)
    try:
        print(f"load: {os.getloadavg()}, durability: {args.durability}, gc.freeze: {args.gc_freeze}, ledger: {home}")
        report(asyncio.run(bench(args.rounds, port, args.gc_freeze)))
        print(f"load: {os.getloadavg()}")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
