"""Servers the browser tests start as processes of their own (the dashboard, the identity provider): waited
for until they answer, and stopped."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

STARTUP_SECONDS = 60


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Returns once ``url`` answers 200; fails the test, with the server's ``log``, if ``process`` exits first
    or nothing answers within ``STARTUP_SECONDS``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"{url}'s server exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {STARTUP_SECONDS} s:\n{log.read_text()}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
