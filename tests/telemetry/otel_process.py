"""Run by the telemetry tests in a child process: N executions on mock models with tracing configured
only from the OTEL_* environment (as an application would), then exit; prints timings and ids.
With ``aclose`` as second argument it awaits ``llm_ledger.aclose()``, prints ``CLOSED`` and waits for a line
on stdin before exiting, so the test can look at what was exported by then, before the exit hook runs.
With ``flush`` it awaits ``aclose()`` with a generous bound and exits: the exit hook's own budget is short
by design, and a busy machine can spend it before the first export leaves."""

from __future__ import annotations

import asyncio
import sys
import time

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, RetryPolicy, aclose, execution_context


async def main(count: int) -> InMemorySink:
    sink = InMemorySink()
    executor = LLMExecutor(
        "mock/primary?p50_ms=0&rate_limit=1",
        fallback_models=["mock/backup?p50_ms=0"],
        step_name="generation",
        max_retries=0,
        sink=sink,
        retry_policy=RetryPolicy(base_delay=0),
    )
    with execution_context(tenant_id="acme", agent_id="a", session_id="s"):
        for i in range(count):
            await executor.generate([LLMMessage(role="user", content=f"q{i}")])
    return sink


if __name__ == "__main__":
    started = time.monotonic()
    sink = asyncio.run(main(int(sys.argv[1])))
    first = sink.events[0]
    print(f"TRACE_ID {first.trace_id}", flush=True)
    print(f"RAN {time.monotonic() - started:.3f}", flush=True)
    print(f"DONE_AT {time.time():.6f}", flush=True)
    if sys.argv[2:] == ["flush"]:
        asyncio.run(aclose(wait_seconds=60))
    if sys.argv[2:] == ["aclose"]:
        asyncio.run(aclose())
        print("CLOSED", flush=True)
        sys.stdin.readline()
