"""The head log itself (``audit.heads``), without a database: how it reads a long log and a torn one."""

from __future__ import annotations

import time
from pathlib import Path

from llm_ledger.audit.heads import Head, HeadLog

LINES = 80_000
"""Ten tenants sealed every five minutes for about a month."""


def test_a_month_of_witness_lines_is_read_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "witness.jsonl"
    heads = [Head(f"tenant-{n % 10}", n // 10 + 1, f"{n:064x}") for n in range(LINES)]
    HeadLog.read(path).append(heads, "sealed", None)

    started = time.monotonic()
    log = HeadLog.read(path)
    elapsed = time.monotonic() - started

    assert log.problems == [] and len(log.entries) == LINES
    assert log.heads()["tenant-9"].head == heads[-1]
    # Linear, about 2 s on a loaded machine; looking through the entries for each line took minutes.
    assert elapsed < 60, f"{LINES:,} lines took {elapsed:.0f} s to read"
