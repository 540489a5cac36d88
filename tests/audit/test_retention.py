"""Retention with proofs, on real PostgreSQL under the logins the README prescribes: a sealed old month is
archived to Parquet and its partition dropped (``llm_ledger_retention``); ``audit verify`` (``llm_ledger_auditor``)
then reports it as archived and not checked, and with ``--archive`` proves it from the files, the seals that
straddle the cut included; a flipped byte is named; an unsealed or broken month is refused, with the reason,
and recorded; the auditor reads the record. SQLite has no partitions: the command refuses, naming PostgreSQL.
Migration 0010 goes up and down on both dialects, and down is refused once a run is recorded."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.exc import DBAPIError

from llm_ledger import cli
from llm_ledger.audit import AuditConfigurationError, archive_files, retention_queries, verify_ledger
from llm_ledger.audit.archive_files import MANIFEST, read_rows
from llm_ledger.audit.retention import apply_retention, commit_fate, plan_retention
from llm_ledger.audit.retention_policy import RetentionPolicy
from llm_ledger.audit.schema import RETENTION_TABLES
from llm_ledger.events import Event
from llm_ledger.exit_codes import ExitCode
from llm_ledger.store import create_store_engine, migrate
from llm_ledger.store.migrate import DowngradeRefusedError
from llm_ledger.store.partitions import list_partitions
from tests.audit.conftest import as_login, seal_all
from tests.audit.retention_ledger import (
    OLD_MONTH,
    backdate_recorded,
    create_month_partition,
    move_to_month,
    old_month_start,
    store,
)
from tests.audit_sql.auditdoc import AUDIT_MD, sql_blocks
from tests.projections import workload
from tests.store import databases

TENANTS = ("keep-acme", "keep-globex")
OLD = f"llm_ledger_events_{OLD_MONTH[0]:04d}_{OLD_MONTH[1]:02d}"
POLICY = RetentionPolicy.parse("400d")


@pytest.fixture(scope="session")
def month_events() -> tuple[list[Event], set[str]]:
    recorded = workload.generate(TENANTS, 60, tools=False, seed=11)
    return move_to_month(recorded, 3, old_month_start())


@pytest.fixture(scope="session")
def _retention_template(
    _create_postgres_database: Callable[[], str], month_events: tuple[list[Event], set[str]]
) -> str:
    """Migrated, the old month's partition made, the events stored in two parts each sealed after it: both
    seals of each tenant hold events of the old month and of this one."""
    url = _create_postgres_database()
    migrate.upgrade(url)
    engine = create_store_engine(url)
    try:
        create_month_partition(engine, *OLD_MONTH)
    finally:
        engine.dispose()
    events, _ = month_events
    cut = len(events) * 2 // 3
    store(url, events[:cut])
    seal_all(url)
    store(url, events[cut:])
    seal_all(url)
    engine = create_store_engine(url)
    try:
        backdate_recorded(engine, OLD)
    finally:
        engine.dispose()
    return url


@dataclass
class RetentionLedger:
    url: str
    engine: Engine
    retention_url: str
    auditor_url: str
    retention_login: str
    archive: Path
    moved: set[str]
    total: int

    def old_count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {OLD}")).scalar_one())

    def partitions(self) -> list[str]:
        with self.engine.connect() as connection:
            return [p.name for p in list_partitions(connection)]


@pytest.fixture
def ledger(
    _retention_template: str,
    _postgres_server: Engine,
    ledger_login: Callable[..., str],
    month_events: tuple[list[Event], set[str]],
    tmp_path: Path,
) -> Iterator[RetentionLedger]:
    name = f"llm_ledger_retention_{uuid.uuid4().hex[:12]}"
    with _postgres_server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_retention_template.rsplit("/", 1)[1]}"'))
    url = _retention_template.rsplit("/", 1)[0] + f"/{name}"
    retention = make_url(ledger_login("llm_ledger_retention", "llm_ledger_auditor")).username
    auditor = make_url(ledger_login("llm_ledger_auditor")).username
    assert retention and auditor
    engine = create_store_engine(url)
    try:
        yield RetentionLedger(
            url,
            engine,
            as_login(url, retention),
            as_login(url, auditor),
            retention,
            tmp_path / "archive",
            month_events[1],
            len(month_events[0]),
        )
    finally:
        engine.dispose()
        databases.done_with(_postgres_server.url, name)  # dropped with others: each drop waits for a checkpoint


def _archived(ledger: RetentionLedger) -> Path:
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [(o.plan.partition, o.archived, o.reason) for o in outcomes] == [(OLD, True, None)]
    directory = outcomes[0].directory
    assert directory is not None
    return directory


def _audit_retention(ledger: RetentionLedger, columns: str) -> list[Any]:
    """The view as the auditor's login reads it (a login granted only ``llm_ledger_auditor``)."""
    engine = create_store_engine(ledger.auditor_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(f"SELECT {columns} FROM audit_retention ORDER BY tenant_id")))
    finally:
        engine.dispose()


def test_plan_names_the_old_month_as_due_and_the_current_one_as_kept(ledger: RetentionLedger) -> None:
    plan = plan_retention(ledger.retention_url, POLICY)
    by_name = {month.partition: month for month in plan.months}
    assert by_name[OLD].may_go, by_name[OLD].describe()
    assert set(by_name[OLD].events) == set(TENANTS)
    assert all(by_name[OLD].seals[tenant] == [1, 2] for tenant in TENANTS)  # both seals straddle the cut
    recent = [month for name, month in by_name.items() if name != OLD]
    assert recent and all(not month.is_due for month in recent)
    assert "the month is not over" in recent[0].describe()
    assert ledger.old_count() > 0  # a plan changes nothing


def test_apply_archives_then_drops_the_sealed_month(ledger: RetentionLedger) -> None:
    held = ledger.old_count()
    with ledger.engine.connect() as connection:
        seals_before = connection.execute(text("SELECT count(*) FROM llm_ledger_seals")).scalar_one()
    directory = _archived(ledger)
    assert OLD not in ledger.partitions()
    manifest = json.loads((directory / MANIFEST).read_text())
    assert {t["tenant_id"] for t in manifest["tenants"]} == set(TENANTS)
    assert sum(t["events"] for t in manifest["tenants"]) == held
    rows = [row for t in manifest["tenants"] for row in read_rows(directory / t["file"])]
    assert {row["stream_id"] for row in rows} == ledger.moved
    assert all(seal["seal_hash"] for t in manifest["tenants"] for seal in t["seals"])
    with ledger.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM llm_ledger_seals")).scalar_one() == seals_before
        live = connection.execute(text("SELECT count(*) FROM llm_ledger_events")).scalar_one()
    assert live + held == ledger.total


def test_plain_verify_after_the_drop_reports_the_month_archived_not_missing(ledger: RetentionLedger) -> None:
    _archived(ledger)
    report = verify_ledger(ledger.auditor_url, record=False)
    assert report.ok, report.to_text()
    notes = [f for f in report.findings if f.kind == "archived_not_checked"]
    per_tenant = [f for f in notes if f.seal_sequence is None]
    assert {f.tenant_id for f in per_tenant} == set(TENANTS)
    assert all(
        "events archived in run" in f.detail and "not checked (use --archive DIR)" in f.detail for f in per_tenant
    )
    assert {f.seal_sequence for f in notes if f.seal_sequence is not None} == {1, 2}
    assert not [f for f in report.findings if f.severity == "broken"]


def test_verify_with_the_archive_proves_the_month_and_the_straddling_seals(ledger: RetentionLedger) -> None:
    before = verify_ledger(ledger.auditor_url, record=False)
    _archived(ledger)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    assert report.ok, report.to_text()
    assert not [f for f in report.findings if f.kind.startswith("archive")], report.to_text()
    assert report.events == before.events == ledger.total
    assert report.streams == before.streams


def test_a_flipped_byte_in_an_archive_file_is_named(ledger: RetentionLedger) -> None:
    directory = _archived(ledger)
    victim = sorted(directory.glob("*.parquet"))[0]
    body = bytearray(victim.read_bytes())
    body[len(body) // 2] ^= 0x01
    victim.write_bytes(bytes(body))
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    assert not report.ok
    altered = [f for f in report.findings if f.kind == "archive_file_altered"]
    assert len(altered) == 1 and str(victim) in altered[0].detail


def test_an_event_rewritten_in_a_rewritten_archive_file_is_named(ledger: RetentionLedger) -> None:
    """An archive file written anew with one payload changed: its SHA-256 names the file, the event's hash
    names the event, and its seal's Merkle root no longer matches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = _archived(ledger)
    victim = sorted(directory.glob("*.parquet"))[0]
    table = pq.read_table(victim)
    payloads = table.column("payload").to_pylist()
    payloads[0] = json.dumps({**json.loads(payloads[0]), "x": 1})
    table = table.set_column(table.schema.get_field_index("payload"), "payload", pa.array(payloads))
    pq.write_table(table, victim)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    kinds = {f.kind for f in report.findings if f.severity == "broken"}
    assert {"archive_file_altered", "hash_mismatch"} <= kinds, report.to_text()
    event_id = table.column("event_id")[0].as_py()
    assert any(f.kind == "hash_mismatch" and f.event_id == event_id for f in report.findings)


def test_an_unsealed_month_is_refused_and_the_refusal_recorded(
    ledger: RetentionLedger, month_events: tuple[list[Event], set[str]]
) -> None:
    late = workload.generate(TENANTS[:1], 3, tools=False, seed=99)
    moved, _ = move_to_month(late, 1, old_month_start())
    store(ledger.url, moved)
    backdate_recorded(ledger.engine, OLD)
    held = ledger.old_count()
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [o.archived for o in outcomes] == [False]
    reason = outcomes[0].reason or ""
    assert f"tenant {TENANTS[0]!r}" in reason and "not sealed" in reason and "audit seal" in reason
    assert ledger.old_count() == held
    assert not ledger.archive.exists() or not any(ledger.archive.iterdir())
    rows = _audit_retention(ledger, "outcome, reason, run_by")
    assert [(r.outcome, r.run_by) for r in rows] == [("refused", ledger.retention_login)]
    assert "not sealed" in rows[0].reason


def test_a_month_whose_verify_is_broken_is_refused_naming_the_finding(ledger: RetentionLedger) -> None:
    stream = sorted(ledger.moved)[0]
    with ledger.engine.begin() as connection:
        # As an attacker with the owner's power would (the database is the test's own: left so).
        connection.execute(text("ALTER TABLE llm_ledger_events DISABLE TRIGGER ALL"))
        connection.execute(
            text(
                f"UPDATE {OLD} SET payload = payload || '{{\"x\": 1}}'::jsonb"
                " WHERE stream_id = :stream AND stream_position = 0"
            ),
            {"stream": stream},
        )
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [o.archived for o in outcomes] == [False]
    assert "found it broken" in (outcomes[0].reason or "") and stream in (outcomes[0].reason or "")
    assert OLD in ledger.partitions()


def test_a_tenant_policy_that_keeps_its_events_keeps_the_month(ledger: RetentionLedger) -> None:
    policy = RetentionPolicy.parse("400d", [f"{TENANTS[1]}=keep"])
    plan, outcomes = apply_retention(ledger.retention_url, policy, ledger.archive)
    assert outcomes == []
    old = next(month for month in plan.months if month.partition == OLD)
    assert "keeps its events" in old.describe() and TENANTS[1] in old.describe()
    assert OLD in ledger.partitions()


def test_the_auditor_sees_the_retention_record(ledger: RetentionLedger) -> None:
    directory = _archived(ledger)
    manifest = json.loads((directory / MANIFEST).read_text())
    rows = _audit_retention(
        ledger,
        "run_id, partition_name, run_by, outcome, tenant_id, file_name, sha256, event_count, seal_sequences,"
        " manifest_sha256, archive_dir",
    )
    assert [r.tenant_id for r in rows] == sorted(TENANTS)
    assert {(r.partition_name, r.run_by, r.outcome, r.archive_dir) for r in rows} == {
        (OLD, ledger.retention_login, "archived", str(directory))
    }
    files = {t["tenant_id"]: t for t in manifest["tenants"]}
    assert all(r.sha256 == files[r.tenant_id]["sha256"] and r.file_name == files[r.tenant_id]["file"] for r in rows)
    assert all(json.loads(r.seal_sequences) == [1, 2] for r in rows)


def test_the_audit_doc_s_retention_query_answers_as_the_record_says(ledger: RetentionLedger) -> None:
    (block,) = (b for b in sql_blocks(AUDIT_MD.read_text()) if b.heading.startswith("What left the database"))
    directory = _archived(ledger)
    engine = create_store_engine(ledger.auditor_url)
    try:
        with engine.connect() as connection:
            rows = list(connection.execute(text(block.sql)))
    finally:
        engine.dispose()
    manifest = json.loads((directory / MANIFEST).read_text())
    assert sorted((r.tenant_id, r.sha256, r.event_count) for r in rows) == sorted(
        (t["tenant_id"], t["sha256"], t["events"]) for t in manifest["tenants"]
    )
    assert {(r.partition_name, r.outcome, r.run_by) for r in rows} == {(OLD, "archived", ledger.retention_login)}


def test_only_the_retention_role_drops_and_only_through_the_function(ledger: RetentionLedger) -> None:
    auditor = create_store_engine(ledger.auditor_url)
    retention = create_store_engine(ledger.retention_url)
    try:
        for engine, statement in (
            (auditor, f"SELECT llm_ledger_drop_archived_partition('x', '{OLD}')"),
            (retention, f"DROP TABLE {OLD}"),
            (retention, f"ALTER TABLE llm_ledger_events DETACH PARTITION {OLD}"),
        ):
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), engine.begin() as connection:
                connection.execute(text(statement))
        # With the role but no archived run of its own making, the function refuses.
        with pytest.raises(DBAPIError, match="no archived retention run"), retention.begin() as connection:
            connection.execute(text("SELECT set_config('role', 'llm_ledger_retention', true)"))
            connection.execute(text(f"SELECT llm_ledger_drop_archived_partition('nothing', '{OLD}')"))
    finally:
        auditor.dispose()
        retention.dispose()
    assert OLD in ledger.partitions()


def test_the_retention_record_is_append_only(ledger: RetentionLedger) -> None:
    _archived(ledger)
    for statement in ("DELETE FROM llm_ledger_retention_runs", "UPDATE llm_ledger_retention_files SET bytes = 0"):
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as connection:
            connection.execute(text(statement))


def test_the_commands_under_their_logins(ledger: RetentionLedger, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--older-than", "400d", "--database-url"]
    assert cli.main(["retention", "plan", *common, ledger.retention_url]) == ExitCode.OK
    assert "may be archived and dropped" in capsys.readouterr().out
    archive = str(ledger.archive)
    assert cli.main(["retention", "apply", *common, ledger.retention_url, "--archive", archive]) == ExitCode.OK
    assert f"{OLD}: archived" in capsys.readouterr().out
    verify = ["audit", "verify", "--no-record", "--database-url", ledger.auditor_url]
    assert cli.main(verify) == ExitCode.OK
    assert "not checked (use --archive DIR)" in capsys.readouterr().out
    assert cli.main([*verify, "--archive", archive]) == ExitCode.OK
    assert "archived_not_checked" not in capsys.readouterr().out


def test_bad_policies_are_named(ledger: RetentionLedger, capsys: pytest.CaptureFixture[str]) -> None:
    for argument, named in (("--older-than=13mo", "13mo"), ("--tenant-policy=acme", "TENANT=AGE")):
        options = ["--older-than", "400d", argument] if argument.startswith("--tenant") else [argument]
        assert cli.main(["retention", "plan", *options, "--database-url", ledger.retention_url]) == ExitCode.USAGE
        assert named in capsys.readouterr().err


def test_without_pyarrow_the_archive_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an install without the extra gives: ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(AuditConfigurationError, match=re.escape("pip install 'llm-ledger[archive]'")):
        archive_files.pyarrow()


def test_sqlite_refuses_naming_postgresql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url)
    status = cli.main(["retention", "plan", "--older-than", "400d", "--database-url", url])
    assert status == ExitCode.USAGE
    assert "PostgreSQL" in capsys.readouterr().err


def test_sqlite_verify_is_unchanged_by_the_retention_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url)
    store(url, workload.generate(TENANTS[:1], 5, tools=False, seed=3))
    seal_all(url)
    report = verify_ledger(url, record=False, archive=tmp_path)
    assert report.ok and not [f for f in report.findings if f.kind.startswith("archive")]


def retention_objects(url: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            names = {*inspector.get_table_names(), *inspector.get_view_names()}
    finally:
        engine.dispose()
    return names & {*(table.name for table in RETENTION_TABLES), "audit_retention"}


def test_0010_creates_the_retention_record_and_its_downgrade_drops_it(unmigrated_url: str) -> None:
    migrate.upgrade(unmigrated_url)
    assert retention_objects(unmigrated_url) == {
        "llm_ledger_retention_runs",
        "llm_ledger_retention_files",
        "audit_retention",
    }
    migrate.downgrade(unmigrated_url, "0009")
    assert retention_objects(unmigrated_url) == set()
    migrate.upgrade(unmigrated_url)  # the downgrade left no function, trigger or policy in the way
    assert migrate.current(unmigrated_url) == migrate.head()


def test_downgrading_below_0010_is_refused_once_a_run_is_recorded(ledger: RetentionLedger) -> None:
    _archived(ledger)
    with pytest.raises(DowngradeRefusedError, match="records retention runs"):
        migrate.downgrade(ledger.url, "0009")
    assert migrate.current(ledger.url) == migrate.head()
    with ledger.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM llm_ledger_retention_runs")).scalar_one() == 1


def _forge_run(connection: Any, partition: str, low: str, high: str, counts: dict[str, int]) -> str:
    """What the retention login alone may write: a run row of outcome ``archived`` and its files, no archive."""
    from datetime import UTC, datetime

    from llm_ledger.audit.schema import retention_files, retention_runs

    run_id = f"forged-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    connection.execute(text("SELECT set_config('role', 'llm_ledger_retention', true)"))
    connection.execute(
        retention_runs.insert().values(
            run_id=run_id,
            partition_name=partition,
            month="forged",
            stream_low=low,
            stream_high=high,
            started_at=now,
            finished_at=now,
            run_by="",
            outcome="archived",
            event_count=sum(counts.values()),
            tenant_count=len(counts),
            policy="{}",
        )
    )
    for tenant, events in counts.items():
        connection.execute(
            retention_files.insert().values(
                run_id=run_id,
                partition_name=partition,
                tenant_id=tenant,
                file_name="none",
                sha256="0" * 64,
                bytes=0,
                event_count=events,
                stream_count=0,
                seal_sequences="[]",
            )
        )
    return run_id


def _month_of(ledger: RetentionLedger, name: str) -> tuple[str, str, dict[str, int]]:
    (partition,) = (p for p in list_partitions(ledger.engine.connect()) if p.name == name)
    assert partition.low and partition.high
    with ledger.engine.connect() as connection:
        rows = connection.execute(text(f"SELECT tenant_id, count(*) FROM {name} GROUP BY tenant_id"))
        counts = {str(tenant): int(events) for tenant, events in rows}
    return partition.low, partition.high, counts


def test_a_run_forged_by_the_retention_login_drops_nothing(ledger: RetentionLedger) -> None:
    """Rows the login may insert do not make a drop: the run must be this transaction's, name the partition's
    own month, the month must be past, every event within its tenant's last seal, under READ COMMITTED."""
    low, high, counts = _month_of(ledger, OLD)
    retention = create_store_engine(ledger.retention_url)
    drop = "SELECT llm_ledger_drop_archived_partition(:run, :target)"
    try:
        with retention.begin() as connection:  # recorded in an earlier transaction
            earlier = _forge_run(connection, OLD, low, high, counts)
        with pytest.raises(DBAPIError, match="in this transaction"), retention.begin() as connection:
            connection.execute(text("SELECT set_config('role', 'llm_ledger_retention', true)"))
            connection.execute(text(drop), {"run": earlier, "target": OLD})
        with pytest.raises(DBAPIError, match="not the partition's month"), retention.begin() as connection:
            run = _forge_run(connection, OLD, low, "ffffffff-ffff-0000-0000-000000000000", counts)
            connection.execute(text(drop), {"run": run, "target": OLD})
        with pytest.raises(DBAPIError, match="READ COMMITTED"), retention.connect() as connection:
            connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                run = _forge_run(connection, OLD, low, high, counts)
                connection.execute(text(drop), {"run": run, "target": OLD})
        current = next(p.name for p in list_partitions(ledger.engine.connect()) if p.name > OLD and p.low)
        c_low, c_high, c_counts = _month_of(ledger, current)
        with pytest.raises(DBAPIError, match="current month or a future one"), retention.begin() as connection:
            run = _forge_run(connection, current, c_low, c_high, c_counts)
            connection.execute(text(drop), {"run": run, "target": current})
        late, _ = move_to_month(workload.generate(TENANTS[:1], 3, tools=False, seed=98), 1, old_month_start())
        store(ledger.url, late)
        low, high, counts = _month_of(ledger, OLD)
        with pytest.raises(DBAPIError, match="after its last seal"), retention.begin() as connection:
            run = _forge_run(connection, OLD, low, high, counts)
            connection.execute(text(drop), {"run": run, "target": OLD})
    finally:
        retention.dispose()
    assert OLD in ledger.partitions()


def test_verify_with_an_archive_dir_that_lacks_the_month_is_broken(ledger: RetentionLedger, tmp_path: Path) -> None:
    _archived(ledger)
    empty = tmp_path / "empty"
    empty.mkdir()
    report = verify_ledger(ledger.auditor_url, record=False, archive=empty)
    assert not report.ok
    missing = [f for f in report.findings if f.kind == "archive_missing"]
    assert {f.tenant_id for f in missing} == set(TENANTS) and all(f.severity == "broken" for f in missing)


def test_a_recorded_run_the_database_contradicts_is_broken(ledger: RetentionLedger) -> None:
    """A run row saying a month left while its partition and events are still there (what a forged row
    would say) is not believed by verify."""
    low, _high, counts = _month_of(ledger, OLD)
    retention = create_store_engine(ledger.retention_url)
    try:
        with retention.begin() as connection:
            run = _forge_run(connection, OLD, low, "ffffffff-ffff-0000-0000-000000000000", counts)
    finally:
        retention.dispose()
    report = verify_ledger(ledger.auditor_url, record=False)
    (finding,) = [f for f in report.findings if f.kind == "archive_run_inconsistent"]
    assert finding.severity == "broken" and run in finding.detail
    assert "still exists" in finding.detail and "live events remain" in finding.detail
    assert "are not" in finding.detail


def test_only_a_known_rollback_lets_the_archive_copy_go() -> None:
    assert commit_fate(run_recorded=False, partition_exists=True) == "rolled_back"
    assert commit_fate(run_recorded=True, partition_exists=False) == "committed"
    for recorded, exists in ((True, True), (False, False), (None, True), (False, None), (None, None)):
        assert commit_fate(recorded, exists) == "unknown"


def test_a_failure_while_writing_removes_the_copy_and_records_a_refusal(
    ledger: RetentionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("a value pyarrow cannot write")

    monkeypatch.setattr(archive_files, "write_tenant_file", broken)
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [(o.archived, o.directory) for o in outcomes] == [(False, None)]
    assert "cannot write" in (outcomes[0].reason or "")
    assert list(ledger.archive.iterdir()) == []
    assert OLD in ledger.partitions()
    assert [r.outcome for r in _audit_retention(ledger, "outcome")] == ["refused"]


def test_a_drop_rolled_back_removes_the_copy_and_records_a_refusal(
    ledger: RetentionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = retention_queries.drop_archived_partition

    def refused(connection: Any, run_id: str, partition: str) -> int:
        real(connection, run_id, "llm_ledger_events_default")  # the function's own refusal, a DBAPIError
        raise AssertionError("unreachable")

    monkeypatch.setattr(retention_queries, "drop_archived_partition", refused)
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [(o.archived, o.directory) for o in outcomes] == [(False, None)]
    assert "not a monthly partition" in (outcomes[0].reason or "")
    assert list(ledger.archive.iterdir()) == []
    assert OLD in ledger.partitions()


def test_events_stored_late_keep_their_month_until_they_are_old_enough(ledger: RetentionLedger) -> None:
    late, _ = move_to_month(workload.generate(TENANTS[:1], 3, tools=False, seed=97), 1, old_month_start())
    store(ledger.url, late)
    seal_all(ledger.url)
    plan, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert outcomes == []
    old = next(month for month in plan.months if month.partition == OLD)
    assert not old.is_due and "its latest of the month was stored" in old.describe()
    assert OLD in ledger.partitions()


def test_an_age_of_zero_is_refused() -> None:
    for text_ in ("0d", "0w"):
        with pytest.raises(AuditConfigurationError, match="zero"):
            RetentionPolicy.parse(text_)


def _written_wrong(monkeypatch: pytest.MonkeyPatch, column: str) -> None:
    """A writer bug: the month's first row reaches the archive with ``column`` changed (its ``hash`` left as
    stored, so that the files still read back as written)."""
    real = retention_queries.month_rows

    def wrong(connection: Any, tenant_id: str, low: str, high: str) -> Iterator[list[dict[str, Any]]]:
        for index, batch in enumerate(real(connection, tenant_id, low, high)):
            if index == 0:
                first = batch[0]
                if column == "payload":
                    first["payload"] = json.dumps({**json.loads(first["payload"]), "x": 1})
                else:  # its cursor: the event moves among its seal's leaves, its chain unchanged
                    first[column] = int(first[column]) + 1_000_000
            yield batch

    monkeypatch.setattr(retention_queries, "month_rows", wrong)


@pytest.mark.parametrize(("column", "named"), [("payload", "hash_mismatch"), ("global_position", "seal_root")])
def test_an_archive_that_does_not_verify_from_its_files_drops_nothing(
    ledger: RetentionLedger, monkeypatch: pytest.MonkeyPatch, column: str, named: str
) -> None:
    _written_wrong(monkeypatch, column)
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [(o.plan.partition, o.archived, o.directory) for o in outcomes] == [(OLD, False, None)]
    reason = outcomes[0].reason or ""
    assert "does not verify from its files" in reason and named in reason, reason
    assert OLD in ledger.partitions() and list(ledger.archive.iterdir()) == []
    assert [r.outcome for r in _audit_retention(ledger, "outcome")] == ["refused"]


def _two_months_under_one_seal(
    create_database: Callable[[], str], ledger_login: Callable[..., str]
) -> tuple[str, list[str], datetime]:
    """A ledger of two old months (March, April) under the same seals, as the retention login: its URL, the
    two partitions, and a time at which March is due and April not yet."""
    march, april = OLD_MONTH, (OLD_MONTH[0], OLD_MONTH[1] + 1)
    recorded = workload.generate(TENANTS, 30, tools=False, seed=13)
    events, _ = move_to_month(recorded, 3, old_month_start())
    events, _ = move_to_month(events, 5, datetime(*april, 1, tzinfo=UTC))
    url = create_database()
    migrate.upgrade(url)
    engine = create_store_engine(url)
    try:
        names = [create_month_partition(engine, *month) for month in (march, april)]
        store(url, events)
        seal_all(url)
        for name in names:
            backdate_recorded(engine, name)
    finally:
        engine.dispose()
    login = as_login(url, str(make_url(ledger_login("llm_ledger_retention", "llm_ledger_auditor")).username))
    return login, names, datetime(*april, 1, tzinfo=UTC) + timedelta(days=400)


def test_a_month_whose_seals_cover_a_month_archived_before_is_proved_with_that_month_s_files(
    _create_postgres_database: Callable[[], str], ledger_login: Callable[..., str], tmp_path: Path
) -> None:
    """Two old months under the same seals: the second is dropped only once the first's files are at hand
    in its archive directory, since its seals' roots cannot be proved without them."""
    login, names, april_due = _two_months_under_one_seal(_create_postgres_database, ledger_login)
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    _, outcomes = apply_retention(login, POLICY, first, now=april_due)
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(names[0], True)]
    _, outcomes = apply_retention(login, POLICY, elsewhere)
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(names[1], False)]
    assert "archived_not_checked" in (outcomes[0].reason or "") and names[0] in (outcomes[0].reason or "")
    _, outcomes = apply_retention(login, POLICY, first)
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(names[1], True)]
    report = verify_ledger(login, record=False, archive=first)
    assert report.ok and not [f for f in report.findings if f.kind.startswith("archive")], report.to_text()


def test_a_month_is_refused_while_an_earlier_month_s_manifest_in_its_archive_is_altered(
    _create_postgres_database: Callable[[], str], ledger_login: Callable[..., str], tmp_path: Path
) -> None:
    """The earlier run's manifest altered (the same content, other whitespace: its recorded SHA-256 no longer
    matches) is a finding of no tenant; a verify with this archive fails, so the next month stays."""
    login, names, april_due = _two_months_under_one_seal(_create_postgres_database, ledger_login)
    archive = tmp_path / "archive"
    _, outcomes = apply_retention(login, POLICY, archive, now=april_due)
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(names[0], True)]
    (manifest,) = archive.rglob("manifest.json")
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=4))

    _, outcomes = apply_retention(login, POLICY, archive)

    assert [(o.plan.partition, o.archived) for o in outcomes] == [(names[1], False)]
    assert "archive_manifest_altered" in (outcomes[0].reason or ""), outcomes[0].reason


def test_verify_with_the_archive_in_worker_processes_gives_the_report_of_one_process(ledger: RetentionLedger) -> None:
    directory = _archived(ledger)
    victim = sorted(directory.glob("*.parquet"))[0]
    clean = [verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive, jobs=jobs) for jobs in (1, 2)]
    body = bytearray(victim.read_bytes())
    body[len(body) // 2] ^= 0x01
    victim.write_bytes(bytes(body))
    flipped = [verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive, jobs=jobs) for jobs in (1, 2)]

    def comparable(report: Any) -> Any:
        varies = ("run_id", "started_at", "finished_at", "duration_seconds")
        return {key: value for key, value in report.to_json().items() if key not in varies}

    assert clean[0].ok and comparable(clean[1]) == comparable(clean[0])
    assert clean[1].events == ledger.total
    assert not flipped[1].ok and comparable(flipped[1]) == comparable(flipped[0])
    assert [f.kind for f in flipped[1].findings if f.kind.startswith("archive")] == ["archive_file_altered"]


def test_each_worker_task_carries_its_own_tenant_s_archived_months_alone(
    ledger: RetentionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_ledger.audit import parallel
    from llm_ledger.audit import verify as verify_module

    _archived(ledger)
    sent: list[tuple[Any, dict[str, Any]]] = []
    real = parallel.map_tenants

    def recorded(work: Any, url: Any, tenants: Any, jobs: int, own: Any = None) -> Any:
        sent.append((work, dict(own or {})))
        return real(work, url, tenants, jobs, own)

    monkeypatch.setattr(verify_module, "map_tenants", recorded)
    assert verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive, jobs=2).ok
    [(work, own)] = sent
    # Pickled once per task: every tenant's months in it would be sent with each tenant's task.
    assert not any(isinstance(value, dict) for value in work.keywords.values()), work.keywords
    assert set(own) == set(TENANTS) and all(own[tenant].tenant_id == tenant for tenant in own)


def test_a_run_the_database_contradicts_refuses_only_its_own_month_and_its_tenants_months(
    ledger: RetentionLedger,
) -> None:
    """A forged run naming another month and a tenant with no event here leaves this month free to go; one
    naming a tenant of this month refuses it, naming the run and where the doc says how to resolve it."""
    low, _high, _counts = _month_of(ledger, OLD)
    retention = create_store_engine(ledger.retention_url)
    try:
        with retention.begin() as connection:
            unrelated = _forge_run(connection, "llm_ledger_events_2020_01", low, "ffffffff", {"nobody": 1})
        plan = plan_retention(ledger.retention_url, POLICY)
        (old,) = [month for month in plan.months if month.partition == OLD]
        assert old.may_go, old.describe()
        with retention.begin() as connection:
            related = _forge_run(connection, "llm_ledger_events_2020_02", low, "ffffffff", {TENANTS[0]: 1})
    finally:
        retention.dispose()
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(OLD, False)]
    reason = outcomes[0].reason or ""
    assert related in reason and unrelated not in reason and "A retention run the database contradicts" in reason
    report = verify_ledger(ledger.auditor_url, record=False)
    details = [f.detail for f in report.findings if f.kind == "archive_run_inconsistent"]
    assert len(details) == 2 and all("until it is resolved" in detail for detail in details)
    assert any(related in detail and repr(TENANTS[0]) in detail for detail in details)


def test_a_month_put_back_is_resolved_as_the_doc_says_by_dropping_the_copy_again(ledger: RetentionLedger) -> None:
    _archived(ledger)
    create_month_partition(ledger.engine, *OLD_MONTH)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    (finding,) = [f for f in report.findings if f.kind == "archive_run_inconsistent"]
    assert "still exists" in finding.detail
    resolution = ["ALTER TABLE llm_ledger_events DETACH PARTITION <partition>", "DROP TABLE <partition>"]
    assert "; ".join(resolution) in " ".join(AUDIT_MD.read_text().split())  # as the doc gives it
    with ledger.engine.begin() as connection:  # as the owner (here the superuser, who owns the test database)
        for statement in resolution:
            connection.execute(text(statement.replace("<partition>", OLD)))
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    assert report.ok and not [f for f in report.findings if f.kind.startswith("archive")], report.to_text()


# --- a malformed manifest, a proof that fails, payloads read as the live ones are --------------------------


def _rewrite_manifest(manifest: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    manifest.write_text(json.dumps(change(json.loads(manifest.read_text()))))


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("tenants of strings", lambda m: {**m, "tenants": [t["tenant_id"] for t in m["tenants"]]}, "'tenants'[0]"),
    ("tenants of numbers", lambda m: {**m, "tenants": [1, 2]}, "'tenants'[0]: expected an object, not a number"),
    ("tenants of nulls", lambda m: {**m, "tenants": [None]}, "'tenants'[0]: expected an object, not null"),
    ("tenants null", lambda m: {**m, "tenants": None}, "'tenants': expected a list of objects"),
    ("tenants missing", lambda m: {k: v for k, v in m.items() if k != "tenants"}, "'tenants': expected a list"),
    ("tenants a string", lambda m: {**m, "tenants": "all"}, "'tenants': expected a list of objects, not a string"),
    ("a tenant id a number", lambda m: {**m, "tenants": [{**m["tenants"][0], "tenant_id": 5}]}, "tenant_id"),
    ("a list", lambda m: [m], "expected a JSON object, not a list"),
    ("run_id a number", lambda m: {**m, "run_id": 5}, "'run_id': expected a string"),
]


@pytest.mark.parametrize(("change", "named"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_manifest_is_a_broken_finding_naming_the_file_not_a_crash(
    ledger: RetentionLedger, change: Callable[[dict[str, Any]], Any], named: str
) -> None:
    directory = _archived(ledger)
    _rewrite_manifest(directory / MANIFEST, change)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    assert not report.ok
    (finding,) = [f for f in report.findings if f.kind == "archive_manifest_unreadable"]
    assert finding.severity == "broken" and str(directory / MANIFEST) in finding.detail, finding.detail
    assert named in finding.detail, finding.detail


def test_audit_verify_names_a_malformed_manifest_and_exits_failed(
    ledger: RetentionLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _archived(ledger)
    _rewrite_manifest(directory / MANIFEST, MALFORMED[0][1])
    verify = ["audit", "verify", "--no-record", "--database-url", ledger.auditor_url, "--archive", str(ledger.archive)]
    assert cli.main(verify) == ExitCode.FAILED
    out = capsys.readouterr().out
    assert "archive_manifest_unreadable" in out and str(directory / MANIFEST) in out


@pytest.mark.parametrize("malformed", [MALFORMED[0], MALFORMED[3]], ids=[MALFORMED[0][0], MALFORMED[3][0]])
def test_a_malformed_manifest_of_a_month_archived_before_refuses_the_next_naming_it_and_leaves_no_copy(
    _create_postgres_database: Callable[[], str],
    ledger_login: Callable[..., str],
    tmp_path: Path,
    malformed: tuple[str, Callable[[dict[str, Any]], Any], str],
) -> None:
    login, names, april_due = _two_months_under_one_seal(_create_postgres_database, ledger_login)
    archive = tmp_path / "archive"
    _, outcomes = apply_retention(login, POLICY, archive, now=april_due)
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(names[0], True)]
    (manifest,) = archive.rglob(MANIFEST)
    _rewrite_manifest(manifest, malformed[1])

    _, outcomes = apply_retention(login, POLICY, archive)

    assert [(o.plan.partition, o.archived, o.directory) for o in outcomes] == [(names[1], False, None)]
    reason = outcomes[0].reason or ""
    assert "archive_manifest_unreadable" in reason and str(manifest) in reason and malformed[2] in reason, reason
    assert list(archive.iterdir()) == [manifest.parent]  # the refused month's copy is gone


def test_any_failure_of_the_proof_refuses_the_month_removes_its_copy_and_says_why(
    ledger: RetentionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_ledger.audit import archive_proof

    def failing(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a defect of the proof itself")

    monkeypatch.setattr(archive_proof, "prove_before_drop", failing)
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert [(o.plan.partition, o.archived, o.directory) for o in outcomes] == [(OLD, False, None)]
    reason = outcomes[0].reason or ""
    assert "could not be proved" in reason and "RuntimeError: a defect of the proof itself" in reason, reason
    assert list(ledger.archive.iterdir()) == []
    assert OLD in ledger.partitions()
    assert [(r.outcome, r.reason) for r in _audit_retention(ledger, "outcome, reason")] == [("refused", reason)]


def _rewrite_archive_file(path: Path, change: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """The file written anew with its rows as ``change`` leaves them (the list of rows, in file order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows: list[dict[str, Any]] = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return rows


def test_an_archived_payload_no_json_reader_reads_is_named_and_the_rest_of_the_file_still_checked(
    ledger: RetentionLedger,
) -> None:
    before = verify_ledger(ledger.auditor_url, record=False)
    directory = _archived(ledger)
    victim = sorted(directory.glob("*.parquet"))[0]

    def unreadable(rows: list[dict[str, Any]]) -> None:
        rows[0]["payload"] = '{"model": "not closed'

    rows = _rewrite_archive_file(victim, unreadable)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    (finding,) = [f for f in report.findings if f.kind == "archive_file_unreadable"]
    assert finding.severity == "broken" and str(victim) in finding.detail and "not readable JSON" in finding.detail
    assert (finding.event_id, finding.stream_id) == (rows[0]["event_id"], rows[0]["stream_id"])
    # Every other stream of the file, and every event of this one, was still checked.
    assert (report.streams, report.events) == (before.streams, before.events)


def _null_occurred_at(table: Any) -> Any:
    rows = table.to_pylist()
    rows[1]["occurred_at"] = None
    return type(table).from_pylist(rows, schema=table.schema)


def _occurred_at_as_text(table: Any) -> Any:
    import pyarrow as pa

    index = table.schema.get_field_index("occurred_at")
    return table.set_column(index, "occurred_at", table.column(index).cast(pa.string()))


DAMAGED_COLUMNS: list[tuple[str, Callable[[Any], Any], str]] = [
    ("the payload column gone", lambda table: table.drop(["payload"]), "no 'payload' column"),
    ("the event_type column gone", lambda table: table.drop(["event_type"]), "no 'event_type' column"),
    ("an occurred_at null", _null_occurred_at, "'occurred_at' column holds 1 null"),
    ("occurred_at as text", _occurred_at_as_text, "'occurred_at' column is string"),
]


@pytest.mark.parametrize(("change", "named"), [d[1:] for d in DAMAGED_COLUMNS], ids=[d[0] for d in DAMAGED_COLUMNS])
def test_an_archive_file_whose_columns_are_not_the_events_table_s_is_named_not_a_crash(
    ledger: RetentionLedger, change: Callable[[Any], Any], named: str
) -> None:
    import pyarrow.parquet as pq

    directory = _archived(ledger)
    victim = sorted(directory.glob("*.parquet"))[0]
    pq.write_table(change(pq.read_table(victim)), victim)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    assert not report.ok
    unreadable = [f for f in report.findings if f.kind == "archive_file_unreadable"]
    assert unreadable and all(f.severity == "broken" and str(victim) in f.detail for f in unreadable), unreadable
    assert any(named in f.detail for f in unreadable), unreadable


def test_an_archived_integer_beyond_64_bits_is_read_as_json_loads_reads_it_as_a_live_one_is(
    ledger: RetentionLedger,
) -> None:
    """A stream rechained by a forger who hashed an integer beyond 64 bits as orjson reads it (a float): the
    archive is read by verify's own code, which reads such a payload again with json.loads, so the event is
    invalid there as it is live (tests/audit/test_fast_path.py), never passed on orjson's float."""
    from llm_ledger.events import canonical_json, compute_hash, sha256_hex
    from llm_ledger.store.rows import row_to_record

    directory = _archived(ledger)
    victim = sorted(directory.glob("*.parquet"))[0]

    def forged(rows: list[dict[str, Any]]) -> None:
        stream = [row for row in rows if row["stream_id"] == rows[0]["stream_id"]]
        records = [{**row_to_record(row), "payload": json.loads(row["payload"])} for row in stream]
        records[1]["payload"] = {**records[1]["payload"], "attempt": 2**70}
        as_orjson_reads_it = {**records[1], "payload": {**records[1]["payload"], "attempt": float(2**70)}}
        records[1]["hash"] = sha256_hex(canonical_json({k: v for k, v in as_orjson_reads_it.items() if k != "hash"}))
        for index in range(2, len(records)):
            records[index]["prev_hash"] = records[index - 1]["hash"]
            records[index]["hash"] = compute_hash(records[index])
        for row, record in zip(stream[1:], records[1:], strict=True):
            row.update(payload=json.dumps(record["payload"]), prev_hash=record["prev_hash"], hash=record["hash"])

    rows = _rewrite_archive_file(victim, forged)
    report = verify_ledger(ledger.auditor_url, record=False, archive=ledger.archive)
    named = [f for f in report.findings if f.event_id == rows[1]["event_id"]]
    assert [f.kind for f in named] == ["invalid"], report.to_text()


# --- retention's verify pins the seals' key and the sealer's witness, as audit verify does ----------------


def test_retention_pins_the_public_key_as_audit_verify_does(
    ledger: RetentionLedger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture's seals are unsigned: pinned, a key refuses the month (seal_unsigned), by option or by the
    variable ``audit verify`` reads."""
    from llm_ledger.audit import SigningKey

    key = SigningKey.generate().public_key.text()
    common = ["--older-than", "400d", "--database-url", ledger.retention_url]
    assert cli.main(["retention", "plan", *common, "--public-key", key]) == ExitCode.OK
    assert "seal_unsigned" in capsys.readouterr().out
    monkeypatch.setenv("LLM_LEDGER_SEAL_PUBLIC_KEY", key)
    status = cli.main(["retention", "apply", *common, "--archive", str(ledger.archive)])
    assert status == ExitCode.FAILED
    err = capsys.readouterr().err
    assert f"{OLD}: refused" in err and "seal_unsigned" in err, err
    assert OLD in ledger.partitions() and not ledger.archive.exists()


def test_retention_refuses_a_month_of_a_tenant_whose_head_the_witness_contradicts(
    ledger: RetentionLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third seal of each tenant, over recent events only: the witness recording another hash for one
    tenant's seal 3 (a seal that does not cover the month) leaves none of that tenant's seals vouched for,
    so its month is refused; the witness as the sealer wrote it lets the month go."""
    from llm_ledger.audit.heads import Head, HeadLog

    store(ledger.url, workload.generate(TENANTS, 2, tools=False, seed=5))
    third = {seal.tenant_id: seal for seal in seal_all(ledger.url)}
    assert {seal.sequence for seal in third.values()} == {3}
    contradicting, genuine = tmp_path / "contradicting.jsonl", tmp_path / "witness.jsonl"
    HeadLog(contradicting).append(
        [Head(TENANTS[0], 3, third[TENANTS[0]].seal_hash), Head(TENANTS[1], 3, "0" * 64)], "sealed", None
    )
    HeadLog(genuine).append([Head(t, 3, third[t].seal_hash) for t in TENANTS], "sealed", None)
    common = ["retention", "apply", "--older-than", "400d", "--database-url", ledger.retention_url]
    common += ["--archive", str(ledger.archive)]

    assert cli.main([*common, "--witness", str(contradicting)]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert f"{OLD}: refused" in err and "seal_head_replaced" in err and TENANTS[1] in err, err
    assert OLD in ledger.partitions()

    monkeypatch.setenv("LLM_LEDGER_VERIFY_WITNESS", str(genuine))
    assert cli.main(common) == ExitCode.OK
    assert f"{OLD}: archived" in capsys.readouterr().out


# --- a run the database contradicts, recorded while apply runs ----------------------------------------------


def test_a_contradicted_run_recorded_after_the_plan_read_the_runs_still_refuses_its_tenants_months(
    ledger: RetentionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving, made deterministic: a run naming a tenant of the month is recorded (by another
    holder of the role, on its own connection) after ``apply`` read the runs and before its verify reads
    them. The verify takes it at its word; the month must be refused as if it had been there from the start."""
    from llm_ledger.audit import retention, verify

    low, _high, _counts = _month_of(ledger, OLD)
    forged: list[str] = []
    real = verify.verify_ledger

    def verify_after_a_run_is_forged(*args: Any, **kwargs: Any) -> Any:
        other = create_store_engine(ledger.retention_url)
        try:
            with other.begin() as connection:
                forged.append(_forge_run(connection, "llm_ledger_events_2020_02", low, "ffffffff", {TENANTS[0]: 1}))
        finally:
            other.dispose()
        return real(*args, **kwargs)

    monkeypatch.setattr(retention, "verify_ledger", verify_after_a_run_is_forged)
    _, outcomes = apply_retention(ledger.retention_url, POLICY, ledger.archive)
    assert forged
    assert [(o.plan.partition, o.archived) for o in outcomes] == [(OLD, False)]
    reason = outcomes[0].reason or ""
    assert forged[0] in reason and "A retention run the database contradicts" in reason, reason
    assert OLD in ledger.partitions()
