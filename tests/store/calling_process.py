"""Run by the journal's tests in a child process: make executions through a BufferedWriter without end, and
print ``RETURNED <execution id>`` the moment each call has returned to its caller, until killed (SIGKILL).

    python -m tests.store.calling_process URL SPOOL_DIR TENANT [--role ROLE] [--hard-limit N]
        [--durability journal|buffered] [--writer thread|process]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from llm_ledger import LLMExecutor, LLMMessage, RetryPolicy, execution_context
from llm_ledger.executor import EventSink
from llm_ledger.store.process_writer import ProcessWriter
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter


async def call_forever(writer: EventSink, tenant: str, concurrency: int) -> None:
    executor = LLMExecutor(
        "mock/child-primary?p50_ms=1&p99_ms=5&rate_limit=0.2&seed=5",
        fallback_models=["mock/child-fallback?p50_ms=1&p99_ms=5"],
        step_name="generation",
        max_retries=1,
        sink=writer,
        retry_policy=RetryPolicy(base_delay=0),
    )

    async def session(n: int) -> None:
        turn = 0
        while True:
            turn += 1
            with execution_context(tenant_id=tenant, agent_id="agent-1", session_id=f"s-{n}", turn_id=f"t{turn}"):
                response = await executor.generate([LLMMessage(role="user", content=f"question {n}.{turn}")])
            sys.stdout.write(f"RETURNED {response.execution_id}\n")
            sys.stdout.flush()

    await asyncio.gather(*(session(n) for n in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("spool_dir")
    parser.add_argument("tenant")
    parser.add_argument("--role")
    parser.add_argument("--hard-limit", type=int, default=100_000)
    parser.add_argument("--durability", default="journal")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--writer", choices=("thread", "process"), default="thread")
    args = parser.parse_args()
    writer: EventSink
    if args.writer == "process":
        writer = ProcessWriter(args.url, args.spool_dir, role=args.role, durability=args.durability)
        sys.stdout.write(f"CHILD {writer.child_pid}\n")
        sys.stdout.flush()
    else:
        writer = BufferedWriter(
            EventStore(args.url, role=args.role),
            args.spool_dir,
            batch_size=min(1_000, args.hard_limit),
            max_queue=min(10_000, args.hard_limit),
            hard_limit=args.hard_limit,
            durability=args.durability,
        )
    asyncio.run(call_forever(writer, args.tenant, args.concurrency))


if __name__ == "__main__":
    main()
