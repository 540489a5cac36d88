"""A progress bar on stderr for long commands, with no dependency: redrawn in place on a terminal, a
line every few seconds otherwise (CI logs, docker logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int | None, unit: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream or sys.stderr
        self._width = width
        self._started = time.monotonic()
        self._last_drawn = self._started
        self._interactive = self._stream.isatty()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last_drawn >= (0.1 if self._interactive else 5.0):
            self._draw(now)

    def finish(self) -> None:
        self._draw(time.monotonic())
        if self._interactive:
            self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        self._last_drawn = now
        elapsed = max(now - self._started, 1e-9)
        rate = f"{self.done / elapsed:,.0f} {self.unit}/s"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * self._width)
            bar = "#" * filled + "." * (self._width - filled)
            text = f"[{bar}] {fraction:4.0%} {self.done:,}/{self.total:,} {self.unit}, {rate}"
        else:
            text = f"{self.done:,} {self.unit}, {rate}"
        self._stream.write(("\r" + text) if self._interactive else (text + "\n"))
        self._stream.flush()
