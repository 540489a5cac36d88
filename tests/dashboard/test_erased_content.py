"""The Execution page shows captured content to a login that may read its keys, "erased" where an erasure
destroyed them, and "encrypted (no key access)" to a login that may not (``llm_ledger_keyholder``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from llm_ledger.audit.erasure import erase
from llm_ledger.store import EventStore, create_store_engine, migrate
from tests.dashboard.apptest import open_dashboard
from tests.erasure.conftest import question, record

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
