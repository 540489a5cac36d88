"""``erase``: one session (or one subject) among many loses its content for good, the rest keeps it, every
chain and ``audit verify`` stays clean, and the erasure is recorded; on both dialects, under the logins
the README prescribes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.audit import verify_ledger
from llm_ledger.audit.erasure import ErasurePlan, NothingToEraseError, PlainTexts, UnknownErasureTargetError, erase
from llm_ledger.store import EventStore, create_store_engine
from llm_ledger.store.content_keys import ContentState, opened
from llm_ledger.store.process_writer import ProcessWriter
from llm_ledger.store.writer import BufferedWriter
from tests.audit_sql.auditdoc import psql_url, run_psql, sql_blocks
from tests.digests import keyed
from tests.erasure.conftest import (
    Logins,
    question,
    read_back,
    record,
    record_plain_tool_failure,
    rewrite_payloads,
    texts_of,
    tool_error,
)
from tests.events.tool_streams import Context, tool_stream
from tests.plain_card import holds_plain_card

AUDIT_MD = Path(__file__).resolve().parents[2] / "docs" / "AUDIT.md"
NOTHING = r"^nothing to erase: these events keep no content \(capture hash/none\)$"
CONTENT_EVENTS = {
    "ExecutionStarted",
    "AttemptSucceeded",
    "ExecutionSucceeded",
    "ToolCallStarted",
    "ToolCallSucceeded",
    "ToolCallFailed",
}


def _erase(url: str, tenant: str, *, session_id: str | None = None, subject_id: str | None = None) -> tuple[int, int]:
    store = EventStore(url)
    try:
        done = erase(store, tenant, session_id=session_id, subject_id=subject_id)
    finally:
        store.close()
    assert done is not None
    return done.key_count, done.events_affected


def _query(url: str, sql: str, **parameters: str) -> list[tuple[object, ...]]:
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            return [tuple(row) for row in connection.execute(text(sql), parameters)]
    finally:
        engine.dispose()


def test_erasing_one_session_among_many(logins: Logins, tenant: str, tmp_path: Path) -> None:
    sessions = {f"s{i}": "full" for i in range(4)}
    record(logins.writer, tmp_path / "spool", tenant, sessions)  # type: ignore[arg-type]

    before = read_back(logins.keyholder, tenant)
    assert all(not hidden for _, _, hidden in before), "a keyholder reads every session's content"
    started = [values for event, values, _ in before if event.event_type == "ExecutionStarted"]
    assert {texts_of(values, "ExecutionStarted")[0] for values in started} == {
        question(s, i) for s in sessions for i in range(2)
    }

    keys, affected = _erase(logins.eraser, tenant, session_id="s2")
    assert keys == 1
    assert affected == sum(1 for e, _, _ in before if e.session_id == "s2" and e.event_type in CONTENT_EVENTS)

    after = read_back(logins.keyholder, tenant)
    for event, values, hidden in after:
        if event.event_type not in CONTENT_EVENTS:
            continue
        if event.session_id == "s2":
            assert set(hidden.values()) == {"erased"} and texts_of(values, event.event_type) == []
        else:
            assert not hidden and texts_of(values, event.event_type), "every other session stays readable"
    stored = " ".join(str(e.payload.model_dump(mode="json")) for e, _, _ in after)
    assert not holds_plain_card(stored), "no plain text is stored, erased or not"

    report = verify_ledger(logins.auditor, tenant_id=tenant, record=False)
    assert report.ok, report.to_text()

    (erasure,) = _query(
        logins.auditor,
        "SELECT session_id, subject_id, key_count, events_affected, erased_by FROM audit_erasures"
        " WHERE tenant_id = :tenant",
        tenant=tenant,
    )
    assert erasure[:4] == ("s2", None, 1, affected)
    if logins.dialect == "postgresql":
        assert erasure[4] == logins.eraser.split("//")[1].split("@")[0], "by the erasing login"
    flags = _query(
        logins.auditor, "SELECT session_id, erased FROM audit_content WHERE tenant_id = :tenant", tenant=tenant
    )
    assert len(flags) == sum(
        len(hidden) + (len(texts_of(values, e.event_type)) > 0) for e, values, hidden in after
    ) - sum(
        1 for e, values, _ in after if e.event_type == "ExecutionStarted" and len(texts_of(values, e.event_type)) > 1
    )
    assert {(session, bool(erased)) for session, erased in flags} == {
        *((s, False) for s in sessions if s != "s2"),
        ("s2", True),
    }
    states = _query(
        logins.auditor,
        "SELECT DISTINCT session_id, key_state FROM audit_content WHERE tenant_id = :tenant",
        tenant=tenant,
    )
    assert set(states) == {*((s, "kept") for s in sessions if s != "s2"), ("s2", "erased")}, "the auditor sees no key"


def test_erasing_a_session_erases_the_text_of_its_failed_tool_s_exception(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    """The exception's text may quote the arguments: it is encrypted with them, and erased with them; its
    class, sizes and digest stay, and so does every chain."""
    record(logins.writer, tmp_path / "spool", tenant, {"x": "full", "y": "full"}, executions=1)
    # A failure recorded in full before error_text existed: its text plain in its message, never encrypted.
    record_plain_tool_failure(logins.writer, tenant, "old")

    def failures() -> dict[str | None, tuple[Any, dict[str, Any], dict[str, ContentState]]]:
        return {
            e.session_id: (e, v, h)
            for e, v, h in read_back(logins.keyholder, tenant)
            if e.event_type == "ToolCallFailed"
        }

    before = failures()
    for session in ("x", "y"):
        event, values, hidden = before[session]
        assert values["error_text"]["text"] == tool_error(session) and not hidden
        assert values["message"] == "the tool raised RefundRefused (its text is kept in error_text, encrypted)"
        assert not holds_plain_card(event.model_dump_json()), "stored encrypted only"
    assert before["old"][1]["message"] == "no refund for old: card 4111 is blocked" and not before["old"][2]

    _erase(logins.eraser, tenant, session_id="x")

    after = failures()
    erased, erased_values, hidden = after["x"]
    assert hidden == {"error_text": "erased"} and erased_values["error_text"]["text"] is None
    assert erased_values["error_class"] == "RefundRefused" and erased_values["error_text"]["chars"] == len(
        tool_error("x")
    )
    assert after["y"][1]["error_text"]["text"] == tool_error("y") and not after["y"][2], "another session's opens"
    assert verify_ledger(logins.auditor, tenant_id=tenant, record=False).ok, "old and new forms verify alike"
    assert erased.hash == before["x"][0].hash, "the event is as it was"

    texts = _query(
        logins.auditor,
        "SELECT session_id, key_state FROM audit_content WHERE tenant_id = :tenant AND field = 'error_text'",
        tenant=tenant,
    )
    assert sorted(texts) == [("x", "erased"), ("y", "kept")], "the old form holds no encrypted text"
    digests = _query(
        logins.auditor,
        "SELECT session_id, error_text_digest, error_text_digest_alg FROM audit_tool_calls"
        " WHERE tenant_id = :tenant AND outcome = 'failed'",
        tenant=tenant,
    )
    assert sorted(digests, key=str) == sorted(
        [("old", None, None), *((s, keyed(tenant, tool_error(s).encode()), "hmac-sha256") for s in ("x", "y"))],
        key=str,
    ), "a keyholder of the digest key can still confirm a guessed text"


def test_erasing_a_subject_erases_each_of_its_sessions(logins: Logins, tenant: str, tmp_path: Path) -> None:
    sessions = {"a": "full", "b": "full", "c": "full"}
    record(logins.writer, tmp_path / "spool", tenant, sessions, subject={"a": "person-1", "b": "person-1"})  # type: ignore[arg-type]
    keys, affected = _erase(logins.eraser, tenant, subject_id="person-1")
    assert keys == 2 and affected > 0
    for event, _, hidden in read_back(logins.keyholder, tenant):
        if event.event_type in CONTENT_EVENTS:
            assert bool(hidden) == (event.session_id in ("a", "b")), event
    assert verify_ledger(logins.auditor, tenant_id=tenant, record=False).ok


def test_a_subject_s_plain_texts_outside_sessions_are_those_of_its_own_streams(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    """A subject with a key outside any session (session NULL): its count of plain texts takes the
    sessionless streams that name its keys, not every sessionless event of the tenant (other subjects', and
    streams recorded before encryption that name no subject), which it reported as this subject's."""
    record(
        logins.writer,
        tmp_path / "spool",
        tenant,
        {"a": "full"},
        subject={"a": "person-1"},
        sessionless={"person-1": "full", "person-2": "full"},
        executions=1,
    )
    # Each sessionless tool failure made the old form (its exception text in message, no error_text), as
    # recorded before error_text existed: person-1's is person-1's plain text, person-2's is not.
    old_form = rewrite_payloads(
        logins,
        tenant,
        "session_id IS NULL AND event_type = 'ToolCallFailed'",
        postgresql="payload - 'error_text'",
        sqlite="json_remove(payload, '$.error_text')",
    )
    assert old_form == 2
    store = EventStore(logins.writer)
    try:  # a sessionless stream recorded in full before encryption: two texts in plain, of no known subject
        store.append(
            tool_stream(
                Context(tenant),
                tool_name="refund",
                started_at=datetime.now(UTC),
                outcome="failed",
                message=tool_error("nobody"),
                capture="full",
            )
        )
    finally:
        store.close()
    planned: list[ErasurePlan] = []

    def confirm(plan: ErasurePlan) -> bool:
        planned.append(plan)
        return True

    eraser = EventStore(logins.eraser)
    try:
        done = erase(eraser, tenant, subject_id="person-1", confirm=confirm)
    finally:
        eraser.close()

    assert done is not None and done.key_count == 2 and set(done.plan.sessions) == {"a", None}
    assert done.plain == PlainTexts(tool_errors=1), "person-1's own sessionless failure, and nothing else"
    assert [plan.plain for plan in planned] == [PlainTexts(tool_errors=1)], "the plan shown before said the same"


def test_the_count_after_a_subject_s_erasure_takes_a_session_whose_key_came_since_the_plan(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    """A session of the subject started while the question was asked: its key is among those the erasure
    destroys, and its texts stored in plain are among those counted after it (on PostgreSQL, the count took
    the sessions of the plan, not of the keys deleted)."""
    record(logins.writer, tmp_path / "spool", tenant, {"a": "full"}, subject={"a": "person-1"}, executions=1)

    def confirm(plan: ErasurePlan) -> bool:
        assert plan.sessions == ("a",) and plan.plain == PlainTexts()
        record(logins.writer, tmp_path / "spool-b", tenant, {"b": "full"}, subject={"b": "person-1"}, executions=1)
        store = EventStore(logins.writer)
        try:  # and a tool failure of that session recorded in full before encryption: two texts in plain
            store.append(
                tool_stream(
                    Context(tenant, session_id="b"),
                    tool_name="refund",
                    started_at=datetime.now(UTC),
                    outcome="failed",
                    message=tool_error("b"),
                    capture="full",
                )
            )
        finally:
            store.close()
        return True

    eraser = EventStore(logins.eraser)
    try:
        done = erase(eraser, tenant, subject_id="person-1", confirm=confirm)
    finally:
        eraser.close()

    assert done is not None and done.key_count == 2 and set(done.plan.sessions) == {"a", "b"}, done
    assert done.plain == PlainTexts(captured=1, tool_errors=1), "session b's texts in plain, counted"


def test_erasing_what_keeps_no_content_says_there_is_nothing_to_erase(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"hashed": "hash", "sized": "none", "kept": "full"})
    store = EventStore(logins.eraser)
    try:
        for session in ("hashed", "sized"):
            with pytest.raises(
                NothingToEraseError, match=r"nothing to erase: these events keep no content \(capture hash/none\)"
            ):
                erase(store, tenant, session_id=session)
        with pytest.raises(UnknownErasureTargetError, match="has no session 'nowhere'"):
            erase(store, tenant, session_id="nowhere")
        with pytest.raises(UnknownErasureTargetError, match="tenant 'no-such-tenant' has no events"):
            erase(store, "no-such-tenant", session_id="kept")
        with pytest.raises(UnknownErasureTargetError, match="no content of subject 'nobody'"):
            erase(store, tenant, subject_id="nobody")
        assert erase(store, tenant, session_id="kept", confirm=lambda plan: False) is None, "declined: nothing done"
        assert erase(store, tenant, session_id="kept") is not None
        with pytest.raises(NothingToEraseError, match="was erased already"):
            erase(store, tenant, session_id="kept")
    finally:
        store.close()
    assert len(_query(logins.auditor, "SELECT 1 FROM audit_erasures WHERE tenant_id = :t", t=tenant)) == 1


def test_content_recorded_while_the_database_was_down_is_readable_after_the_replay(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    down = (
        "postgresql://postgres@127.0.0.1:9/nowhere"
        if logins.dialect == "postgresql"
        else "sqlite:////nonexistent/dir/x.db"
    )
    store = EventStore(down)

    writer = BufferedWriter(store, spool, flush_interval=0.05)

    async def run() -> None:
        executor = LLMExecutor("mock/primary?p50_ms=0", sink=writer, capture="full")
        with execution_context(tenant_id=tenant, session_id="offline"):
            await executor.generate([LLMMessage(role="user", content=question("offline", 0))])

    asyncio.run(run())
    stats = writer.close(timeout=5)
    assert stats.spooled == stats.accepted == 4 and stats.written == 0, stats
    journal = b"".join(path.read_bytes() for path in spool.rglob("spool-*.log"))
    assert b'"content_key"' in journal and not holds_plain_card(journal), "the key is journaled with its event"

    replaying = BufferedWriter(EventStore(logins.writer), spool)
    assert replaying.flush(timeout=60)
    assert replaying.close(timeout=60).rejected == 0
    opened = read_back(logins.keyholder, tenant)
    assert len(opened) == 4 and all(not hidden for _, _, hidden in opened)
    (started,) = [values for event, values, _ in opened if event.event_type == "ExecutionStarted"]
    assert texts_of(started, "ExecutionStarted") == [question("offline", 0)]


@pytest.mark.parametrize("logins", ["postgresql"], indirect=True)  # one SQLite file has no logins
def test_only_a_keyholder_reads_content_and_only_an_erasure_deletes_a_key(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"s": "full"})
    as_reader = [hidden for _, _, hidden in read_back(logins.reader, tenant)]
    assert any(as_reader) and all(set(hidden.values()) <= {"no key access"} for hidden in as_reader)

    def refused(url: str, sql: str, scope: str | None = None) -> str:
        engine = create_store_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("SELECT set_config('llm_ledger.tenant_id', :t, true)"), {"t": tenant})
                if scope:
                    connection.execute(text(scope))
                connection.execute(text(sql))
        except Exception as exc:  # noqa: BLE001 - the database's refusal is the point
            return str(exc)
        finally:
            engine.dispose()
        return "not refused"

    for login in (logins.writer, logins.reader, logins.eraser, logins.auditor):
        assert "permission denied" in refused(login, "SELECT secret FROM llm_ledger_content_keys")
    assert "permission denied" in refused(logins.keyholder, "DELETE FROM llm_ledger_content_keys")
    # The eraser deletes only through llm_ledger_erase, which records what it deleted: not by itself, even in
    # a transaction that says it is erasing.
    erasing = "SELECT set_config('llm_ledger.erasing', 'on', true)"
    for scope in ("SET LOCAL ROLE llm_ledger_eraser", erasing):
        assert "permission denied" in refused(logins.eraser, "DELETE FROM llm_ledger_content_keys", scope)
    forged = (
        "INSERT INTO llm_ledger_erasures (erasure_id, tenant_id, key_ids, key_count, events_affected)"
        " VALUES (gen_random_uuid(), 'x', '[]', 0, 0)"
    )
    assert "permission denied" in refused(logins.writer, forged)
    mine = f"WHERE tenant_id = '{tenant}'"
    outside = refused(logins.owner, f"DELETE FROM llm_ledger_content_keys {mine}")
    assert "a key is deleted only by llm-ledger erase" in outside, "not even by the owner, outside an erasure"
    assert "UPDATE rejected" in refused(logins.owner, f"UPDATE llm_ledger_content_keys SET session_id = 'x' {mine}")
    assert all(not hidden for _, _, hidden in read_back(logins.keyholder, tenant)), "nothing was deleted"
    _erase(logins.eraser, tenant, session_id="s")
    for change in (f"UPDATE llm_ledger_erasures SET key_count = 0 {mine}", f"DELETE FROM llm_ledger_erasures {mine}"):
        assert "append-only" in refused(logins.owner, change), "not even by the owner"


def test_a_key_id_in_another_spelling_of_its_uuid_reads_altered_and_is_never_looked_up(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    """A stored key id changed to another spelling of the same UUID (which Python's ``UUID`` takes, and
    PostgreSQL refuses or reads as that key) names no key: ``altered``, and the other keys are read as ever
    (not one refused query for the whole page, nor a "key missing" loss that is none)."""
    record(logins.writer, tmp_path / "spool", tenant, {"s": "full"})
    event = next(event for event, _, _ in read_back(logins.keyholder, tenant) if event.event_type == "ToolCallStarted")
    payload = event.payload.model_dump(mode="json")
    key_id = payload["arguments"]["encrypted"]["key_id"]
    store = EventStore(logins.keyholder, tenant_id=tenant, role=None)
    try:
        for spelling in (f"urn:uuid:{key_id}", key_id.upper(), f"{{{key_id}}}", key_id.replace("-", "")):
            changed = {**payload, "arguments": {**payload["arguments"]}}
            changed["arguments"]["encrypted"] = {**payload["arguments"]["encrypted"], "key_id": spelling}
            lookup = store.content_keys(tenant, [spelling, key_id])
            assert set(lookup.keys) == {key_id}, spelling
            states = opened("ToolCallStarted", changed, str(event.stream_id), str(event.event_id), lookup)[1]
            assert states == {"arguments": "altered"}, spelling
    finally:
        store.close()


def test_a_writer_process_stores_the_keys_made_in_the_application(logins: Logins, tenant: str, tmp_path: Path) -> None:
    # The application builds the payloads (and makes the keys); the child seals, journals and stores them.
    writer = ProcessWriter(logins.writer, tmp_path / "spool")

    async def run() -> None:
        executor = LLMExecutor("mock/primary?p50_ms=0", sink=writer, capture="full")
        for session in ("p1", "p2"):
            with execution_context(tenant_id=tenant, session_id=session):
                await executor.generate([LLMMessage(role="user", content=question(session, 0))])

    asyncio.run(run())
    assert writer.wait_stored(60)
    assert writer.close(timeout=30).mode == "process"
    opened = read_back(logins.keyholder, tenant)
    assert len(opened) == 8 and all(not hidden for _, _, hidden in opened)
    started = sorted(
        texts_of(values, "ExecutionStarted")[0] for e, values, _ in opened if e.event_type == "ExecutionStarted"
    )
    assert started == [question("p1", 0), question("p2", 0)]


def test_a_journal_replayed_after_an_erasure_does_not_bring_its_session_back(
    logins: Logins, tenant: str, tmp_path: Path
) -> None:
    record(logins.writer, tmp_path / "stored", tenant, {"r": "full"}, executions=1)
    # Another process wrote the same session while the database was down: its own key, in its journal only.
    spool = tmp_path / "journaled"
    down = "postgresql://postgres@127.0.0.1:9/nowhere" if logins.dialect == "postgresql" else "sqlite:////no/such/x.db"
    writer = BufferedWriter(EventStore(down), spool, flush_interval=0.05)

    async def run() -> None:
        executor = LLMExecutor("mock/primary?p50_ms=0", sink=writer, capture="full")
        with execution_context(tenant_id=tenant, session_id="r"):
            await executor.generate([LLMMessage(role="user", content=question("r", 1))])

    asyncio.run(run())
    assert writer.close(timeout=5).spooled == 4

    assert _erase(logins.eraser, tenant, session_id="r")[0] == 1, "the one key in the database"
    replaying = BufferedWriter(EventStore(logins.writer), spool)
    assert replaying.flush(timeout=60)
    assert replaying.close(timeout=60).rejected == 0
    opened = read_back(logins.keyholder, tenant)
    assert len([e for e, _, _ in opened if e.event_type == "ExecutionStarted"]) == 2, "both executions stored"
    for event, _, hidden in opened:
        if event.event_type in CONTENT_EVENTS:
            assert set(hidden.values()) == {"erased"}, "the journaled key was made before the erasure: not stored"


@pytest.mark.parametrize("logins", ["postgresql"], indirect=True)  # the doc's SQL, run with psql as an auditor
def test_the_audit_docs_erasure_queries_answer_as_the_erasure_says(logins: Logins, tenant: str, tmp_path: Path) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"a": "full", "b": "full"})
    record_plain_tool_failure(logins.writer, tenant, "old")
    _, affected = _erase(logins.eraser, tenant, session_id="a")
    blocks = {block.key: block.sql for block in sql_blocks(AUDIT_MD.read_text(encoding="utf-8"))}
    auditor = psql_url(logins.auditor)
    (erasure,) = run_psql(auditor, blocks["Erasure [1]"], {"tenant": tenant})
    assert (erasure["session_id"], erasure["key_count"], erasure["events_affected"]) == ("a", "1", str(affected))
    for session, erased in (("a", "t"), ("b", "f")):
        texts = run_psql(auditor, blocks["Erasure [2]"], {"tenant": tenant, "session": session})
        assert len(texts) == affected and {row["erased"] for row in texts} == {erased}
    (plain,) = run_psql(auditor, blocks["Erasure [3]"], {"tenant": tenant})
    assert (plain["session_id"], plain["error_message"]) == ("old", "no refund for old: card 4111 is blocked")
