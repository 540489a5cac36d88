"""Ledgers with content captured in full, recorded and erased under the logins the README prescribes: on
PostgreSQL a writer login (``llm_ledger_writer`` + ``llm_ledger_ingest``), an eraser login
(``llm_ledger_eraser``), reading logins with and without ``llm_ledger_keyholder``, and an auditor; on SQLite
the one file."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from llm_ledger import LLMExecutor, LLMMessage, execution_context, record_tool_call
from llm_ledger.events import Event
from llm_ledger.events.capture import CapturePolicy
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.content_keys import ContentState, opened, wanted_keys
from llm_ledger.store.writer import BufferedWriter
from tests.events.tool_streams import Context, tool_stream
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
    ledger_login,
    postgres_migrated_url,
    postgres_url,
    sqlite_url,
)


@dataclass(frozen=True)
class Logins:
    dialect: str
    owner: str
    writer: str
    eraser: str
    keyholder: str
    reader: str
    auditor: str
    superuser: str
    """Only to look at what the logins did (SQLite: the file)."""


@dataclass(frozen=True)
class OwnedLedger:
    superuser: str
    """The database as the superuser: only to look at what the logins did."""
    owner: str
    """As its owner, a login that is not a superuser, which migrated it (the deploy's migrating login)."""
    login: Callable[..., str]


@pytest.fixture(scope="package")
def owned_ledger(
    _create_postgres_database: Callable[[], str],  # noqa: F811
    _postgres_server: Engine,  # noqa: F811
    ledger_login: Callable[..., str],  # noqa: F811
) -> Iterator[OwnedLedger]:
    """A database owned and migrated by a login that is not a superuser, as deploy/postgres/ledger-logins.sql
    sets one up (and as tests/logins' ledger): row-level security FORCEd applies to that owner, and so to
    the SECURITY DEFINER functions that run as it."""
    database = _create_postgres_database()
    owner_url = ledger_login(database=database)
    owner, name = make_url(owner_url).username, make_url(database).database
    with _postgres_server.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" OWNER TO "{owner}"'))
    migrate.upgrade(owner_url)
    yield OwnedLedger(database, owner_url, lambda *roles: ledger_login(*roles, database=database))
    # The login is dropped at the end of the session, before the database: hand what it owns back.
    superuser = create_store_engine(database, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with superuser.connect() as connection:
            connection.execute(text(f'REASSIGN OWNED BY "{owner}" TO CURRENT_USER'))
            connection.execute(text(f'DROP OWNED BY "{owner}"'))
    finally:
        superuser.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def logins(request: pytest.FixtureRequest, sqlite_url: str) -> Logins:  # noqa: F811
    if request.param == "sqlite":
        migrate.upgrade(sqlite_url)
        return Logins("sqlite", *([sqlite_url] * 7))
    ledger: OwnedLedger = request.getfixturevalue("owned_ledger")
    login = ledger.login
    return Logins(
        "postgresql",
        ledger.owner,
        writer=login("llm_ledger_writer", "llm_ledger_ingest"),
        eraser=login("llm_ledger_eraser"),
        keyholder=login("llm_ledger_reader", "llm_ledger_keyholder"),
        reader=login("llm_ledger_reader"),
        auditor=login("llm_ledger_auditor"),
        superuser=ledger.superuser,
    )


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def question(session: str, i: int) -> str:
    return f"question {i} of {session}: my card is 4111"


def tool_error(session: str) -> str:
    """The text of the exception the failing tool of ``session`` raises: it quotes the arguments."""
    return f"no refund for {session}: card 4111 is blocked"


class RefundRefused(Exception):
    """The failing tool's exception."""


def record(
    url: str,
    spool: Path,
    tenant: str,
    sessions: dict[str, CapturePolicy],
    *,
    subject: dict[str, str] | None = None,
    executions: int = 2,
    sessionless: dict[str, CapturePolicy] | None = None,
) -> None:
    """``executions`` executions per session under its capture policy, the first of each followed by a tool
    run and by a tool run that fails (``tool_error``); then the same outside any session for each subject of
    ``sessionless`` (session None); stored by a buffered writer under ``url``, closed."""
    store = EventStore(url)
    writer = BufferedWriter(store, spool, flush_interval=0.05)
    runs: list[tuple[str | None, str | None, CapturePolicy]] = [
        (session, (subject or {}).get(session), capture) for session, capture in sessions.items()
    ]
    runs += [(None, subject_id, capture) for subject_id, capture in (sessionless or {}).items()]

    async def run() -> None:
        for session, subject_id, capture in runs:
            executor = LLMExecutor("mock/primary?p50_ms=0", sink=writer, capture=capture)
            with execution_context(tenant_id=tenant, agent_id="a", session_id=session, subject_id=subject_id):
                for i in range(executions):
                    await executor.generate([LLMMessage(role="user", content=question(str(session), i))])
                with record_tool_call("lookup", {"order": session}, sink=writer, capture=capture) as run:
                    run.result = f"order of {session} found"
                refund = record_tool_call("refund", {"card": "4111"}, sink=writer, capture=capture)
                with pytest.raises(RefundRefused), refund:
                    raise RefundRefused(tool_error(str(session)))

    asyncio.run(run())
    stats = writer.close(timeout=30)
    store.close()
    assert stats.written + stats.replayed == stats.accepted and stats.rejected == 0, stats


def record_plain_tool_failure(url: str, tenant: str, session_id: str) -> None:
    """A tool failure of ``session_id`` recorded in full before ``error_text`` existed: its exception's text
    (quoting the card number) plain in its ``message``, never encrypted."""
    old_form = tool_stream(
        Context(tenant, session_id=session_id),
        tool_name="refund",
        started_at=datetime.now(UTC),
        outcome="failed",
        message=f"no refund for {session_id}: card 4111 is blocked",
        capture="full",
    )
    store = EventStore(url)
    try:
        store.append(old_form)
    finally:
        store.close()


def rewrite_payloads(logins: Logins, tenant: str, where: str, *, postgresql: str, sqlite: str) -> int:
    """Tampering, as the superuser: the stored payload of the tenant's events matching ``where`` (SQL on the
    events table) set to an SQL expression of ``payload``, one per dialect, with the append-only triggers
    lifted for that statement alone (restored in the same transaction). How the database may come to hold
    what no writer wrote. Returns how many events it changed."""
    engine = create_store_engine(logins.superuser, poolclass=NullPool)
    update = f"UPDATE llm_ledger_events SET payload = {{}} WHERE tenant_id = :tenant AND ({where})"
    try:
        with engine.begin() as connection:
            if logins.dialect == "postgresql":
                connection.execute(text("ALTER TABLE llm_ledger_events DISABLE TRIGGER USER"))
                changed = connection.execute(text(update.format(postgresql)), {"tenant": tenant}).rowcount
                connection.execute(text("ALTER TABLE llm_ledger_events ENABLE TRIGGER USER"))
                return changed
            triggers = connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'llm_ledger_events'")
            ).all()
            for trigger in triggers:
                connection.execute(text(f'DROP TRIGGER "{trigger.name}"'))
            changed = connection.execute(text(update.format(sqlite)), {"tenant": tenant}).rowcount
            for trigger in triggers:
                connection.execute(text(trigger.sql))
            return changed
    finally:
        engine.dispose()


def read_back(url: str, tenant: str) -> list[tuple[Event, dict[str, Any], dict[str, ContentState]]]:
    """Every event of the tenant, its payload opened as the login at ``url`` may."""
    store = EventStore(url, tenant_id=tenant, role=None)
    try:
        events = store.read_tenant(tenant)
        payloads = [(e.event_type, e.payload.model_dump(mode="json")) for e in events]
        lookup = store.content_keys(tenant, wanted_keys(payloads))
        return [
            (event, *opened(event_type, payload, str(event.stream_id), str(event.event_id), lookup))
            for event, (event_type, payload) in zip(events, payloads, strict=True)
        ]
    finally:
        store.close()


def texts_of(values: dict[str, Any], event_type: str) -> list[str]:
    """The captured texts an opened payload shows."""
    if event_type == "ExecutionStarted":
        return [m["content"] for m in values["input"]["messages"] or ()]
    for name in ("output", "arguments", "result", "error_text"):
        if name in values and values[name].get("text") is not None:
            return [values[name]["text"]]
    return []
