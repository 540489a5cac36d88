"""Every command as the login the README prescribes for it (PostgreSQL), never as a superuser: see
``conftest.py`` for which login runs what."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from llm_ledger.dashboard.source import LedgerNotReadyError, LedgerSource, check_schema
from llm_ledger.events import FallbackTriggered
from llm_ledger.projections.queries import Window
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.scoping import (
    AUDITOR_ROLE,
    INGEST_ROLE,
    PROJECTOR_ROLE,
    READER_ROLE,
    SEALER_ROLE,
    WRITER_ROLE,
)
from tests.dashboard.ledger import BACKUP, FAST, LIMITED, run
from tests.logins.conftest import (
    COMMAND_TIMEOUT,
    EXECUTIONS_PER_TENANT,
    LLM_LEDGER,
    Ledger,
    Recorded,
    hand_back,
    owned_by_a_login,
    record,
)

pytestmark = pytest.mark.timeout(COMMAND_TIMEOUT * 4)
"""The commands' own bounded waits, not the suite's per-test timeout, decide: each command is a process
of its own on a machine that may be loaded."""


def _all_tenants(recorded: Recorded) -> list[str]:
    return sorted(tenant for tenants in recorded.tenants.values() for tenant in tenants)


def _held_back(ledger: Ledger) -> str:
    """Why a follower may not have seen the newest events: like every consumer of the gap-safe cursor, it
    waits for every transaction of the cluster older than them (other suites share the server)."""
    engine = create_store_engine(ledger.superuser, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT datname, usename, state, now() - xact_start AS age FROM pg_stat_activity"
                    " WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL ORDER BY xact_start LIMIT 5"
                )
            ).all()
    finally:
        engine.dispose()
    return "oldest transactions of the cluster: " + "; ".join(
        f"{r.datname} {r.usename} {r.state} {r.age}" for r in rows
    )


def _interrupt(follower: subprocess.Popen[str]) -> str:
    """Ctrl-C to a ``--follow`` command, and what it said on stderr. One still running
    ``COMMAND_TIMEOUT`` later is aborted, its threads' stacks dumped by faulthandler (``PYTHONFAULTHANDLER``
    in its environment), so that the failure says where it hung rather than only that it did."""
    follower.send_signal(signal.SIGINT)
    try:
        return follower.communicate(timeout=COMMAND_TIMEOUT)[1]
    except subprocess.TimeoutExpired:
        signals = _signal_state(follower.pid)
        follower.send_signal(signal.SIGABRT)
        try:
            stacks = follower.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            follower.kill()
            stacks = follower.communicate()[1]
        pytest.fail(f"still running {COMMAND_TIMEOUT:.0f} s after SIGINT ({signals}); its stacks:\n{stacks}")


def _signal_state(pid: int) -> str:
    """The process's state and signal masks from /proc (a blocked or ignored SIGINT shows there)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as exc:
        return f"no /proc status: {exc}"
    return ", ".join(line for line in lines if line.startswith(("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn")))


def _tool_outcomes() -> dict[tuple[str, ...], int]:
    """The tool executions the recording process made per tenant (every third one failed)."""
    failed = sum(1 for i in range(EXECUTIONS_PER_TENANT) if i % 3 == 2)
    return {("lookup", "succeeded"): EXECUTIONS_PER_TENANT - failed, ("lookup", "failed"): failed}


def _whole_history() -> Window:
    now = datetime.now(UTC)
    return Window(now - timedelta(days=1), now + timedelta(minutes=5))


# --- migrating ------------------------------------------------------------------------------------------


def test_the_database_owner_migrates(migrated: subprocess.CompletedProcess[str]) -> None:
    assert f"at revision {migrate.head()}" in migrated.stdout


@pytest.mark.parametrize(
    "roles",
    [(WRITER_ROLE, INGEST_ROLE), (WRITER_ROLE,), (READER_ROLE,), (AUDITOR_ROLE,), (PROJECTOR_ROLE,), (SEALER_ROLE,)],
    ids=lambda roles: "+".join(role.removeprefix("llm_ledger_") for role in roles),
)
def test_every_role_reads_the_schema_revision(
    ledger: Ledger, migrated: subprocess.CompletedProcess[str], roles: tuple[str, ...]
) -> None:
    done = ledger.run("db", "current", url=ledger.login(*roles))
    assert "up to date" in done.stdout


# --- recording ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["writer+ingest", "writer-only"])
def test_a_writer_login_stores_every_event_through_the_default_writer(
    ledger: Ledger, recorded: Recorded, writer: str
) -> None:
    tenants = "', '".join(recorded.tenants[writer])
    streams = ledger.count(f"SELECT count(DISTINCT stream_id) FROM llm_ledger_events WHERE tenant_id IN ('{tenants}')")
    # One execution and one tool execution each time.
    assert streams == 2 * EXECUTIONS_PER_TENANT * len(recorded.tenants[writer])
    tool_calls = ledger.count(f"SELECT count(*) FROM audit_tool_calls WHERE tenant_id IN ('{tenants}')")
    assert tool_calls == EXECUTIONS_PER_TENANT * len(recorded.tenants[writer])
    incomplete = ledger.count(
        f"SELECT count(*) FROM audit_incomplete WHERE tenant_id IN ('{tenants}')"  # every stream ended
    )
    assert incomplete == 0
    assert not list(recorded.spools[writer].rglob("spool-*.log")), "nothing was left in the spool"


# --- projecting -----------------------------------------------------------------------------------------


def test_project_as_the_projector(ledger: Ledger, projected: subprocess.CompletedProcess[str]) -> None:
    stored = ledger.count("SELECT count(*) FROM llm_ledger_events")
    assert f"the read models now hold {stored:,}" in projected.stdout


def test_project_follow_as_the_projector_applies_new_events_until_interrupted(
    ledger: Ledger, projected: subprocess.CompletedProcess[str]
) -> None:
    follower = subprocess.Popen(
        [LLM_LEDGER, "project", "--follow", "--poll-seconds", "0.2", "--database-url", ledger.login(PROJECTOR_ROLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ledger.env(PYTHONFAULTHANDLER="1"),
    )
    try:
        record(ledger, (WRITER_ROLE, INGEST_ROLE), (f"tenant-{uuid.uuid4().hex[:8]}",), ledger.home / "spool-follow")
        ledger.wait_until_readable_by_cursor()  # else a transaction of another suite is what the test waits for
        stored = ledger.count("SELECT count(*) FROM llm_ledger_events")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        applied = 0
        while follower.poll() is None and time.monotonic() < deadline:
            applied = ledger.count("SELECT COALESCE(max(events_applied), 0) FROM llm_ledger_projection_checkpoints")
            if applied >= stored:
                break
            time.sleep(0.2)
        assert follower.poll() is None, f"project --follow stopped: {follower.communicate()[1]}"
        assert applied == stored, _held_back(ledger)
    finally:
        stderr = _interrupt(follower)
    assert follower.returncode == 130, stderr
    assert "Traceback" not in stderr


# --- sealing and verifying --------------------------------------------------------------------------------


def test_audit_seal_as_the_sealer(recorded: Recorded, sealed: subprocess.CompletedProcess[str]) -> None:
    for tenant in _all_tenants(recorded):
        assert f"{tenant}: seal 1 over" in sealed.stdout


def test_audit_verify_as_the_auditor(verified: subprocess.CompletedProcess[str]) -> None:
    assert "\nOK: " in verified.stdout, verified.stdout


# --- the dashboard's data source ------------------------------------------------------------------------


def test_the_dashboard_as_a_reader_bound_to_a_tenant(
    ledger: Ledger, recorded: Recorded, projected: subprocess.CompletedProcess[str], verified: object
) -> None:
    url = ledger.login(READER_ROLE)
    tenant = recorded.tenants["writer-only"][0]
    check_schema(url, "the test ledger")
    source = LedgerSource.open(url, bound_tenant=tenant, catch_up=False)
    try:
        view = source.view
        assert view.tenants() == [tenant]
        assert view.totals(tenant, _whole_history()).executions == EXECUTIONS_PER_TENANT
        sessions = view.sessions(tenant)
        assert sessions
        assert view.session_timeline(tenant, sessions[0].session_id)
        calls = view.tool_calls(tenant, _whole_history(), by=("tool_name", "outcome"))
        assert {group.key: group.calls for group in calls} == _tool_outcomes()
        audit = view.last_audit(tenant)
        assert audit is not None and audit.ok
        assert audit.streams == 2 * EXECUTIONS_PER_TENANT, "its own tenant's figures of the run"
        freshness = view.freshness()
        assert freshness is not None and freshness.updated_at is not None
        assert freshness.events_applied is None, "the platform's count is not shown to a bound viewer"
    finally:
        source.view.close()


def test_the_dashboard_as_the_auditor(
    ledger: Ledger, recorded: Recorded, projected: subprocess.CompletedProcess[str], verified: object
) -> None:
    url = ledger.login(AUDITOR_ROLE)
    check_schema(url, "the test ledger")
    source = LedgerSource.open(url, bound_tenant=None, catch_up=False)
    try:
        view = source.view
        assert set(_all_tenants(recorded)) <= set(view.tenants())
        for tenant in _all_tenants(recorded):
            assert view.totals(tenant, _whole_history()).executions == EXECUTIONS_PER_TENANT
            calls = view.tool_calls(tenant, _whole_history(), by=("tool_name", "outcome"))
            assert {group.key: group.calls for group in calls} == _tool_outcomes()
            audit = view.last_audit(tenant)
            assert audit is not None and audit.ok
        freshness = view.freshness()
        assert freshness is not None and freshness.events_applied
    finally:
        source.view.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT events_applied FROM llm_ledger_projection_checkpoints",
        "SELECT events, streams, tenants, ok FROM llm_ledger_audit_runs",
        "SELECT * FROM llm_ledger_audit_runs",
    ],
)
def test_a_reader_login_bound_to_a_tenant_reads_no_platform_wide_total(
    ledger: Ledger, recorded: Recorded, projected: object, verified: object, query: str
) -> None:
    engine = create_store_engine(ledger.login(READER_ROLE), poolclass=NullPool)
    try:
        with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as connection:
            connection.execute(
                text("SELECT set_config('llm_ledger.tenant_id', :tenant, true)"),
                {"tenant": recorded.tenants["writer-only"][0]},
            )
            connection.execute(text(query))
    finally:
        engine.dispose()


def _tenants_of_tool_calls(url: str, tenant: str | None) -> tuple[set[str], set[str]]:
    """The tenants whose rows the login sees in ``audit_tool_calls`` and ``llm_ledger_tool_stats``, with
    the tenant setting ``tenant`` (as the dashboard's bound view sets it)."""
    engine = create_store_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if tenant is not None:
                connection.execute(text("SELECT set_config('llm_ledger.tenant_id', :tenant, true)"), {"tenant": tenant})
            views = set(connection.execute(text("SELECT DISTINCT tenant_id FROM audit_tool_calls")).scalars())
            stats = set(connection.execute(text("SELECT DISTINCT tenant_id FROM llm_ledger_tool_stats")).scalars())
    finally:
        engine.dispose()
    return views, stats


def test_row_level_security_isolates_the_tool_calls_of_each_tenant(
    ledger: Ledger, recorded: Recorded, projected: object
) -> None:
    everyone = set(_all_tenants(recorded))
    reader, auditor = ledger.login(READER_ROLE), ledger.login(AUDITOR_ROLE)
    for tenant in sorted(everyone):
        assert _tenants_of_tool_calls(reader, tenant) == ({tenant}, {tenant})
    assert _tenants_of_tool_calls(reader, None) == (set(), set())
    seen, stats = _tenants_of_tool_calls(auditor, None)
    assert everyone <= seen and everyone <= stats
    with pytest.raises(ProgrammingError, match="permission denied"):
        _tenants_of_tool_calls(ledger.login(WRITER_ROLE), sorted(everyone)[0])


@pytest.mark.parametrize("roles", [(READER_ROLE,), (AUDITOR_ROLE,)], ids=["reader", "auditor"])
def test_the_dashboard_with_catch_up_on_leaves_projecting_to_the_projector_for_a_login_without_its_role(
    ledger: Ledger, recorded: Recorded, projected: object, roles: tuple[str, ...]
) -> None:
    tenant = recorded.tenants["writer+ingest"][0]
    bound = tenant if roles == (READER_ROLE,) else None
    source = LedgerSource.open(ledger.login(*roles), bound_tenant=bound, catch_up=True)
    try:
        assert source.catch_up() is None, "no catch-up: the login may not take llm_ledger_projector"
        assert source.view.totals(tenant, _whole_history()).executions == EXECUTIONS_PER_TENANT
    finally:
        source.view.close()


def test_the_dashboard_catches_up_as_a_login_granted_the_projector_role_too(ledger: Ledger, projected: object) -> None:
    source = LedgerSource.open(ledger.login(AUDITOR_ROLE, PROJECTOR_ROLE), bound_tenant=None, catch_up=True)
    try:
        caught = source.catch_up()
        assert caught is not None and caught.caught_up
    finally:
        source.view.close()
        assert source.projector is not None
        source.projector.close()


def test_project_rebuild_as_the_projector(ledger: Ledger, projected: subprocess.CompletedProcess[str]) -> None:
    done = ledger.run("project", "--rebuild", url=ledger.login(PROJECTOR_ROLE))
    stored = ledger.count("SELECT count(*) FROM llm_ledger_events")
    assert f"rebuilt the read models from {stored:,} events" in done.stdout


def test_audit_seal_follow_as_the_sealer_seals_new_events_until_interrupted(
    ledger: Ledger, sealed: subprocess.CompletedProcess[str]
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    record(ledger, (WRITER_ROLE,), (tenant,), ledger.home / "spool-seal-follow")
    ledger.wait_until_readable_by_cursor()
    follower = subprocess.Popen(
        [LLM_LEDGER, "audit", "seal", "--follow", "--interval", "0.2", "--database-url", ledger.login(SEALER_ROLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ledger.env(PYTHONFAULTHANDLER="1"),
    )
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        sealed_now = 0
        while follower.poll() is None and time.monotonic() < deadline and not sealed_now:
            sealed_now = ledger.count(f"SELECT count(*) FROM llm_ledger_seals WHERE tenant_id = '{tenant}'")
            time.sleep(0.2)
        assert follower.poll() is None, f"audit seal --follow stopped: {follower.communicate()[1]}"
        assert sealed_now == 1, _held_back(ledger)
    finally:
        stderr = _interrupt(follower)
    assert follower.returncode == 130, stderr
    assert "Traceback" not in stderr


# --- a ledger not yet upgraded ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "arguments"),
    [
        ((PROJECTOR_ROLE,), ("project",)),
        ((READER_ROLE,), ("db", "current")),
        ((WRITER_ROLE, INGEST_ROLE), ("db", "current")),
    ],
    ids=["project", "db-current-reader", "db-current-writer"],
)
def test_a_ledger_role_on_a_ledger_older_than_0006_is_told_to_upgrade_it(
    ledger: Ledger,
    _create_postgres_database: Callable[[], str],
    ledger_login: Callable[..., str],
    roles: tuple[str, ...],
    arguments: tuple[str, ...],
) -> None:
    """Before 0006 no ledger role may read the version table: the commands that check it first (as a new
    release's projector does, restarted before its database is upgraded) say so and how to fix it, exit
    2 (the schema is older than the command needs), rather than a traceback."""
    database = _create_postgres_database()
    migrate.upgrade(database, "0005")
    done = ledger.run(*arguments, url=ledger_login(*roles, database=database), check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "llm-ledger db upgrade" in done.stderr and "llm_ledger_alembic_version" in done.stderr, done.stderr


def test_the_dashboard_on_a_ledger_older_than_0006_says_to_upgrade_it(
    _create_postgres_database: Callable[[], str], ledger_login: Callable[..., str]
) -> None:
    database = _create_postgres_database()
    migrate.upgrade(database, "0005")
    with pytest.raises(LedgerNotReadyError, match="llm-ledger db upgrade"):
        check_schema(ledger_login(AUDITOR_ROLE, database=database), "the test ledger")


def test_the_owner_upgrading_to_0013_fills_the_fallbacks_of_a_ledger_that_has_them(
    _create_postgres_database: Callable[[], str], _postgres_server: Engine, ledger_login: Callable[..., str]
) -> None:
    """The deploy's path: the owner (no superuser, none of the roles the read model's policies name) upgrades
    a ledger holding fallbacks; every fallback of a session is in the new read model, and the events'
    row-level security is still forced."""
    database = _create_postgres_database()
    owner_url, owner = owned_by_a_login(database, _postgres_server, ledger_login)
    try:
        kept, forced, fallbacks = _upgraded_by_the_owner(database, owner_url)
    finally:
        hand_back(database, owner)
    assert len(fallbacks) == 3
    assert kept == ["took-backup", "took-backup"]
    assert forced is True


def _upgraded_by_the_owner(database: str, owner_url: str) -> tuple[list[str], bool, list[FallbackTriggered]]:
    migrate.upgrade(owner_url, "0012")
    stored = [
        *run(2, tenant="acme", session="took-backup", chain=[LIMITED, BACKUP], step="answer"),
        *run(1, tenant="acme", session=None, chain=[LIMITED, FAST], step="answer"),
    ]
    store = EventStore(database)
    store.append(stored)
    store.close()

    migrate.upgrade(owner_url)

    engine = create_store_engine(database, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT session_id FROM llm_ledger_fallbacks")).scalars().all()
            forced = connection.execute(
                text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'llm_ledger_events'")
            ).scalar_one()
    finally:
        engine.dispose()
    return list(kept), bool(forced), [e for e in stored if isinstance(e, FallbackTriggered)]
