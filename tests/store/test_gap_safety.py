"""read_all never skips an event when writers commit out of order (PostgreSQL's xid8 horizon)."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from llm_ledger.events import Event
from llm_ledger.store.dialects import START, Cursor
from llm_ledger.store.rows import event_to_row
from llm_ledger.store.schema import events as events_table
from llm_ledger.store.settings import normalize_url
from llm_ledger.store.store import EventStore
from tests.store.workload import make_events


def _drain(store: EventStore, cursor: Cursor, tenant: str) -> tuple[list[Event], Cursor]:
    seen: list[Event] = []
    while True:
        page, cursor = store.read_all(cursor, limit=3)
        if not page:
            return [e for e in seen if e.tenant_id == tenant], cursor
        seen.extend(page)


def test_a_transaction_committing_late_is_not_skipped(postgres_migrated_url: str) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:10]}"
    slow_events, fast_events = make_events(1, tenant=tenant), make_events(1, tenant=tenant)
    reader = EventStore(postgres_migrated_url)
    _, cursor = _drain(reader, START, tenant)  # start after whatever other tests left

    engine = create_engine(normalize_url(postgres_migrated_url), poolclass=NullPool)
    slow = engine.connect()
    slow_tx = slow.begin()
    # The slow writer takes the lower global positions first and keeps its transaction open...
    slow.execute(events_table.insert(), [event_to_row(e, i) for i, e in enumerate(slow_events)])
    # ...while a fast writer commits higher positions.
    EventStore(postgres_migrated_url).append(fast_events)

    seen_while_open, cursor = _drain(reader, cursor, tenant)
    assert seen_while_open == [], "nothing past the oldest running transaction is handed out yet"

    slow_tx.commit()
    slow.close()
    # The horizon is the server's oldest running transaction, in any database: a reader waits for it
    # (another session on this server may briefly hold one), it does not skip.
    seen_after: list[Event] = []
    deadline = time.monotonic() + 60
    while len(seen_after) < len(slow_events + fast_events) and time.monotonic() < deadline:
        page, cursor = _drain(reader, cursor, tenant)
        seen_after += page
        time.sleep(0.05)
    assert [e.event_id for e in seen_after] == [e.event_id for e in slow_events + fast_events]
    assert _drain(reader, cursor, tenant)[0] == [], "and each is handed out once"
