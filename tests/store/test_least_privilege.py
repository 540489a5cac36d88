"""The buffered writer under the logins the README prescribes (PostgreSQL): ``llm_ledger_writer`` with
``llm_ledger_ingest``, and ``llm_ledger_writer`` alone. Row-level security really applies to them (they
are not superusers), so the staging insert must scope each tenant's rows itself: before it did, a
replayed spool segment (the state a SIGKILL during a replay leaves) wedged a writer+ingest login for
good, and a writer-only login stored nothing at all."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_ledger.store.dialects import PostgresBackend
from llm_ledger.store.errors import ConcurrencyError
from llm_ledger.store.scoping import INGEST_ROLE, WRITER_ROLE
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import make_events, moved_onto, run_executions

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"  # port 9 (discard) is closed here: refused at once
STORED_WITHIN = 60.0
"""Generous: the machine is shared and slow; the wait ends as soon as the events are there."""


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


def _stored(superuser_url: str, tenant: str) -> int:
    store = EventStore(superuser_url)
    try:
        return len(store.read_tenant(tenant))
    finally:
        store.close()


def _wait_stored(superuser_url: str, tenant: str, expected: int) -> int:
    """Poll until ``expected`` of the tenant's events are stored (or the bound passes); how many are."""
    deadline = time.monotonic() + STORED_WITHIN
    while (found := _stored(superuser_url, tenant)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


async def _spooled_segment(spool: Path, tenants: tuple[str, ...]) -> int:
    """A spool holding executions of ``tenants`` (a writer whose database was down); how many events."""
    down = BufferedWriter(EventStore(UNREACHABLE), spool, flush_interval=0.05)
    for tenant in tenants:
        await run_executions(down, 10, tenant=tenant)
    stats = down.close(timeout=5)
    assert stats.spooled == stats.accepted > 0
    return stats.accepted


@pytest.mark.parametrize("roles", [(WRITER_ROLE, INGEST_ROLE), (WRITER_ROLE,)], ids=["writer+ingest", "writer-only"])
async def test_a_replayed_spool_segment_never_wedges_the_writer(
    roles: tuple[str, ...], ledger_login: Callable[..., str], postgres_migrated_url: str, tmp_path: Path
) -> None:
    tenants = (_tenant(), _tenant())
    spool, kept = tmp_path / "spool", tmp_path / "kept"
    spooled = await _spooled_segment(spool, tenants)
    shutil.copytree(spool, kept)
    url = ledger_login(*roles)

    # The first start replays the segment; the copy put back is that segment again, as a SIGKILL between
    # the replay's commit and the segment's removal leaves it; the second start replays it once more.
    for _ in range(2):
        writer = BufferedWriter(EventStore(url), spool)
        assert writer.flush(timeout=STORED_WITHIN)
        stats = writer.close(timeout=STORED_WITHIN)
        writer.store.close()
        assert stats.rejected == 0
        assert not list(spool.rglob("spool-*.log")), "the segment was replayed and removed"
        shutil.rmtree(spool)
        shutil.copytree(kept, spool)
    assert sum(_stored(postgres_migrated_url, tenant) for tenant in tenants) == spooled

    # And the writer goes on storing: new executions after the duplicate replay reach the database.
    writer = BufferedWriter(EventStore(url), spool)
    later = _tenant()
    await run_executions(writer, 50, tenant=later)
    accepted = writer.stats.accepted
    assert _wait_stored(postgres_migrated_url, later, accepted) == accepted
    stats = writer.close(timeout=STORED_WITHIN)
    writer.store.close()
    assert stats.spooled == 0, f"nothing of the later executions went to the spool (state {stats.state})"


async def test_a_writer_only_login_stores_a_thousand_events_of_several_tenants(
    ledger_login: Callable[..., str], postgres_migrated_url: str, tmp_path: Path
) -> None:
    url = ledger_login(WRITER_ROLE)
    writer = BufferedWriter(EventStore(url), tmp_path / "spool")
    tenants = (_tenant(), _tenant(), _tenant())
    for tenant in tenants:
        await run_executions(writer, 80, tenant=tenant)
    assert writer.flush(timeout=STORED_WITHIN)
    stats = writer.close(timeout=STORED_WITHIN)
    writer.store.close()
    assert stats.accepted >= 1_000
    assert stats.spooled == stats.rejected == 0, f"state {stats.state}"
    assert sum(_stored(postgres_migrated_url, tenant) for tenant in tenants) == stats.accepted


@pytest.fixture
def staged_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store never takes the direct COPY: every batch goes through the staging path."""
    monkeypatch.setattr(PostgresBackend, "copy_streaming", lambda self, connection, rows: None)


@pytest.mark.usefixtures("staged_only")
@pytest.mark.parametrize("roles", [(WRITER_ROLE, INGEST_ROLE), (WRITER_ROLE,)], ids=["writer+ingest", "writer-only"])
def test_the_staging_path_is_idempotent_by_event_id_and_refuses_a_taken_position(
    roles: tuple[str, ...], ledger_login: Callable[..., str], postgres_migrated_url: str
) -> None:
    store = EventStore(ledger_login(*roles))
    a, b = _tenant(), _tenant()
    first, second = make_events(3, tenant=a), make_events(3, tenant=b)
    assert store.append([*first, *second]).stored == len(first) + len(second)
    again = store.append([*second, *first])
    assert (again.stored, again.duplicates) == (0, len(first) + len(second))
    # A different event at a position another event holds: refused, and nothing of the batch is stored.
    fresh = make_events(2, tenant=a)
    with pytest.raises(ConcurrencyError):
        store.append([*fresh, *moved_onto(second, make_events(1, tenant=b))])
    assert _stored(postgres_migrated_url, a) == len(first)
    assert _stored(postgres_migrated_url, b) == len(second)
    store.close()


@pytest.mark.parametrize("roles", [(WRITER_ROLE, INGEST_ROLE), (WRITER_ROLE,)], ids=["writer+ingest", "writer-only"])
def test_a_refused_first_staging_insert_leaves_the_next_batches_storable(
    roles: tuple[str, ...], ledger_login: Callable[..., str], postgres_migrated_url: str
) -> None:
    # The staging table is made in the transaction of a connection's first staged batch: when that batch is
    # refused (a taken position), the table goes with its rollback, and the next staged batch on the same
    # pooled connection must make it again rather than COPY into a table that is no longer there.
    tenant = _tenant()
    stored = make_events(2, tenant=tenant)
    superuser = EventStore(postgres_migrated_url)
    superuser.append(stored)
    superuser.close()
    store = EventStore(ledger_login(*roles))
    with pytest.raises(ConcurrencyError):
        store.append(moved_onto(stored, make_events(1, tenant=tenant)))
    fresh = make_events(2, tenant=tenant)
    # The stored events again (a replayed segment) with new ones: the staging path, on the same connection.
    again = store.append([*stored, *fresh])
    assert (again.stored, again.duplicates) == (len(fresh), len(stored))
    assert _stored(postgres_migrated_url, tenant) == len(stored) + len(fresh)
    store.close()
