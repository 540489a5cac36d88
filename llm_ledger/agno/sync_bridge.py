"""Agno's sync forms (``Agent.run``, ``Model.invoke``/``invoke_stream``) on the async executor.

Each ``AuditedModel`` (and its copies) owns one private event loop, in a daemon thread started on the
first sync call. A sync call runs its coroutine there, in a copy of the caller's ``contextvars``
context (its ``execution_context``, its run's scope and span), and blocks until it ends: the caller's
thread may itself be running an event loop (``Agent.run`` inside async code) without the two meeting.
A call made from the private loop's own thread would wait for itself, and is refused. The loop and its
thread end when the bridge is collected (the last copy of its model gone): an Agent built per request
and run with ``Agent.run`` leaves no thread or loop behind.

The round trips run here go through the model's own executor: its provider clients keep one pooled
async SDK client per event loop (``AgnoModelClient._use_loop``), so this loop gets clients of its own
and the application's loop (``Agent.arun``) keeps its."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from llm_ledger.executor import ConfigurationError

T = TypeVar("T")

_DONE = object()


class SyncBridge:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if threading.current_thread() is self._thread:
            raise ConfigurationError(
                "AuditedModel: a sync call (invoke, Agent.run) was made from the AuditedModel's own event "
                "loop thread; use the async form (ainvoke, Agent.arun) there"
            )
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                # The thread holds the loop, never the bridge, so that the bridge can be collected.
                thread = threading.Thread(target=_serve, args=(loop,), name="llm-ledger-agno-sync", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                weakref.finalize(self, _stop, loop)
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the private loop, in a copy of the caller's context; its result or error."""
        try:
            loop = self._running_loop()
        except BaseException:
            coroutine.close()
            raise
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = loop.create_task(coroutine, context=context)
            tasks.append(task)
            task.add_done_callback(lambda finished: _transfer(finished, done))

        loop.call_soon_threadsafe(start)
        try:
            return done.result()
        except BaseException:
            # The caller was interrupted (KeyboardInterrupt): do not leave the call running.
            if not done.done():
                loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            raise

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """The items of an async iterator, produced on the private loop in one task (an execution's
        timeouts belong to the task that runs it); closing this generator early cancels that task."""
        items: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in stream:
                    items.put(item)
            except BaseException as error:  # handed to the consumer, raised there
                items.put(_Failure(error))
                if isinstance(error, asyncio.CancelledError):
                    raise
            else:
                items.put(_DONE)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        loop = self._running_loop()
        context = contextvars.copy_context()
        tasks: list[asyncio.Task[None]] = []
        loop.call_soon_threadsafe(lambda: tasks.append(loop.create_task(pump(), context=context)))
        finished = False
        try:
            while True:
                item = items.get()
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, _Failure):
                    finished = True
                    raise item.error
                yield item
        finally:
            if not finished:
                loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    """Stop the loop of a bridge that is gone (its thread then closes it)."""
    with contextlib.suppress(RuntimeError):  # closed already (interpreter shutdown)
        loop.call_soon_threadsafe(loop.stop)


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _transfer(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())
