"""The compose stack's logins, for real (no Docker engine here): the postgres service's init script and the
migrate service's `db upgrade` against a new database of the local PostgreSQL, then every application
service's command, run by the real CLI as the login and with the environment docker-compose.yml gives that
service. None of them is the superuser; each can do its job and no more."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from llm_ledger.projections import Projector
from llm_ledger.store import EventStore, migrate
from llm_ledger.store.scoping import INGEST_ROLE, LEDGER_ROLES
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.ledger import KnownLedger
from tests.deploy.compose import services
from tests.deploy.conftest import (
    LLM_LEDGER,
    LOGIN_SERVICES,
    LOGIN_SQL,
    Stack,
    run_login_script,
    set_up_stack,
    tear_down_stack,
)
from tests.erasure.conftest import read_back, record

# What each login is granted (ledger-logins.sql), and the service that logs in with it.
GRANTED = {
    "migrate": set(),
    "writer": {"llm_ledger_writer", "llm_ledger_ingest"},
    "projector": {"llm_ledger_projector"},
    "sealer": {"llm_ledger_sealer"},
    "dashboard": {"llm_ledger_auditor", "llm_ledger_reader"},
    "auditor": {"llm_ledger_auditor"},
    "demo": {
        "llm_ledger_writer",
        "llm_ledger_ingest",
        "llm_ledger_projector",
        "llm_ledger_sealer",
        "llm_ledger_auditor",
    },
    "retention": {"llm_ledger_retention", "llm_ledger_auditor"},
    "eraser": {"llm_ledger_eraser"},
}
SERVICE_OF_LOGIN = {"migrate": "migrate", "projector": "projector", "sealer": "sealer", "dashboard": "dashboard"}
SERVICE_OF_LOGIN |= {"auditor": "audit", "demo": "demo", "retention": "retention", "eraser": "erase"}
WAIT = 60.0


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if process is not None and process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the service exited ({process.returncode}) before {what}: {stderr[-3000:]}")
        assert time.monotonic() < deadline, f"not within {WAIT:.0f} s: {what}"
        time.sleep(0.5)


def stop(process: subprocess.Popen[str]) -> None:
    """Stopped as `docker compose stop` would (SIGTERM), and killed if it does not end."""
    process.terminate()
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def migrated(stack: Stack) -> Stack:
    done = stack.run("migrate")
    assert done.returncode == 0, done.stderr
    return stack


@pytest.fixture(scope="module")
def recorded(migrated: Stack) -> KnownLedger:
    """Events of two tenants in the stack's database (stored by the test as the superuser: what the
    services then read)."""
    ledger = KnownLedger().build()
    store = EventStore(migrated.superuser_url)
    store.append(ledger.events)
    store.close()
    return ledger


def count(stack: Stack, sql: str) -> int:
    with stack.engine().connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def test_the_init_script_creates_every_ledger_role_the_code_takes() -> None:
    # The migrating login may not create roles: a role a new migration makes must be made here first.
    sql = LOGIN_SQL.read_text()
    created = set(re.findall(r"'(llm_ledger_[a-z]+)'", sql.split("-- One login per service", 1)[0]))
    assert created == {*LEDGER_ROLES, INGEST_ROLE}
    granted = set(re.findall(r"'(llm_ledger_[a-z]+)'", sql.split("-- One login per service", 1)[1]))
    assert granted <= created
    assert {role for roles in GRANTED.values() for role in roles} == granted


def test_the_init_script_makes_each_login_with_only_its_ledger_roles(stack: Stack) -> None:
    with stack.engine().connect() as connection:
        for login_service, roles in GRANTED.items():
            login = stack.login(login_service)
            row = connection.execute(
                text(
                    "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin,"
                    " rolpassword LIKE 'SCRAM-SHA-256$%' AS has_password FROM pg_authid WHERE rolname = :login"
                ),
                {"login": login},
            ).one()
            assert tuple(row) == (False, False, False, False, True, True), (login_service, row)
            granted = connection.execute(
                text(
                    "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                    " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = :login"
                ),
                {"login": login},
            ).scalars()
            assert set(granted) == roles, login_service
        owner = connection.execute(
            text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        ).scalar_one()
        assert owner == stack.login("migrate")
        # Created as the migrations create them, and llm_ledger_ingest with BYPASSRLS (it COPYs).
        assert connection.execute(
            text("SELECT rolbypassrls AND NOT rolcanlogin FROM pg_roles WHERE rolname = 'llm_ledger_ingest'")
        ).scalar_one()


def test_the_init_script_can_run_again_and_refuses_an_empty_password(stack: Stack) -> None:
    again = run_login_script(stack.superuser_url, stack.variables)
    assert again.returncode == 0, again.stderr

    # Compose itself refuses to start without it (tests/deploy/test_compose.py); the script checks again.
    blank = run_login_script(stack.superuser_url, stack.variables, LEDGER_SEALER_PASSWORD="")
    assert blank.returncode != 0
    assert "LEDGER_SEALER_PASSWORD" in blank.stderr


def test_the_login_sql_run_by_hand_fails_on_an_empty_password(stack: Stack) -> None:
    # As an operator runs it on a server of their own (its header): psql must exit non-zero, not print a
    # warning and exit 0.
    variables = [
        argument
        for service in LOGIN_SERVICES
        for argument in ("-v", f"{service}_login={stack.login(service)}", "-v", f"{service}_password=")
    ]
    database = make_url(stack.superuser_url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, *variables, "-f", str(LOGIN_SQL)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, done.stderr
    assert "password is empty" in done.stderr


def _ledger_auditor_role(stack: Stack) -> tuple[bool, bool]:
    """Whether llm_ledger_auditor (a cluster-wide role) can log in, and has a password."""
    with stack.engine().connect() as connection:
        row = connection.execute(
            text("SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'llm_ledger_auditor'")
        ).one()
    return bool(row[0]), bool(row[1])


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"LEDGER_AUDITOR_LOGIN": "llm_ledger_auditor"}, "llm_ledger_auditor is a superuser or a role"),
        ({"LEDGER_DASHBOARD_LOGIN": "shared_login_of_two", "LEDGER_AUDITOR_LOGIN": "shared_login_of_two"}, "more than"),
    ],
    ids=["a-ledger-role", "one-login-for-two-services"],
)
def test_the_init_script_refuses_a_login_name_it_would_break(
    stack: Stack, overrides: dict[str, str], named: str
) -> None:
    assert _ledger_auditor_role(stack) == (False, False)
    try:
        done = run_login_script(stack.superuser_url, stack.variables, **overrides)
        assert done.returncode != 0
        assert named in done.stderr, done.stderr
        assert _ledger_auditor_role(stack) == (False, False), "the ledger role was left as it was"
    finally:
        with stack.engine().connect() as connection:
            # Should the script not have refused: the role back as the migrations make it, for every suite.
            connection.execute(text("ALTER ROLE llm_ledger_auditor NOLOGIN PASSWORD NULL"))
            connection.execute(text("DROP ROLE IF EXISTS shared_login_of_two"))
            connection.commit()


def test_migrate_runs_the_migrations_as_the_database_owner_who_is_no_superuser(migrated: Stack) -> None:
    current = migrated.run("migrate", [*migrated.command("migrate")[:2], "current"])
    assert current.returncode == 0 and "up to date" in current.stdout, current.stdout + current.stderr
    foreign = count(
        migrated,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'llm_ledger%'"
        f" AND tableowner <> '{migrated.login('migrate')}'",
    )
    assert foreign == 0
    assert count(migrated, "SELECT count(*) FROM pg_tables WHERE tablename = 'llm_ledger_events'") == 1


def test_a_ledger_migrated_by_the_superuser_before_goes_to_the_migrating_login(
    _create_postgres_database: Callable[[], str],
    _postgres_server: Engine,
    tmp_path: Path,
) -> None:
    """A volume made by the earlier compose file, whose services all ran as the superuser: the init script,
    run in it by hand, gives the ledger to the migrating login, which can then run the next migrations."""
    old = set_up_stack(_create_postgres_database, tmp_path, before=lambda url: migrate.upgrade(url, "0004"))
    try:
        done = old.run("migrate")
        assert done.returncode == 0, done.stderr
        assert f"at revision {migrate.head()}" in done.stdout
        with old.engine().connect() as connection:
            owners = connection.execute(
                text(
                    "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
                    " WHERE relnamespace = 'public'::regnamespace"
                    " AND relkind IN ('r', 'v', 'S') AND (relname LIKE 'llm_ledger%' OR relname LIKE 'audit_%')"
                )
            ).scalars()
            assert set(owners) == {old.login("migrate")}
    finally:
        tear_down_stack(_postgres_server, old)


@pytest.fixture
def followed(recorded: KnownLedger, migrated: Stack) -> Iterator[Callable[[str, list[str]], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(service: str, command: list[str]) -> subprocess.Popen[str]:
        process = migrated.start(service, command)
        started.append(process)
        return process

    yield start
    for process in started:
        stop(process)


def test_the_projector_keeps_the_read_models_current_as_its_login(
    migrated: Stack, recorded: KnownLedger, followed: Callable[[str, list[str]], subprocess.Popen[str]]
) -> None:
    process = followed("projector", migrated.command("projector"))
    status = Projector(migrated.superuser_url)
    try:
        wait_for(lambda: status.status().events_applied >= len(recorded.events), "every event projected", process)
    finally:
        status.close()
    assert migrated.login("projector") in migrated.connected_logins()
    assert process.poll() is None


def test_the_sealer_seals_every_tenant_as_its_login(
    migrated: Stack, recorded: KnownLedger, followed: Callable[[str, list[str]], subprocess.Popen[str]]
) -> None:
    command = migrated.command("sealer")
    # Its interval, 300 s in the file, shortened: a transaction open elsewhere on the shared server can
    # hold the newest events back from the first round.
    command[command.index("--interval") + 1] = "1"
    process = followed("sealer", command)
    sealed = "SELECT coalesce(sum(event_count), 0) FROM llm_ledger_seals"
    wait_for(lambda: count(migrated, sealed) >= len(recorded.events), "every event sealed", process)
    assert count(migrated, "SELECT count(DISTINCT tenant_id) FROM llm_ledger_seals") == 2
    assert migrated.login("sealer") in migrated.connected_logins()
    # Each seal's head went to the witness volume, outside the database, where the audit service reads it.
    witness = Path(migrated.environment("sealer")["LLM_LEDGER_SEAL_WITNESS"]) / "witness.jsonl"
    assert (
        migrated.environment("audit")["LLM_LEDGER_VERIFY_WITNESS"]
        == migrated.environment("sealer")["LLM_LEDGER_SEAL_WITNESS"]
    )
    tenants = {json.loads(line)["tenant_id"] for line in witness.read_text().splitlines()}
    assert len(tenants) == 2


def test_audit_verifies_the_ledger_as_the_auditor(migrated: Stack, recorded: KnownLedger) -> None:
    done = migrated.run("audit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^OK: \d+ tenants", done.stdout, re.MULTILINE), done.stdout
    assert count(migrated, "SELECT count(*) FROM llm_ledger_audit_runs") >= 1


def test_the_verifier_verifies_the_ledger_again_and_again_as_the_auditor(
    migrated: Stack, recorded: KnownLedger
) -> None:
    # What the sealer service does first (its own test runs it following): the witness verify checks.
    sealed = migrated.run("sealer", [LLM_LEDGER, "audit", "seal"])
    assert sealed.returncode == 0, sealed.stderr
    service = services()["verifier"]
    shell, flag, script, name = service["entrypoint"]
    # As Compose hands it to the shell ($$ is $), its pause of 900 s shortened.
    script = script.replace("$$", "$").replace("sleep 900", "sleep 1")
    environment = migrated.environment("verifier")
    assert make_url(environment["LLM_LEDGER_DATABASE_URL"]).username == migrated.login("auditor")
    environment["PATH"] = f"{Path(LLM_LEDGER).parent}{os.pathsep}{environment['PATH']}"
    runs = "SELECT count(*) FROM llm_ledger_audit_runs"
    before = count(migrated, runs)
    process = subprocess.Popen(
        [shell, flag, script, name, *service["command"]],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: count(migrated, runs) >= before + 2, "two more verify runs recorded", process)
    except BaseException:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
        print(f"the verifier printed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
        raise
    finally:
        stop(process)


def test_the_dashboard_serves_every_tenant_as_its_login(
    migrated: Stack,
    recorded: KnownLedger,
    followed: Callable[[str, list[str]], subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port: int,
) -> None:
    # The projector service's work (its own test runs it as its login), done here as the superuser.
    projector = Projector(migrated.superuser_url)

    def caught_up() -> bool:
        projector.catch_up()
        return projector.status().pending == 0

    try:
        wait_for(caught_up, "the read models current")
    finally:
        projector.close()
    service = services()["dashboard"]
    command = [part.replace("8501", str(unused_tcp_port)) for part in migrated.command("dashboard")]
    process = followed("dashboard", command)
    health = [part.replace("8501", str(unused_tcp_port)) for part in service["healthcheck"]["test"][1:]]
    wait_for(lambda: migrated.run("dashboard", health, timeout=30).returncode == 0, "the health check passes", process)

    # The pages, drawn with the same environment (AppTest runs the script in this process).
    for name, value in migrated.environment("dashboard").items():
        monkeypatch.setenv(name, value)
    for page in ("overview", "audit"):
        app = open_dashboard(page=page, tenant=recorded.other_tenant, window="1d")
        assert not app.exception, page
        assert not app.error, [error.value for error in app.error]
        assert not app.main.info, [info.value for info in app.main.info]


def test_focal_writer_login_records_executions(migrated: Stack) -> None:
    # Focal's services are not in the file: they write as the writer login, with what the demo service
    # gets otherwise.
    script = (
        "from llm_ledger.demo.workload import run_workload\n"
        "summary = run_workload(sessions=2, seed=3, latency_scale=0)\n"
        "assert summary.incomplete == 0, summary\n"
        "print(summary.executions)\n"
    )
    writer = migrated.variables["LEDGER_WRITER_LOGIN"]
    before = count(migrated, "SELECT count(*) FROM llm_ledger_events")
    variables = {
        **migrated.variables,
        "LEDGER_DEMO_LOGIN": writer,
        "LEDGER_DEMO_PASSWORD": migrated.variables["LEDGER_WRITER_PASSWORD"],
    }
    environment = Stack(migrated.superuser_url, variables, migrated.home).environment("demo")
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert count(migrated, "SELECT count(*) FROM llm_ledger_events") > before


def test_the_demo_fills_projects_seals_and_verifies_as_its_login(migrated: Stack) -> None:
    # The mock providers' latencies scaled to nothing (a hidden option of the command, for tests).
    done = migrated.run("demo", [*migrated.command("demo"), "--latency-scale", "0"], timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_retention_plans_and_applies_as_its_login(migrated: Stack, recorded: KnownLedger) -> None:
    planned = migrated.run("retention")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "kept: the month is not over" in planned.stdout, planned.stdout
    # The apply docker-compose.yml gives, into the archive volume (here the stack's directory of volumes).
    archive = migrated.home / "volumes" / "archive"
    apply = [LLM_LEDGER, "retention", "apply", "--older-than", "400d", "--archive", str(archive)]
    applied = migrated.run("retention", apply)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "nothing is due" in applied.stdout, applied.stdout


def test_each_service_logs_in_as_its_own_login_and_none_as_a_superuser(stack: Stack) -> None:
    users = {
        service: make_url(stack.environment(service)["LLM_LEDGER_DATABASE_URL"]).username
        for service in SERVICE_OF_LOGIN.values()
    }
    assert users == {service: stack.login(login) for login, service in SERVICE_OF_LOGIN.items()}
    with stack.engine().connect() as connection:
        superusers = connection.execute(
            text("SELECT rolname FROM pg_roles WHERE rolsuper AND rolname = ANY(:logins)"),
            {"logins": [stack.login(service) for service in LOGIN_SERVICES]},
        ).scalars()
        assert list(superusers) == []


def _as_eraser(stack: Stack) -> str:
    """The erase service's database URL, with its password (which the service gets as PGPASSWORD)."""
    environment = stack.environment("erase")
    url = make_url(environment["LLM_LEDGER_DATABASE_URL"]).set(password=environment["PGPASSWORD"])
    return url.render_as_string(hide_password=False)


def test_the_erase_service_erases_a_session_as_its_login_and_can_do_nothing_else(
    migrated: Stack, tmp_path: Path
) -> None:
    tenant = "erase-tenant"
    record(migrated.superuser_url, tmp_path / "spool", tenant, {"s-1": "full", "s-2": "full"}, executions=1)

    asked = migrated.run("erase", [LLM_LEDGER, "erase", "--tenant", tenant, "--session", "s-1"])
    assert asked.returncode == 2 and "pass --yes" in asked.stderr, "no terminal: refused, not erased unasked"
    erased = migrated.run("erase", [LLM_LEDGER, "erase", "--tenant", tenant, "--session", "s-1", "--yes"])
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert f"erased session 's-1' of tenant '{tenant}': destroyed 1 data key(s)" in erased.stdout
    states = {
        (event.session_id, state)
        for event, _, hidden in read_back(migrated.superuser_url, tenant)
        for state in hidden.values() or ["readable"]
        if event.event_type in ("ExecutionStarted", "ToolCallFailed")
    }
    assert states == {("s-1", "erased"), ("s-2", "readable")}
    assert count(migrated, f"SELECT count(*) FROM llm_ledger_erasures WHERE tenant_id = '{tenant}'") == 1

    # Nothing else: no key's secret, no content (it is no keyholder), no DELETE, no record of its own.
    engine = create_engine(_as_eraser(migrated), poolclass=NullPool)
    refused = [
        "SELECT secret FROM llm_ledger_content_keys",
        f"DELETE FROM llm_ledger_content_keys WHERE tenant_id = '{tenant}'",
        f"DELETE FROM llm_ledger_events WHERE tenant_id = '{tenant}'",
        f"UPDATE llm_ledger_events SET payload = payload WHERE tenant_id = '{tenant}'",
        "INSERT INTO llm_ledger_erasures (tenant_id, erasure_id, key_ids, key_count, events_affected, erased_by)"
        " VALUES ('x', gen_random_uuid(), '[]', 0, 0, 'x')",
        "SET ROLE llm_ledger_keyholder",
        "SET ROLE llm_ledger_writer",
        "SELECT count(*) FROM audit_content",
    ]
    try:
        for statement in refused:
            with engine.connect() as connection, pytest.raises(ProgrammingError, match="permission denied"):
                connection.execute(text(statement))
    finally:
        engine.dispose()
    store = EventStore(_as_eraser(migrated), tenant_id=tenant, role=None)
    try:
        lookup = store.content_keys(tenant, ["00000000-0000-0000-0000-000000000000"])
    finally:
        store.close()
    assert not lookup.readable, "the eraser's login reads no key, so no content"
