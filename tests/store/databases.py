"""The PostgreSQL databases a test session made, dropped together rather than one at a time.

``DROP DATABASE`` waits for a checkpoint of the whole cluster (PostgreSQL 15 forces one on every drop): a
second or more each on a server other suites keep busy, for every one of the hundreds of databases the
suite makes. Concurrent drops share a checkpoint, so the databases are dropped in parallel: those a test
made for itself alone (a copy of a template it tampers with) when a set of them is due, every other one
once the session ends (``pytest_sessionfinish`` in ``tests/conftest.py``), after every fixture using them is
torn down.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

_PARALLEL_DROPS = 16
"""Enough concurrent drops that a few checkpoints serve them all; each holds one connection."""

_lock = threading.Lock()
_of_the_session: list[tuple[URL, str]] = []
_done_with: list[tuple[URL, str]] = []


def made(server: URL, name: str) -> None:
    """``name``, a database of the server whose maintenance database ``server`` is, is dropped when the
    session ends."""
    with _lock:
        _of_the_session.append((server, name))


def done_with(server: URL, name: str) -> None:
    """No test uses ``name`` any more: it is dropped with the next ``_PARALLEL_DROPS - 1`` such databases (or
    by ``drop_those_done_with``, at the latest when the session ends), so that they do not pile up on the
    server's disk. Whatever is still connected to it is terminated then."""
    with _lock:
        _done_with.append((server, name))
        due = len(_done_with) >= _PARALLEL_DROPS
    if due:
        drop_those_done_with()


def drop_those_done_with() -> None:
    """Drop every database handed to ``done_with`` so far: before the logins that used them are dropped,
    since a role that still owns objects in a database cannot be."""
    with _lock:
        due = list(dict.fromkeys(_done_with))
        _done_with.clear()
    _drop(due)


def drop_all() -> None:
    """Drop every database made or done with in this session."""
    with _lock:
        due = list(dict.fromkeys([*_done_with, *_of_the_session]))
        _done_with.clear()
        _of_the_session.clear()
    _drop(due)


def _drop(databases: list[tuple[URL, str]]) -> None:
    if not databases:
        return
    engines = {
        server: create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        for server in {server for server, _ in databases}
    }

    def drop(database: tuple[URL, str]) -> None:
        server, name = database
        with engines[server].connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))

    try:
        with ThreadPoolExecutor(min(_PARALLEL_DROPS, len(databases))) as pool:
            # list(): the first failure (a database still in use by a process the tests did not end) is raised.
            list(pool.map(drop, databases))
    finally:
        for engine in engines.values():
            engine.dispose()
