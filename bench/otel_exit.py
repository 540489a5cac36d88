"""How long a process with OTLP export configured takes to exit after its work, with the collector down or
stalled: the figure ``tests/telemetry/test_traces.py`` used to assert (under 2 s) and now only bounds far
from the noise (the tests check the mechanism: the SDK's exit hooks off, ours giving up at its budget).

Run by hand:  .venv/bin/python bench/otel_exit.py [--runs 5] [--executions 1000] [--export-timeout 60]

Each run starts ``tests/telemetry/otel_process.py`` in a fresh interpreter: ``--executions`` executions on
mock models (a rate-limited primary, then its fallback: three spans each) with tracing configured only from
the OTEL_* variables, against a closed port ("down") or a gRPC receiver that holds every export without an
answer ("stalled"). The child prints the wall-clock time at which its work was done; the exit time is
from then until ``subprocess.run`` returns (the exit hooks, the interpreter's teardown, the reaping).
``--export-timeout`` sets OTEL_EXPORTER_OTLP_TIMEOUT (seconds for the Python exporters; 0 keeps the
library's default of 5 s): with 60, an exit that waited for an export would take a minute.

The two collectors alternate run by run, so that drift of the machine falls on both. The load average
is printed with each run (the machine is shared). Prints a markdown report.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.telemetry.receivers import GrpcOtlpReceiver, closed_endpoint  # noqa: E402


def _environment(endpoint: str, export_timeout: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"AGNO_TELEMETRY": "false", "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    if export_timeout > 0:
        env["OTEL_EXPORTER_OTLP_TIMEOUT"] = f"{export_timeout:g}"
    return env


def one_run(endpoint: str, executions: int, export_timeout: float) -> tuple[float, float]:
    """(seconds the executions ran, seconds from the end of the work to the process's exit)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.telemetry.otel_process", str(executions)],
        cwd=ROOT,
        env=_environment(endpoint, export_timeout),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    ended = time.time()
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return float(lines["RAN"]), ended - float(lines["DONE_AT"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--export-timeout", type=float, default=60.0)
    args = parser.parse_args()

    exits: dict[str, list[float]] = {"down": [], "stalled": []}
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}")
    print("| run | collector | executions ran s | exit s | load average (1 min) |")
    print("|---|---|---|---|---|")
    with GrpcOtlpReceiver(stall=True) as stalled:
        for run in range(1, args.runs + 1):
            for collector, endpoint in (("down", closed_endpoint()), ("stalled", stalled.endpoint)):
                ran, exit_seconds = one_run(endpoint, args.executions, args.export_timeout)
                exits[collector].append(exit_seconds)
                load = os.getloadavg()[0]
                print(f"| {run} | {collector} | {ran:.2f} | {exit_seconds:.2f} | {load:.2f} |", flush=True)
    print()
    print("| collector | runs | median exit s | max exit s |")
    print("|---|---|---|---|")
    for collector, seconds in exits.items():
        print(f"| {collector} | {len(seconds)} | {statistics.median(seconds):.2f} | {max(seconds):.2f} |")


if __name__ == "__main__":
    main()
