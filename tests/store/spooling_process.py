"""Run by test_writer in a child process: record executions through a BufferedWriter whose database
cannot be reached, report once everything is spooled, then wait to be killed (SIGKILL)."""

from __future__ import annotations

import asyncio
import sys
import time

from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import run_executions


def main() -> None:
    url, spool_dir, count, tenant = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    writer = BufferedWriter(EventStore(url), spool_dir, batch_size=50, flush_interval=0.05, retry_interval=60)
    asyncio.run(run_executions(writer, count, tenant=tenant))
    while writer.stats.spooled < writer.stats.accepted:
        time.sleep(0.02)
    print(f"SPOOLED {writer.stats.spooled}", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
