"""Helpers that run the projector and open views in the tests."""

from __future__ import annotations

import time

from sqlalchemy import Engine, create_engine, text, update

from llm_ledger.projections import Projector
from llm_ledger.projections.schema import step_stats
from llm_ledger.store import EventStore, create_store_engine

CATCH_UP_SECONDS = 90.0
"""How long a test waits for the projector to apply what it stored. Generous: on a server shared with
other suites, a transaction open elsewhere holds the gap-safe cursor back for as long as it stays open,
and a test that fails names those transactions (``held_back``) rather than guessing."""


def stored_events(projector: Projector) -> int:
    return EventStore(projector.engine).count()


def held_back(engine: Engine) -> str:
    """On PostgreSQL, the cluster's oldest open transactions: what the projector's cursor waits for."""
    if engine.dialect.name != "postgresql":
        return "no transaction holds an SQLite projector back"
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT datname, usename, state, now() - xact_start AS age FROM pg_stat_activity"
                " WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL ORDER BY xact_start LIMIT 5"
            )
        ).all()
    return "oldest transactions of the cluster: " + "; ".join(
        f"{r.datname} {r.usename} {r.state} {r.age}" for r in rows
    )


def project_all(projector: Projector, timeout: float = CATCH_UP_SECONDS) -> None:
    """Catch up until every stored event is applied.

    On PostgreSQL the projector reads only below the server-wide transaction horizon, so a transaction
    still open anywhere on the server (another test's, another database's) can hold it back for a moment:
    that is its gap safety, not an error.
    """
    expected = stored_events(projector)
    deadline = time.monotonic() + timeout
    while True:
        projector.catch_up()
        applied = projector.status().events_applied
        if applied >= expected:
            assert applied == expected, f"{applied} events applied, {expected} stored"
            return
        assert time.monotonic() < deadline, (
            f"only {applied} of {expected} events applied after {timeout} s; {held_back(projector.engine)}"
        )
        time.sleep(0.02)


def project_url(url: str, **options: object) -> None:
    projector = Projector(url, **options)  # type: ignore[arg-type]
    try:
        project_all(projector)
    finally:
        projector.close()


def project_in_batches(
    url: str, batch_size: int, *, fresh_projector_per_batch: bool, timeout: float = CATCH_UP_SECONDS
) -> int:
    """Apply every stored event ``batch_size`` at a time; with ``fresh_projector_per_batch`` each batch is
    applied by a new ``Projector``, which remembers nothing of the executions the earlier ones saw open.
    Returns the number of batches."""
    engine = create_store_engine(url)
    projector = Projector(engine, batch_size=batch_size)
    batches = 0
    try:
        expected = stored_events(projector)
        deadline = time.monotonic() + timeout
        while True:
            if fresh_projector_per_batch:
                projector = Projector(engine, batch_size=batch_size)
            outcome = projector.apply_batch()
            assert outcome is not None
            if outcome[0]:
                batches += 1
                continue
            if projector.status().events_applied >= expected:
                break
            assert time.monotonic() < deadline, f"the projector did not catch up in {timeout} s; {held_back(engine)}"
            time.sleep(0.02)
        assert projector.status().events_applied == expected
    finally:
        engine.dispose()
    return batches


def as_an_older_projector_left_them(url: str) -> None:
    """The read models at ``url`` as a projector left them before it counted mock/openai-... under openai."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            mocks = step_stats.c.model.startswith("mock/openai-")
            assert connection.execute(update(step_stats).where(mocks).values(provider="mock")).rowcount > 0
    finally:
        engine.dispose()
