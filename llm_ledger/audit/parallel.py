"""Tenants verified side by side in worker processes (``audit verify --jobs``): tenants share nothing a
verify checks, and its work is Python per event, which one process runs on one core.

Workers are spawned, not forked: a fork would copy the caller's threads' locks and its pooled database
connections, which the caller may be using. Each imports the package (about a second) and opens one engine
of its own on the ledger's URL, used for every tenant it is given.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from llm_ledger.store import create_store_engine

T = TypeVar("T")

_engine: Engine | None = None
"""The worker's engine (``_start``); None in the caller's process."""


def map_tenants(work: Callable[[Engine, str], T], url: URL, tenants: Sequence[str], jobs: int) -> list[T]:
    """``work(engine, tenant)`` for each tenant, in up to ``jobs`` worker processes; the results in the order
    of ``tenants``, which are handed out in that order (largest first keeps the workers busy to the end).
    ``work`` must be picklable: a module's function, or a ``functools.partial`` of one."""
    # Imported here: importing them registers exit handlers, which fails in code that runs at interpreter
    # exit and imports the audit package (the embedded writer's last flush migrates its database).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    workers = max(1, min(jobs, len(tenants)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start, initargs=(url,))
    try:
        futures = [pool.submit(_run, work, tenant) for tenant in tenants]
        return [future.result() for future in futures]
    finally:
        # On an error, the tenants not started yet are not verified for nothing.
        pool.shutdown(wait=True, cancel_futures=True)


def _start(url: URL) -> None:
    global _engine
    _engine = create_store_engine(url)
    atexit.register(_engine.dispose)


def _run(work: Callable[[Engine, str], T], tenant: str) -> T:
    assert _engine is not None, "not in a worker started by map_tenants"
    return work(_engine, tenant)
