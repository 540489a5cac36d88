"""Where the executor hands its events: a narrow, non-blocking seam."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, runtime_checkable
from uuid import UUID

from llm_ledger.events import Event, EventDraft

log = logging.getLogger("llm_ledger.executor")


@runtime_checkable
class EventSink(Protocol):
    """Accepts events as they happen. ``emit`` must return at once: it may queue, never wait for IO.

    It receives an ``EventDraft``: ``draft.event`` is the sealed, hash-chained event. Sealing is left
    to the consumer so that it stays off the LLM call's path; ask for it from a background thread,
    or when the events are read.
    """

    def emit(self, event: EventDraft) -> None: ...


@runtime_checkable
class DurableSink(EventSink, Protocol):
    """A sink that can say when an event it was given is durable (survives the process being killed).

    ``durable(event)`` returns None when ``event`` and every event emitted before it are durable already
    (or the sink does not make callers wait), else an awaitable of the caller's event loop done when they
    are. The executor awaits it before an execution returns to its caller, so that what a caller was told
    has happened is on record; it must never block the event loop.
    """

    def durable(self, event: EventDraft) -> Awaitable[None] | None: ...


async def until_durable(sink: EventSink, event: EventDraft | None) -> None:
    """Wait until ``event`` is durable in ``sink``, if the sink can say so (``DurableSink``)."""
    durable = getattr(sink, "durable", None)
    if durable is not None and event is not None:
        pending = durable(event)
        if pending is not None:
            await pending


class InMemorySink:
    """Keeps every event in memory, in emission order. For tests, demos and short scripts."""

    def __init__(self) -> None:
        self._events: list[EventDraft] = []
        self._lock = threading.Lock()

    def emit(self, event: EventDraft) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        """Every event, sealed, in emission order."""
        with self._lock:
            drafts = list(self._events)
        return [draft.event for draft in drafts]  # type: ignore[misc]

    def stream(self, stream_id: UUID) -> list[Event]:
        """The events of one execution, in position order."""
        return sorted((e for e in self.events if e.stream_id == stream_id), key=lambda e: e.stream_position)

    def stream_ids(self) -> list[UUID]:
        """Every execution seen, in the order it started."""
        return list(dict.fromkeys(e.stream_id for e in self.events))

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class RingBufferSink:
    """Keeps the most recent ``capacity`` events; counts and reports (once) what it had to drop."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: deque[EventDraft] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.dropped = 0

    def emit(self, event: EventDraft) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                if self.dropped == 0:
                    log.warning(
                        "llm-ledger: the in-memory event buffer is full (%d events); older events are being "
                        "dropped. Configure a persistent sink to keep every event.",
                        self._events.maxlen,
                    )
                self.dropped += 1
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            drafts = list(self._events)
        return [draft.event for draft in drafts]  # type: ignore[misc]


class FanOutSink:
    """Hands every event to several sinks."""

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self._sinks = tuple(sinks)

    def emit(self, event: EventDraft) -> None:
        for sink in self._sinks:
            sink.emit(event)

    def durable(self, event: EventDraft) -> Awaitable[None] | None:
        pending = [until_durable(sink, event) for sink in self._sinks if isinstance(sink, DurableSink)]
        return asyncio.gather(*pending) if pending else None  # type: ignore[return-value]


_default_sink: EventSink | None = None
_default_factory: Callable[[], EventSink] = RingBufferSink
_default_lock = threading.Lock()


def set_default_sink(sink: EventSink | None) -> None:
    """Set the sink of executors built without ``sink=`` (None: the default is made again when needed)."""
    global _default_sink
    with _default_lock:
        _default_sink = sink


def set_default_sink_factory(factory: Callable[[], EventSink]) -> None:
    """How the process-wide default sink is made, the first time an executor needs it. The package
    sets this to the store's buffered writer; the executor itself knows no store."""
    global _default_factory
    with _default_lock:
        _default_factory = factory


def get_default_sink() -> EventSink:
    """The process-wide sink of executors built without ``sink=``, made on first use."""
    global _default_sink
    with _default_lock:
        if _default_sink is None:
            _default_sink = _default_factory()
        return _default_sink
