"""Executor overhead against bare Agno calls, on a local fake provider in its own process.

Run by hand:  .venv/bin/python bench/executor_overhead.py [--rounds 2000]

(a) success: ``LLMExecutor.generate`` (in-memory sink) against a bare ``OpenAIChat.aresponse``;
(b) fallback: an execution whose primary answers 429 and whose fallback answers, against a
    hand-written ``try/except`` doing the same two Agno calls.
The variants are interleaved call by call, in a shuffled order each round, so that drift of the
machine (CPU frequency, the server's caches) falls on all of them alike. Medians and p99s of the
per-call wall time are reported, and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("AGNO_TELEMETRY", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fake servers live with the tests

from agno.models.message import Message
from agno.models.openai import OpenAIChat

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, execution_context
from llm_ledger.executor import ProviderSettings, RetryPolicy
from llm_ledger.telemetry import DeferredExecutionTracer, build_telemetry
from tests.telemetry.receivers import closed_endpoint

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-0000000000000000"
PROMPT = "Which of the tenant's rules apply to this message? My order arrived broken."


def start_server(*options: str) -> tuple[subprocess.Popen[str], int]:
    """The fake provider server of the tests in a process of its own (its work is not the benchmark's),
    with a 429 model ``primary-429`` and the command-line ``options`` given; its process and port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.providers", "--port", "0", "--rate-limit-model", "primary-429", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("PORT="):
        process.kill()
        raise RuntimeError(f"fake provider did not start: {line!r}")
    return process, int(line.removeprefix("PORT="))


RECEIVER = """
import sys, time
from tests.telemetry.receivers import GrpcOtlpReceiver
receiver = GrpcOtlpReceiver(max_workers=4).start()
print(receiver.endpoint, flush=True)
while True:
    time.sleep(5)
    receiver.clear()  # received spans are not needed, only received
"""


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    """A real OTLP/gRPC receiver in its own process."""
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def traced_executor(endpoint: str, providers: dict[str, ProviderSettings], sink: InMemorySink) -> LLMExecutor:
    """An executor tracing as ``configure_tracing`` sets it up (its providers, spans built off the call)."""
    telemetry = build_telemetry({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    tracer = DeferredExecutionTracer(telemetry)
    return LLMExecutor("openai/gpt-bench", sink=sink, providers=providers, step_name="bench", tracer=tracer)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(rounds: int, warmup: int, tracing: bool) -> dict[str, list[float]]:
    # Agno prints every provider error to stdout; the executor silences that for its own calls, so
    # it is silenced for the hand-written baseline too, or the baseline would pay for printing.
    logging.getLogger("agno").disabled = True
    process, port = start_server()
    receiver, endpoint = start_receiver() if tracing else (None, "")
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        bare = OpenAIChat(id="gpt-bench", api_key=API_KEY, base_url=base_url, max_retries=0, retries=0)
        primary = OpenAIChat(id="primary-429", api_key=API_KEY, base_url=base_url, max_retries=0, retries=0)
        fallback = OpenAIChat(id="gpt-bench", api_key=API_KEY, base_url=base_url, max_retries=0, retries=0)
        providers = {"openai": ProviderSettings(api_key=API_KEY, base_url=base_url)}
        sink = InMemorySink()
        executor = LLMExecutor("openai/gpt-bench", sink=sink, providers=providers, step_name="bench")
        chain = LLMExecutor(
            "openai/primary-429",
            fallback_models=["openai/gpt-bench"],
            max_retries=0,
            sink=sink,
            providers=providers,
            step_name="bench",
            retry_policy=RetryPolicy(base_delay=0),
        )
        messages = [LLMMessage(role="user", content=PROMPT)]

        async def bare_call() -> None:
            await bare.aresponse(messages=[Message(role="user", content=PROMPT)])

        async def executor_call() -> None:
            await executor.generate(messages)

        async def hand_fallback() -> None:
            try:
                await primary.aresponse(messages=[Message(role="user", content=PROMPT)])
            except Exception:  # noqa: BLE001 - what a hand-written fallback does
                await fallback.aresponse(messages=[Message(role="user", content=PROMPT)])
            else:
                raise AssertionError("the primary should have answered 429")

        async def executor_fallback() -> None:
            response = await chain.generate(messages)
            assert response.fallback_used

        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "bare_agno": bare_call,
            "executor": executor_call,
            "hand_fallback": hand_fallback,
            "executor_fallback": executor_fallback,
        }
        if tracing:
            traced = traced_executor(endpoint, providers, sink)
            traced_down = traced_executor(closed_endpoint(), providers, sink)

            async def traced_call() -> None:
                await traced.generate(messages)

            async def traced_down_call() -> None:
                await traced_down.generate(messages)

            variants["executor_traced"] = traced_call
            variants["executor_traced_down"] = traced_down_call
        timings: dict[str, list[float]] = {name: [] for name in variants}
        rng = random.Random(42)
        order = list(variants)
        with execution_context(tenant_id="bench", agent_id="bench", session_id="bench"):
            for index in range(warmup + rounds):
                rng.shuffle(order)
                for name in order:
                    started = time.perf_counter()
                    await variants[name]()
                    elapsed = time.perf_counter() - started
                    if index >= warmup:
                        timings[name].append(elapsed * 1000)
                if index % 200 == 0:
                    sink.clear()  # keep the in-memory sink from growing through the run
        return timings
    finally:
        process.terminate()
        process.wait(timeout=10)
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)


def report(timings: dict[str, list[float]]) -> str:
    def row(name: str) -> str:
        values = timings[name]
        return f"| {name} | {len(values)} | {statistics.median(values):.3f} | {percentile(values, 0.99):.3f} |"

    median = {name: statistics.median(values) for name, values in timings.items()}
    lines = [
        "| variant | calls | median ms | p99 ms |",
        "|---|---|---|---|",
        *(row(name) for name in timings),
        "",
        f"(a) executor / bare Agno call, medians: **{median['executor'] / median['bare_agno']:.3f}**",
        f"(b) executor fallback / hand-written fallback, medians: "
        f"**{median['executor_fallback'] / median['hand_fallback']:.3f}**",
    ]
    for name in ("executor_traced", "executor_traced_down"):
        if name in median:
            lines.append(f"{name} / bare Agno call, medians: **{median[name] / median['bare_agno']:.3f}**")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--tracing", action="store_true", help="also time executors exporting spans over OTLP")
    args = parser.parse_args()
    timings = asyncio.run(run(args.rounds, args.warmup, args.tracing))
    print(report(timings))


if __name__ == "__main__":
    main()
