"""Servers the browser tests start as processes of their own (the dashboard, the identity provider): waited
for until they answer, and stopped."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

STARTUP_SECONDS = 120
"""A hang detector, not a measurement: the dashboard answered after 34 s with both cores busy (load 11), the
provider after 10 s; within pytest's 300 s for the test, the two together."""


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Returns once ``url`` answers 200; fails the test, with the server's ``log``, if ``process`` exits first
    or nothing answers within ``STARTUP_SECONDS``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"{url}'s server exited ({process.returncode}):\n{log.read_text()}")
        try:
            # Refused at once while nothing listens; once it listens, its answer is waited for however slowly
            # it comes (with a one-second limit, a server slower than that all through start-up was never seen up).
            if httpx.get(url, timeout=max(deadline - time.monotonic(), 1)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {STARTUP_SECONDS} s:\n{log.read_text()}")
        time.sleep(0.2)


STOP_SECONDS = 120
"""Also a hang detector: stopping the login's dashboard took over 10 s with both cores busy, and a process
killed instead could not remove what it should (the login's secrets)."""


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` as a service is stopped (SIGTERM); killed only if it has not exited in ``STOP_SECONDS``."""
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
