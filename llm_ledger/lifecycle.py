"""Wiring of the process-wide default sink to the store, and its orderly close."""

from __future__ import annotations

import asyncio

from llm_ledger.executor.sink import EventSink, set_default_sink, set_default_sink_factory


def _default_writer() -> EventSink:
    # Imported on first use: an application that always passes sink= never loads the store.
    from llm_ledger.store.default import make_default_writer

    return make_default_writer()


set_default_sink_factory(_default_writer)


async def aclose(wait_seconds: float = 5.0) -> None:
    """Write (or spool) every event recorded by executors built without ``sink=``, within
    ``wait_seconds``. It also happens at interpreter exit; this is for applications that want it
    done, and awaited, at shutdown."""
    from llm_ledger.store.default import close_default_writers

    await asyncio.to_thread(close_default_writers, wait_seconds)
    set_default_sink(None)
