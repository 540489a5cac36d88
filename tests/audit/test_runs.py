"""Each verify run is recorded for the dashboard; on PostgreSQL a reader sees its own tenant's results
only, and seals and results are append-only and written only by the roles meant to."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, ProgrammingError

from llm_ledger.audit import AuditConfigurationError, seal_ledger, verify_ledger
from llm_ledger.audit import runs as audit_runs_module
from llm_ledger.audit.schema import audit_findings, audit_runs, audit_tenant_results, seals
from llm_ledger.store import create_store_engine
from llm_ledger.store.schema import events
from llm_ledger.store.scoping import READER_ROLE, WRITER_ROLE, scope_transaction
from tests.audit.conftest import TENANTS, Ledger


def test_a_run_is_recorded_with_its_tenants_results(ledger: Ledger) -> None:
    report = verify_ledger(ledger.auditor_url)

    with ledger.engine.connect() as connection:
        run = connection.execute(select(audit_runs)).one()
        results = connection.execute(select(audit_tenant_results).order_by(audit_tenant_results.c.tenant_id)).all()
    assert run.run_id == report.run_id and run.ok is True and run.scope_tenant is None
    assert (run.tenants, run.streams, run.events, run.seals) == (
        len(TENANTS),
        report.streams,
        report.events,
        2 * len(TENANTS),
    )
    assert [(r.tenant_id, r.ok, r.seals, r.findings) for r in results] == [(t, True, 2, 0) for t in TENANTS]
    assert all(r.last_seal_hash and r.last_sealed_at for r in results)


def test_findings_are_recorded_up_to_the_cap_and_counted_in_full(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream_id = ledger.complete_stream()[0].stream_id
    ledger.tamper(lambda c: c.execute(update(events).where(events.c.stream_id == stream_id).values(hash="0" * 64)))
    monkeypatch.setattr(audit_runs_module, "MAX_STORED_FINDINGS", 2)

    report = verify_ledger(ledger.auditor_url)

    assert not report.ok
    with ledger.engine.connect() as connection:
        result = connection.execute(
            select(audit_tenant_results).where(audit_tenant_results.c.tenant_id == TENANTS[0])
        ).one()
        stored = connection.execute(select(audit_findings).where(audit_findings.c.tenant_id == TENANTS[0])).all()
    assert result.ok is False and result.broken_streams == 1
    assert result.findings == report.tenants[0].finding_count > 2
    assert len(stored) == 2 and all(f.severity == "broken" and f.run_id == report.run_id for f in stored)


def test_no_record_leaves_the_tables_empty(ledger: Ledger) -> None:
    verify_ledger(ledger.auditor_url, record=False)
    with ledger.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(audit_runs)).scalar_one() == 0


def test_a_reader_sees_its_own_tenants_results_and_runs_only(postgres_ledger: Ledger) -> None:
    everyone = verify_ledger(postgres_ledger.auditor_url)
    other_only = verify_ledger(postgres_ledger.auditor_url, tenant_id=TENANTS[1])

    with postgres_ledger.engine.begin() as connection:
        scope_transaction(connection, TENANTS[0], READER_ROLE)
        runs = set(connection.execute(select(audit_runs.c.run_id)).scalars())
        tenants = set(connection.execute(select(audit_tenant_results.c.tenant_id)).scalars())
        sealed = set(connection.execute(select(seals.c.tenant_id)).scalars())
    assert runs == {everyone.run_id}  # not the run scoped to the other tenant
    assert other_only.run_id not in runs
    assert tenants == {TENANTS[0]} and sealed == {TENANTS[0]}


@pytest.mark.parametrize("table", [seals, audit_runs])
def test_seals_and_results_are_append_only_even_for_the_owner(postgres_ledger: Ledger, table: object) -> None:
    verify_ledger(postgres_ledger.auditor_url)
    with pytest.raises(DBAPIError, match="is append-only: DELETE rejected"), postgres_ledger.engine.begin() as c:
        c.execute(delete(table))  # type: ignore[arg-type]


@pytest.mark.parametrize("role", [WRITER_ROLE, READER_ROLE])
def test_only_the_sealer_may_insert_seals(postgres_ledger: Ledger, role: str) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"), postgres_ledger.engine.begin() as connection:
        scope_transaction(connection, TENANTS[0], role)
        connection.execute(text(f"INSERT INTO {seals.name} (tenant_id) VALUES (:t)"), {"t": TENANTS[0]})


@pytest.fixture
def plain_login(postgres_ledger: Ledger) -> Iterator[Engine]:
    """A login that is no member of any ledger role."""
    name = f"llm_ledger_plain_{uuid.uuid4().hex[:8]}"
    with postgres_ledger.engine.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
    engine = create_store_engine(postgres_ledger.engine.url.set(username=name))
    yield engine
    engine.dispose()
    with postgres_ledger.engine.begin() as connection:
        connection.execute(text(f'DROP ROLE "{name}"'))


def test_a_login_that_cannot_take_the_sealer_role_is_told_which_grant_it_needs(plain_login: Engine) -> None:
    with pytest.raises(AuditConfigurationError, match="GRANT llm_ledger_sealer TO <login>"):
        seal_ledger(plain_login)


def test_the_audit_tests_seal_and_verify_as_least_privilege_logins(postgres_ledger: Ledger) -> None:
    # What every test of tests/audit does through Ledger.sealer_url and Ledger.auditor_url.
    query = text(
        "SELECT rolsuper, rolbypassrls, pg_has_role(current_user, 'llm_ledger_sealer', 'MEMBER'),"
        " pg_has_role(current_user, 'llm_ledger_auditor', 'MEMBER') FROM pg_roles WHERE rolname = current_user"
    )
    for url, expected in (
        (postgres_ledger.sealer_url, (False, False, True, False)),
        (postgres_ledger.auditor_url, (False, False, False, True)),
    ):
        engine = create_store_engine(url)
        try:
            with engine.connect() as connection:
                assert tuple(connection.execute(query).one()) == expected
        finally:
            engine.dispose()
