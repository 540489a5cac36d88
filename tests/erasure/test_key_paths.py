"""The paths a data key takes besides its first event's batch: a spooled key of another session replayed
after an erasure, a key whose first event is set aside, the direct COPY (which has no place for a key),
the lock an erasure and the key store share, a TEMP table named like the key table, the downgrade; on both
dialects where the path exists on both."""

from __future__ import annotations

import asyncio
import base64
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import orjson
import pytest
from sqlalchemy import text

from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.events import EventDraft, StreamHeader, StreamSealer
from llm_ledger.events import values as payloads
from llm_ledger.events.encryption import Keyring
from llm_ledger.events.values import JsonPayload
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.content_keys import store_keys
from llm_ledger.store.dialects import DirectCopyConflict
from llm_ledger.store.migrate import DowngradeRefusedError
from llm_ledger.store.rows import event_to_row
from llm_ledger.store.writer import BufferedWriter
from tests.erasure.conftest import Logins, question, read_back, record, texts_of
from tests.erasure.test_erasure import CONTENT_EVENTS, _erase
from tests.store.test_spool import _record_offsets
from tests.store.workload import DraftSink

LOCK_WAIT_POLLS = 600
"""How many times (0.1 s apart) to look for the blocked transaction in pg_stat_activity before failing."""


def _drafts(tenant: str, session: str) -> list[EventDraft]:
    drafts: list[EventDraft] = []

    async def run() -> None:
        executor = LLMExecutor("mock/primary?p50_ms=0", sink=DraftSink(drafts), capture="full")
        with execution_context(tenant_id=tenant, session_id=session):
            await executor.generate([LLMMessage(role="user", content=question(session, 0))])

    asyncio.run(run())
    return drafts


def test_a_spooled_session_replayed_after_another_sessions_erasure_stays_readable(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    record(logins.writer, tmp_path / "stored", tenant, {"a": "full"}, executions=1)
    # Session b, no subject, while the database was down: its key in the journal only, made before a's erasure.
    spool = tmp_path / "journaled"
    down = "postgresql://postgres@127.0.0.1:9/nowhere" if logins.dialect == "postgresql" else "sqlite:////no/such/x.db"
    writer = BufferedWriter(EventStore(down), spool, flush_interval=0.05)
    for draft in _drafts(tenant, "b"):
        writer.emit(draft)
    assert writer.close(timeout=5).spooled == 4
    _erase(logins.eraser, tenant, session_id="a")  # names no subject: must not cover b's subjectless key

    replaying = BufferedWriter(EventStore(logins.writer), spool)
    assert replaying.flush(timeout=60)
    assert replaying.close(timeout=60).rejected == 0
    for event, values, hidden in read_back(logins.keyholder, tenant):
        if event.session_id == "b" and event.event_type in CONTENT_EVENTS:
            assert not hidden and texts_of(values, event.event_type), "b's content is readable"
        elif event.event_type in CONTENT_EVENTS:
            assert set(hidden.values()) == {"erased"}


def test_a_key_whose_first_event_is_set_aside_is_stored_and_never_written_aside(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    drafts = _drafts(tenant, "k")
    assert drafts[0].event_type == "ExecutionStarted"
    # Another event already holds the first position of the stream: the batch's ConcurrencyError sets that
    # draft's row aside, and with it the row that carries the key of the session.
    taken = StreamSealer(StreamHeader(stream_id=drafts[0].stream_id, tenant_id=tenant, session_id="k")).draft(
        "ExecutionFailed",
        JsonPayload(
            lambda: payloads.execution_failed(
                error_type="timeout", message="m", attempts=1, latency_ms=1.0, last_model="x", chunks_delivered=0
            )
        ),
        occurred_at=datetime.now(UTC),
    )
    store = EventStore(logins.writer)
    store.append([taken])
    spool = tmp_path / "spool"
    writer = BufferedWriter(store, spool, batch_size=len(drafts), flush_interval=0.01)
    for draft in drafts:
        writer.emit(draft)
    stats = writer.close(timeout=60)
    store.close()
    assert stats.rejected == 1, stats

    opened = read_back(logins.keyholder, tenant)
    assert {str(event.event_id) for event, _, _ in opened} == {str(d.event_id) for d in [taken, *drafts[1:]]}
    answers = [values for event, values, hidden in opened if event.event_type == "AttemptSucceeded" and not hidden]
    assert len(answers) == 1 and texts_of(answers[0], "AttemptSucceeded"), "the later events' content is readable"
    store = EventStore(logins.keyholder, tenant_id=tenant, role=None)
    try:
        (entry,) = (orjson.loads(line) for line in (spool / "rejected.jsonl").read_bytes().splitlines())
        key_id = entry["content_key_id"]
        (key,) = store.content_keys(tenant, [key_id]).keys.values()
    finally:
        store.close()
    rejected = (spool / "rejected.jsonl").read_text()
    assert base64.b64encode(key.secret).decode() not in rejected and '"secret"' not in rejected
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)


@pytest.mark.parametrize("logins", ["postgresql"], indirect=True)  # SQLite has no direct COPY
def test_the_direct_copy_refuses_rows_that_carry_a_key(logins: Logins, tenant: str) -> None:
    rows = [event_to_row(draft, index) for index, draft in enumerate(_drafts(tenant, "c"))]
    store = EventStore(logins.writer)
    try:
        assert store.append_streaming(rows) is None, "a list holding a key: not copied"
        with pytest.raises(DirectCopyConflict, match="carries a data key"):
            store.append_streaming(iter(rows))
        assert store.read_tenant(tenant) == [], "rolled back: nothing stored without its key"
        store.append_rows(rows)
    finally:
        store.close()
    assert all(not hidden for _, _, hidden in read_back(logins.keyholder, tenant))


def _key_records(tenant: str, session: str) -> list[dict[str, object]]:
    key, _ = Keyring().key_for(tenant, None, session)
    return [key.record()]


@pytest.mark.parametrize("logins", ["postgresql"], indirect=True)  # SQLite: one writer at a time, by its lock
def test_an_erasure_waits_for_a_key_being_stored_and_destroys_it(logins: Logins, tenant: str, tmp_path: Path) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"w": "full"}, executions=1)
    late = _key_records(tenant, "w")
    writer = create_store_engine(logins.writer)
    erased: list[tuple[int, int]] = []
    with writer.connect() as storing:
        storing.execute(
            text("SELECT llm_ledger_store_content_keys(CAST(:k AS jsonb))"), {"k": orjson.dumps(late).decode()}
        )
        eraser = threading.Thread(target=lambda: erased.append(_erase(logins.eraser, tenant, session_id="w")))
        eraser.start()
        _wait_for_advisory_lock_wait(logins)
        storing.commit()  # the key is stored: the erasure, let through, must destroy and record it too
    eraser.join(60)
    writer.dispose()
    assert erased and erased[0][0] == 2, "the recorded key and the one stored while the erasure waited"
    (named,) = _superuser_rows(
        logins, "SELECT key_ids FROM llm_ledger_erasures WHERE tenant_id = :t AND session_id = 'w'", t=tenant
    )
    assert late[0]["key_id"] in cast(list[str], named[0])


@pytest.mark.parametrize("logins", ["postgresql"], indirect=True)
def test_a_key_stored_while_an_erasure_holds_the_lock_waits_and_is_destroyed_on_arrival(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"v": "full"}, executions=1)
    made_before = _key_records(tenant, "v")
    eraser = create_store_engine(logins.eraser)
    skipped: list[int] = []
    writer = EventStore(logins.writer)
    with eraser.connect() as erasing:
        erasing.execute(text("SELECT set_config('llm_ledger.tenant_id', :t, true)"), {"t": tenant})
        erasing.execute(text("SET LOCAL ROLE llm_ledger_eraser"))
        erasing.execute(text("SELECT * FROM llm_ledger_erase(:t, 'v', NULL)"), {"t": tenant})

        def store() -> None:
            with writer.transaction() as connection:
                skipped.append(store_keys(connection, made_before))

        storing = threading.Thread(target=store)
        storing.start()
        _wait_for_advisory_lock_wait(logins)
        erasing.commit()
    storing.join(60)
    writer.close()
    eraser.dispose()
    assert skipped == [1], "checked after the erasure committed: made before it, not stored"
    rows = _superuser_rows(
        logins,
        "SELECT key_ids FROM llm_ledger_erasures WHERE tenant_id = :t ORDER BY erased_at",
        t=tenant,
    )
    assert [made_before[0]["key_id"]] in [row[0] for row in rows], "destroyed on arrival, and recorded"


@pytest.mark.parametrize("logins", ["postgresql"], indirect=True)
def test_a_temp_table_named_like_the_key_table_does_not_take_the_keys(logins: Logins, tenant: str) -> None:
    keys = _key_records(tenant, "t")
    engine = create_store_engine(logins.writer)
    try:
        with engine.begin() as connection:
            for name in ("llm_ledger_content_keys", "llm_ledger_erasures"):
                connection.execute(text(f"CREATE TEMP TABLE {name} (LIKE pg_catalog.pg_class)"))
            connection.execute(
                text("SELECT llm_ledger_store_content_keys(CAST(:k AS jsonb))"), {"k": orjson.dumps(keys).decode()}
            )
            assert connection.execute(text("SELECT count(*) FROM pg_temp.llm_ledger_content_keys")).scalar() == 0
    finally:
        engine.dispose()
    (stored,) = _superuser_rows(
        logins, "SELECT count(*) FROM public.llm_ledger_content_keys WHERE tenant_id = :t", t=tenant
    )
    assert stored == (1,)


def test_the_downgrade_is_refused_while_an_erasure_or_encrypted_content_exists(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"d": "full"}, executions=1)
    _erase(logins.eraser, tenant, session_id="d")  # no key left: the erasure and the ciphertexts still refuse
    # SQLite: this test's own file, whose one key is gone; PostgreSQL: the package's ledger, other tests' keys.
    refusal = "llm_ledger_erasures holds erasure records" if logins.dialect == "sqlite" else "is refused"
    with pytest.raises(DowngradeRefusedError, match=refusal):
        migrate.downgrade(logins.owner, "0009")
    assert migrate.current(logins.owner) == migrate.head()


def _wait_for_advisory_lock_wait(logins: Logins) -> None:
    """Until some transaction of the database waits on an advisory lock (the mechanism, not a time)."""
    for _ in range(LOCK_WAIT_POLLS):
        (waiting,) = _superuser_rows(
            logins,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        if waiting[0]:
            return
        threading.Event().wait(0.1)
    raise AssertionError("no transaction ever waited on the erasure lock")


def _superuser_rows(logins: Logins, sql: str, **parameters: object) -> list[tuple[object, ...]]:
    engine = create_store_engine(logins.superuser)
    try:
        with engine.begin() as connection:
            return [tuple(row) for row in connection.execute(text(sql), parameters)]
    finally:
        engine.dispose()


def test_a_damaged_journal_record_is_set_aside_without_its_keys_secret(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    spool = tmp_path / "journaled"
    down = "postgresql://postgres@127.0.0.1:9/nowhere" if logins.dialect == "postgresql" else "sqlite:////no/such/x.db"
    writer = BufferedWriter(EventStore(down), spool, flush_interval=0.05)
    drafts = _drafts(tenant, "z")
    for draft in drafts:
        writer.emit(draft)
    assert writer.close(timeout=5).spooled == len(drafts)
    assert drafts[0].content_key is not None
    secret = base64.b64encode(drafts[0].content_key.secret)
    (segment,) = spool.rglob("spool-*.log")
    data = bytearray(segment.read_bytes())
    assert secret in data, "the journal holds the key (that is how a replay stores it)"
    at = data.index(secret)
    offset, size = next((o, n) for o, n in _record_offsets(segment) if o <= at < o + n)
    data[offset + size - 3] ^= 0x10  # a bit of the body of the record holding the key, away from the key
    segment.write_bytes(bytes(data))

    replaying = BufferedWriter(EventStore(logins.writer), spool)
    assert replaying.flush(timeout=60)
    replaying.close(timeout=60)
    torn = [path.read_bytes() for path in spool.rglob("*.torn")]
    assert torn and all(b'"secret":"(removed)"' in kept and secret not in kept for kept in torn)
