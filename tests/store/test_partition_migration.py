"""Migration 0008 converts a populated, unpartitioned ledger in place, and back, run by the database's owner
as the README prescribes it: a login that is not a superuser.

The ledger at 0007 is what production has: executions through the default writer on mock models (as
``llm_ledger_writer`` + ``llm_ledger_ingest`` and as ``llm_ledger_writer`` alone) with tool calls, seals
by the sealer, a verify run by the auditor, read models by the projector. After the upgrade every row is
the same (a full dump of the table in position order), ``llm-ledger audit verify`` is clean, the projector
continues from its checkpoint, and new events continue the positions; the downgrade gives them all back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from llm_ledger.audit import seal_ledger, verify_ledger
from llm_ledger.events import compute_hash
from llm_ledger.projections import Projector
from llm_ledger.store import EventStore, create_store_engine, migrate
from llm_ledger.store.migrate import DowngradeRefusedError
from llm_ledger.store.scoping import AUDITOR_ROLE, INGEST_ROLE, PROJECTOR_ROLE, SEALER_ROLE, WRITER_ROLE
from tests.store.workload import RECORD_SCRIPT, make_events, wait_until_readable_by_cursor

ROOT = Path(__file__).resolve().parents[2]
LLM_LEDGER = str(Path(sys.executable).parent / "llm-ledger")
TIMEOUT = 180.0


@dataclass(frozen=True)
class Ledger:
    superuser: str
    owner: str
    login: Callable[..., str]
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LEDGER_")}
        env.update(AGNO_TELEMETRY="false", LLM_LEDGER_HOME=str(self.home), PYTHONPATH=str(ROOT), **extra)
        # The writers' digest secret, which a writer to PostgreSQL requires (executor.digest_secret).
        env.setdefault("LLM_LEDGER_DIGEST_KEY", os.environ["LLM_LEDGER_DIGEST_KEY"])
        return env

    def record(self, roles: tuple[str, ...], tenants: tuple[str, ...], count: int = 6) -> None:
        """``count`` executions and tool calls per tenant through the default writer, in a process of their own."""
        spool = self.home / f"spool-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [sys.executable, "-c", RECORD_SCRIPT, ",".join(tenants), str(count)],
            check=True,
            timeout=TIMEOUT,
            env=self.env(LLM_LEDGER_DATABASE_URL=self.login(*roles), LLM_LEDGER_SPOOL_DIR=str(spool)),
        )

    def rows(self, query: str) -> list[tuple[object, ...]]:
        engine = create_store_engine(self.superuser, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(query))]
        finally:
            engine.dispose()

    def cli(self, *arguments: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LLM_LEDGER, *arguments, "--database-url", url],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=self.env(),
            check=False,
        )


@pytest.fixture
def ledger(
    _create_postgres_database: Callable[[], str],
    _postgres_server: Engine,
    ledger_login: Callable[..., str],
    tmp_path: Path,
) -> Iterator[Ledger]:
    """A database owned by a login that is not a superuser (as ``tests/logins``), at revision 0007."""
    database = _create_postgres_database()
    owner_url = ledger_login(database=database)
    owner, name = make_url(owner_url).username, make_url(database).database
    with _postgres_server.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" OWNER TO "{owner}"'))
    migrate.upgrade(owner_url, "0007")
    yield Ledger(database, owner_url, lambda *roles: ledger_login(*roles, database=database), tmp_path)
    superuser = create_store_engine(database, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with superuser.connect() as connection:
            connection.execute(text(f'REASSIGN OWNED BY "{owner}" TO CURRENT_USER'))
            connection.execute(text(f'DROP OWNED BY "{owner}"'))
    finally:
        superuser.dispose()


_DUMP = "SELECT e::text FROM llm_ledger_events e ORDER BY global_position"
_POLICIES = (
    "SELECT policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies"
    " WHERE tablename = 'llm_ledger_events' ORDER BY policyname"
)
_GRANTS = (
    "SELECT c.relname, pg_get_userbyid(a.grantee), a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
    " WHERE c.relname IN ('llm_ledger_events', 'audit_executions', 'audit_attempts', 'audit_fallbacks',"
    " 'audit_incomplete', 'audit_tool_calls') AND a.grantee <> c.relowner ORDER BY 1, 2, 3"
)
_VIEWS = (
    "SELECT c.relname, c.reloptions::text, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)"
    " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
    " WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace ORDER BY 1, 3"
)
"""The views, their options and columns. Their text is recreated from ``pg_get_viewdef``, which renders an
``IN`` list with other (equivalent) casts than the revision's SQL: what they return is compared instead."""
_VIEW_ROWS = {
    view: f"SELECT v::text FROM {view} v ORDER BY 1"
    for view in ("audit_executions", "audit_attempts", "audit_fallbacks", "audit_tool_calls")
} | {"audit_incomplete": "SELECT execution_id, kind FROM audit_incomplete ORDER BY 1"}
_ROW_SECURITY = "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'llm_ledger_events'"
_TRIGGERS = (
    "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'llm_ledger_events'::regclass AND NOT tgisinternal"
    " ORDER BY 1"
)


def _settled(ledger: Ledger) -> None:
    engine = create_store_engine(ledger.superuser, poolclass=NullPool)
    try:
        wait_until_readable_by_cursor(engine)  # what the projector and the sealer may read: everything
    finally:
        engine.dispose()


def _state(ledger: Ledger) -> dict[str, list[tuple[object, ...]]]:
    return {
        "policies": ledger.rows(_POLICIES),
        "grants": ledger.rows(_GRANTS),
        "views": ledger.rows(_VIEWS),
        "row security": ledger.rows(_ROW_SECURITY),
        "triggers": ledger.rows(_TRIGGERS),
        "seals": ledger.rows("SELECT s::text FROM llm_ledger_seals s ORDER BY tenant_id, sequence"),
        "checkpoints": ledger.rows("SELECT c::text FROM llm_ledger_projection_checkpoints c ORDER BY name"),
    } | {view: ledger.rows(query) for view, query in _VIEW_ROWS.items()}


def _project(ledger: Ledger) -> int:
    _settled(ledger)
    projector = Projector(ledger.login(PROJECTOR_ROLE))
    try:
        return projector.catch_up().events
    finally:
        projector.close()


def test_a_populated_ledger_is_partitioned_in_place_and_back(ledger: Ledger) -> None:
    tenants = {"writer+ingest": ("t-a", "t-b"), "writer-only": ("t-c",)}
    ledger.record((WRITER_ROLE, INGEST_ROLE), tenants["writer+ingest"])
    ledger.record((WRITER_ROLE,), tenants["writer-only"])
    _settled(ledger)
    assert seal_ledger(ledger.login(SEALER_ROLE))
    assert verify_ledger(ledger.login(AUDITOR_ROLE)).ok
    before, state = ledger.rows(_DUMP), _state(ledger)
    assert len(before) > 50
    assert ledger.rows("SELECT count(*) FROM llm_ledger_audit_runs") == [(1,)]

    # This projector needs 0009's read-model columns, so it first runs once the ledger is partitioned.
    migrate.upgrade(ledger.owner, "0008")  # as the owner, not a superuser
    assert ledger.rows("SELECT relkind::text FROM pg_class WHERE relname = 'llm_ledger_events'") == [("p",)]
    assert ledger.rows(_DUMP) == before
    assert _state(ledger) == state
    # Every stream is in the partition of its month: none in the default.
    assert ledger.rows("SELECT count(*) FROM llm_ledger_events_default") == [(0,)]

    verified = ledger.cli("audit", "verify", url=ledger.login(AUDITOR_ROLE))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    migrate.upgrade(ledger.owner)
    assert _project(ledger) == len(before)  # the positions the partitioned table kept are read from the start
    assert _project(ledger) == 0  # and continued from its checkpoint: nothing counted twice

    last = ledger.rows("SELECT max(global_position) FROM llm_ledger_events")[0][0]
    ledger.record((WRITER_ROLE, INGEST_ROLE), ("t-a", "t-d"), count=3)
    ledger.record((WRITER_ROLE,), ("t-c",), count=3)
    after = ledger.rows(_DUMP)
    assert after[: len(before)] == before
    added = ledger.rows(f"SELECT min(global_position), count(*) FROM llm_ledger_events WHERE global_position > {last}")
    assert int(str(added[0][0])) > int(str(last)) and added[0][1] == len(after) - len(before)
    assert _project(ledger) == len(after) - len(before)
    _settled(ledger)
    assert seal_ledger(ledger.login(SEALER_ROLE))
    assert verify_ledger(ledger.login(AUDITOR_ROLE)).ok
    migrate.downgrade(ledger.owner, "0008")  # what 0008's downgrade is given: 0009's columns are gone
    state = _state(ledger)

    migrate.downgrade(ledger.owner, "0007")
    assert ledger.rows("SELECT relkind::text FROM pg_class WHERE relname = 'llm_ledger_events'") == [("r",)]
    assert ledger.rows(_DUMP) == after
    assert _state(ledger) == state
    assert ledger.rows(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_llm_ledger_events'"
    ) == [("PRIMARY KEY (global_position)",)]
    assert not ledger.rows("SELECT 1 FROM pg_proc WHERE proname LIKE 'llm_ledger_%partition%'")
    verified = ledger.cli("audit", "verify", url=ledger.login(AUDITOR_ROLE))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ledger.record((WRITER_ROLE, INGEST_ROLE), ("t-a",), count=2)

    migrate.upgrade(ledger.owner)  # and forward again, with what was added at 0007
    assert _project(ledger) > 0
    assert ledger.rows(_DUMP)[: len(after)] == after


def test_the_downgrade_refuses_when_an_event_id_is_in_two_streams(
    ledger: Ledger, _postgres_server: Engine, unique_tenant_id: str
) -> None:
    migrate.upgrade(ledger.owner)
    stream, other = make_events(1, tenant=unique_tenant_id), make_events(1, tenant=unique_tenant_id)
    # The same event id in another stream: the partitioned key allows it, the unpartitioned one did not.
    twin = other[0].to_record()
    twin["event_id"] = str(stream[0].event_id)
    twin["hash"] = compute_hash(twin)
    store = EventStore(ledger.superuser)
    try:
        store.append([*stream, twin])
    finally:
        store.close()
    count = ledger.rows("SELECT count(*) FROM llm_ledger_events")
    with pytest.raises(DowngradeRefusedError, match="more than one stream"):
        migrate.downgrade(ledger.owner, "0007")
    assert ledger.rows("SELECT count(*) FROM llm_ledger_events") == count
    assert ledger.rows("SELECT relkind::text FROM pg_class WHERE relname = 'llm_ledger_events'") == [("p",)]


def test_column_grants_comments_and_view_owners_survive_the_conversion(
    empty_postgres_url: str, ledger_login: Callable[..., str]
) -> None:
    """What an operator added to the table and its views that is not a table grant, a policy or a view
    definition: a column grant, the comments, a view owned by another role (with a column grant of its own)."""
    analyst = make_url(ledger_login(database=empty_postgres_url)).username
    migrate.upgrade(empty_postgres_url, "0007")
    engine = create_store_engine(empty_postgres_url, poolclass=NullPool)
    setup = (
        f'GRANT SELECT (tenant_id, stream_id) ON llm_ledger_events TO "{analyst}"',
        "COMMENT ON TABLE llm_ledger_events IS 'the facts'",
        "COMMENT ON COLUMN llm_ledger_events.hash IS 'sha-256 of the canonical form'",
        "CREATE VIEW analyst_streams AS SELECT tenant_id, stream_id FROM llm_ledger_events",
        f'ALTER VIEW analyst_streams OWNER TO "{analyst}"',
        f'GRANT SELECT (stream_id) ON analyst_streams TO "{analyst}"',
        "COMMENT ON VIEW analyst_streams IS 'streams for analysts'",
        "COMMENT ON VIEW audit_executions IS 'one row an execution'",
    )
    state_sql = (
        "SELECT (SELECT attacl::text FROM pg_attribute WHERE attrelid = 'llm_ledger_events'::regclass"
        "  AND attname = 'stream_id'),"
        " obj_description('llm_ledger_events'::regclass, 'pg_class'),"
        " col_description('llm_ledger_events'::regclass,"
        "  (SELECT attnum FROM pg_attribute WHERE attrelid = 'llm_ledger_events'::regclass AND attname = 'hash')),"
        " (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'analyst_streams'::regclass),"
        " (SELECT coalesce(relacl, acldefault('r', relowner))::text FROM pg_class"
        "  WHERE oid = 'analyst_streams'::regclass),"
        " (SELECT attacl::text FROM pg_attribute WHERE attrelid = 'analyst_streams'::regclass"
        "  AND attname = 'stream_id'),"
        " obj_description('analyst_streams'::regclass, 'pg_class'),"
        " obj_description('audit_executions'::regclass, 'pg_class')"
    )
    try:
        with engine.begin() as connection:
            for statement in setup:
                connection.execute(text(statement))
        with engine.connect() as connection:
            before = connection.execute(text(state_sql)).one()
        assert None not in before
        migrate.upgrade(empty_postgres_url)
        with engine.connect() as connection:
            assert connection.execute(text(state_sql)).one() == before
        migrate.downgrade(empty_postgres_url, "0007")
        with engine.connect() as connection:
            assert connection.execute(text(state_sql)).one() == before
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP VIEW IF EXISTS analyst_streams"))
            connection.execute(text(f'REVOKE ALL ON llm_ledger_events FROM "{analyst}"'))
        engine.dispose()
