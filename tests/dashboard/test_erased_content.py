"""The Execution page shows captured content to a login that may read its keys, "erased" where an erasure
destroyed them, and "encrypted (no key access)" to a login that may not (``llm_ledger_keyholder``); so do the
Execution and Sessions pages' tool tables for a failed tool's exception text, which reads "ALTERED" on its own
where its ciphertext was moved or changed, the rest of the session shown."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from llm_ledger import LLMExecutor, LLMMessage, ToolSpec, execution_context, record_tool_call
from llm_ledger.audit.erasure import erase
from llm_ledger.dashboard.shaping import CONTENT_STATES, ERROR_IN_PLAIN
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.writer import BufferedWriter
from tests.dashboard.apptest import open_dashboard, rendered_text
from tests.erasure.conftest import RefundRefused, question, record, tool_error
from tests.events.tool_streams import Context, tool_stream

Configure = Callable[..., None]


def _recorded(tenant: str, writer: str, eraser: str, spool: Path) -> dict[str, str]:
    """Sessions ``kept`` and ``gone`` (erased) of ``tenant``; each one's execution id."""
    record(writer, spool, tenant, {"kept": "full", "gone": "full"}, executions=1)
    store = EventStore(eraser, tenant_id=tenant)  # the eraser reads its tenant's events (to count them)
    try:
        assert erase(store, tenant, session_id="gone") is not None
        started = [e for e in store.read_tenant(tenant) if e.event_type == "ExecutionStarted"]
        return {e.session_id or "": str(e.stream_id) for e in started}
    finally:
        store.close()


def _page(tenant: str, execution_id: str) -> AppTest:
    app = open_dashboard(page="execution", tenant=tenant, execution=execution_id, window="1d")
    assert not app.exception
    return app


def _payload_text(app: AppTest) -> str:
    return " ".join(json.dumps(json.loads(payload.value)) for payload in app.main.json)


def test_a_keyholder_sees_the_content_and_erased_where_it_was_erased(
    sqlite_url: str, dashboard_env: Configure, tmp_path: Path
) -> None:
    migrate.upgrade(sqlite_url)  # one local file: whoever opens it may read its keys
    executions = _recorded("acme", sqlite_url, sqlite_url, tmp_path / "spool")
    dashboard_env(sqlite_url)

    kept = _page("acme", executions["kept"])
    assert question("kept", 0) in _payload_text(kept)
    assert not kept.main.info

    gone = _page("acme", executions["gone"])
    assert [info.value for info in gone.main.info] == ["Captured content of this execution: erased."]
    assert {caption.value for caption in gone.main.caption} >= {"input: erased", "output: erased"}
    assert question("gone", 0) not in _payload_text(gone)


@pytest.mark.parametrize("keyholder", [True, False], ids=["keyholder", "reader-only"])
def test_on_postgresql_only_a_keyholder_login_sees_content(
    keyholder: bool,
    ledger_login: Callable[..., str],
    dashboard_env: Configure,
    tmp_path: Path,
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"  # of this test's own in the session's shared database
    writer = ledger_login("llm_ledger_writer", "llm_ledger_ingest")
    executions = _recorded(tenant, writer, ledger_login("llm_ledger_eraser"), tmp_path / "spool")
    roles = ("llm_ledger_reader", "llm_ledger_keyholder") if keyholder else ("llm_ledger_reader",)
    dashboard_env(ledger_login(*roles), tenant=tenant)

    kept = _page(tenant, executions["kept"])
    if keyholder:
        assert question("kept", 0) in _payload_text(kept) and not kept.main.info
    else:
        assert [info.value for info in kept.main.info] == [
            "Captured content of this execution: encrypted (no key access)."
        ]
        assert question("kept", 0) not in _payload_text(kept)
    gone = _page(tenant, executions["gone"])
    expected = "erased" if keyholder else "encrypted (no key access)"
    assert [info.value for info in gone.main.info] == [f"Captured content of this execution: {expected}."]
    for session, shown in (
        ("kept", tool_error("kept") if keyholder else "encrypted (no key access)"),
        ("gone", expected),
    ):
        app = open_dashboard(page="sessions", tenant=tenant, session=session, window="1d")
        assert not app.exception
        errors = {row["tool"]: row["error text"] for row in _tool_rows(app)}
        assert errors["refund"] == shown, session


def test_a_key_lost_without_an_erasure_reads_as_missing_loudly_not_as_erased(
    sqlite_url: str, dashboard_env: Configure, tmp_path: Path
) -> None:
    migrate.upgrade(sqlite_url)
    executions = _recorded("acme", sqlite_url, sqlite_url, tmp_path / "spool")
    # A loss, not an erasure: the key of "kept" gone from the file without any erasure naming it.
    engine = create_store_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM llm_ledger_content_keys WHERE session_id = 'kept'"))
            states = {
                row.session_id: row.key_state
                for row in connection.execute(text("SELECT DISTINCT session_id, key_state FROM audit_content"))
            }
    finally:
        engine.dispose()
    assert states == {"kept": "missing", "gone": "erased"}
    dashboard_env(sqlite_url)

    lost = _page("acme", executions["kept"])
    assert [error.value for error in lost.main.error] == [
        "Captured content of this execution: KEY MISSING (no key and no erasure of it: content lost)."
    ]
    assert not lost.main.info
    gone = _page("acme", executions["gone"])
    assert not gone.main.error and [info.value for info in gone.main.info] == [
        "Captured content of this execution: erased."
    ]


def _asked_and_failed(url: str, spool: Path, tenant: str, sessions: tuple[str, ...]) -> dict[str, str]:
    """In each session, an execution captured in full whose answer asks for a tool, which fails quoting its
    arguments (``tool_error``); each session's execution id."""
    store = EventStore(url)
    writer = BufferedWriter(store, spool, flush_interval=0.05)
    executor = LLMExecutor("mock/agent?p50_ms=0&tool_use=1", sink=writer, capture="full")
    spec = ToolSpec.from_function(refund)
    asked: dict[str, str] = {}

    async def run() -> None:
        for session in sessions:
            with execution_context(tenant_id=tenant, session_id=session):
                answer = await executor.generate([LLMMessage(role="user", content=question(session, 0))], tools=[spec])
                (call,) = answer.tool_calls
                with pytest.raises(RefundRefused), record_tool_call(call, sink=writer):
                    raise RefundRefused(tool_error(session))
            asked[session] = str(answer.execution_id)

    asyncio.run(run())
    assert writer.close(timeout=30).rejected == 0
    store.close()
    return asked


def refund(card: str) -> str:
    """Refund the order paid with a card."""
    return f"refunded to {card}"


def _tool_rows(app: AppTest) -> list[dict[str, Any]]:
    [table] = [frame.value for frame in app.main.dataframe if "tool call" in frame.value.columns]
    rows: list[dict[str, Any]] = table.to_dict("records")
    return rows


def test_a_failed_tool_s_exception_text_shows_to_a_keyholder_and_reads_erased_once_erased(
    sqlite_url: str, dashboard_env: Configure, tmp_path: Path
) -> None:
    migrate.upgrade(sqlite_url)
    executions = _asked_and_failed(sqlite_url, tmp_path / "spool", "acme", ("kept", "gone"))
    old_form = tool_stream(  # recorded in full before error_text existed: its text in its message
        Context("acme", session_id="kept"),
        tool_name="refund",
        started_at=datetime.now(UTC),
        outcome="failed",
        message=tool_error("old"),
        capture="full",
    )
    store = EventStore(sqlite_url)
    try:
        store.append(old_form)
        assert erase(store, "acme", session_id="gone") is not None
    finally:
        store.close()
    dashboard_env(sqlite_url)

    sentence = "the tool raised RefundRefused (its text is kept in error_text, encrypted)"
    (kept,) = _tool_rows(_page("acme", executions["kept"]))
    assert (kept["message"], kept["error text"]) == (sentence, tool_error("kept"))
    (gone,) = _tool_rows(_page("acme", executions["gone"]))
    assert (gone["message"], gone["error text"]) == (sentence, "erased")

    shown = {
        "gone": {(sentence, "erased")},
        "kept": {(sentence, tool_error("kept")), (tool_error("old"), ERROR_IN_PLAIN)},
    }
    for session, expected in shown.items():
        app = open_dashboard(page="sessions", tenant="acme", session=session, window="1d")
        assert not app.exception
        assert {(row["message"], row["error text"]) for row in _tool_rows(app)} == expected, session


def _tampered(url: str, session: str, how: str) -> None:
    """The ``error_text`` ciphertext of ``session``'s failed tool changed in place (the append-only trigger
    dropped): ``flipped``, a byte of it inverted; ``moved``, the ciphertext of the tool's arguments (same
    key, another event and field) put in its place."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER llm_ledger_events_reject_update"))
            failed = connection.execute(
                text(
                    "SELECT event_id, stream_id, payload FROM llm_ledger_events"
                    " WHERE event_type = 'ToolCallFailed' AND session_id = :session"
                ),
                {"session": session},
            ).one()
            payload = json.loads(failed.payload)
            encrypted = payload["error_text"]["encrypted"]
            if how == "flipped":
                sealed = bytearray(base64.b64decode(encrypted["ciphertext"]))
                sealed[0] ^= 0xFF
                encrypted["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
            else:
                started = connection.execute(
                    text(
                        "SELECT payload FROM llm_ledger_events"
                        " WHERE event_type = 'ToolCallStarted' AND stream_id = :stream"
                    ),
                    {"stream": failed.stream_id},
                ).scalar_one()
                moved = json.loads(started)["arguments"]["encrypted"]
                assert moved["key_id"] == encrypted["key_id"], "the same key: only the binding to its place differs"
                payload["error_text"]["encrypted"] = moved
            connection.execute(
                text("UPDATE llm_ledger_events SET payload = :payload WHERE event_id = :event"),
                {"payload": json.dumps(payload), "event": failed.event_id},
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("how", ["flipped", "moved"])
def test_an_altered_exception_text_reads_altered_and_the_rest_of_the_session_shows(
    how: str, sqlite_url: str, dashboard_env: Configure, tmp_path: Path
) -> None:
    migrate.upgrade(sqlite_url)
    executions = _asked_and_failed(sqlite_url, tmp_path / "spool", "acme", ("kept", "tampered"))
    _tampered(sqlite_url, "tampered", how)
    dashboard_env(sqlite_url)

    sessions = open_dashboard(page="sessions", tenant="acme", session="tampered", window="1d")
    assert not sessions.exception
    (row,) = _tool_rows(sessions)
    assert row["error text"] == CONTENT_STATES["altered"] and row["integrity"] == "broken"
    assert tool_error("tampered") not in rendered_text(sessions)
    assert [row["error text"] for row in _tool_rows(_page("acme", executions["tampered"]))] == [
        CONTENT_STATES["altered"]
    ]
    # Only that text: the execution's own content opens (its one error is the tool stream's broken chain),
    # and so does the other session's exception text.
    execution = _page("acme", executions["tampered"])
    assert question("tampered", 0) in _payload_text(execution)
    [broken] = [error.value for error in execution.main.error]
    assert broken.startswith("1 of 1 tool executions of this execution are not as they were recorded")
    kept = open_dashboard(page="sessions", tenant="acme", session="kept", window="1d")
    assert [row["error text"] for row in _tool_rows(kept)] == [tool_error("kept")]
