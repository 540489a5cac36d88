"""Tenants verified side by side in worker processes (``audit verify --jobs``): tenants share nothing a
verify checks, and its work is Python per event, which one process runs on one core.

Workers are spawned, not forked: a fork would copy the caller's threads' locks and its pooled database
connections, which the caller may be using. Each imports the package (about a second) and opens one engine
of its own on the ledger's URL, used for every tenant it is given. A worker that fails on the database, or
dies, is a ``StoreUnavailableError``: the ledger could not be checked, which says nothing of its integrity.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from llm_ledger.store import StoreUnavailableError, create_store_engine

T = TypeVar("T")

DEFAULT_JOBS_CAP = 4
"""At most this many workers by default: each is a process of ~93 MiB and a database connection, and a
container may be allowed far fewer cores than ``os.cpu_count()`` reports (the host's)."""

_engine: Engine | None = None
"""The worker's engine (``_start``); None in the caller's process."""


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity, not the host's count), at most
    ``DEFAULT_JOBS_CAP``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        cores = os.cpu_count() or 1
    return max(1, min(cores, DEFAULT_JOBS_CAP))


def map_tenants(
    work: Callable[..., T], url: URL, tenants: Sequence[str], jobs: int, own: Mapping[str, Any] | None = None
) -> list[T]:
    """``work(engine, tenant)`` for each tenant, in up to ``jobs`` worker processes; the results in the order
    of ``tenants``, which are handed out in that order (largest first keeps the workers busy to the end).
    ``work`` must be picklable: a module's function, or a ``functools.partial`` of one. It is pickled with
    every task, so what only one tenant needs (its archived months) goes in ``own``, by tenant: then
    ``work(engine, tenant, own[tenant])``, each task carrying its own tenant's alone.

    Raises ``StoreUnavailableError`` naming the tenant when its worker fails on the database (any SQLAlchemy
    error, such as a connection refused) or dies (``BrokenProcessPool``); any other error of ``work`` as it is.
    """
    # Imported here: importing them registers exit handlers, which fails in code that runs at interpreter
    # exit and imports the audit package (the embedded writer's last flush migrates its database).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    workers = max(1, min(jobs, len(tenants)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start, initargs=(url,))
    try:
        arguments = {tenant: () if own is None else (own[tenant],) for tenant in tenants}
        futures = [(tenant, pool.submit(_run, work, tenant, *arguments[tenant])) for tenant in tenants]
        results = []
        for tenant, future in futures:
            try:
                results.append(future.result())
            except BrokenProcessPool as exc:
                raise StoreUnavailableError(
                    f"tenant {tenant!r} could not be checked: a worker process died ({exc})"
                ) from exc
            except SQLAlchemyError as exc:
                cause = getattr(exc, "orig", None) or exc
                raise StoreUnavailableError(
                    f"tenant {tenant!r} could not be checked: its worker process failed on the database ({cause})"
                ) from exc
        return results
    finally:
        # On an error, the tenants not started yet are not verified for nothing.
        pool.shutdown(wait=True, cancel_futures=True)


def _start(url: URL) -> None:
    global _engine
    _engine = create_store_engine(url)
    atexit.register(_engine.dispose)


def _run(work: Callable[..., T], tenant: str, *own: Any) -> T:
    assert _engine is not None, "not in a worker started by map_tenants"
    return work(_engine, tenant, *own)
