"""Calls waiting for their events to be durable, woken from the writer's thread in groups.

A waiter is an asyncio future of the caller's event loop and the number of events that must be settled
(journaled, stored, or given up on) for it to be released. The writer settles events in the order they
were emitted, so a waiter is released once the count it waits for is reached. Waking goes through
``call_soon_threadsafe`` once per event loop and group, not once per waiter: one group commit of the
journal releases all the calls it covered with one wake-up of each loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import defaultdict


class DurabilityWaiters:
    """Futures waiting for a count of settled events. Not thread-safe: the writer holds its lock."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, target: int) -> asyncio.Future[None]:
        """A future of the running loop, released once ``target`` events are settled."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (target, next(self._order), loop, future))
        return future

    def release_through(self, settled: float) -> None:
        """Release every waiter whose target is at most ``settled``."""
        ready: defaultdict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
        while self._heap and self._heap[0][0] <= settled:
            _, _, loop, future = heapq.heappop(self._heap)
            ready[loop].append(future)
        for loop, futures in ready.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits on it any more
                loop.call_soon_threadsafe(_release, futures)

    def release_all(self) -> None:
        self.release_through(float("inf"))


def _release(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a caller cancelled while waiting
            future.set_result(None)
