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


def test_a_torn_last_line_is_a_warning_kept_as_evidence_and_the_next_append_chains_past_it(tmp_path: Path) -> None:
    path = tmp_path / "witness.jsonl"
    HeadLog.read(path).append([Head("acme", 1, "a" * 64), Head("globex", 1, "b" * 64)], "sealed", None)
    whole = path.read_bytes()
    torn = whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 1 + 40]  # the second line cut 40 bytes in
    path.write_bytes(torn)

    log = HeadLog.read(path)

    assert [(problem.kind, problem.severity, problem.line) for problem in log.problems] == [
        ("head_log_unreadable_line", "warning", 2)
    ]
    assert not log.is_broken and list(log.heads()) == ["acme"]
    log.append([Head("globex", 1, "b" * 64)], "recovered", None)
    assert path.read_bytes().startswith(torn + b"\n")  # the torn bytes stay, the new line is a line of its own
    again = HeadLog.read(path)
    assert not again.is_broken and [entry.line for entry in again.entries] == [1, 3]
    assert again.heads()["globex"].reason == "recovered"
