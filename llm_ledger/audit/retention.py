"""``llm-ledger retention plan`` and ``retention apply``: whole monthly partitions of the events leave the
database for an archive directory, once every tenant's events in them are sealed, a verify finds them clean,
no recorded run the database contradicts names them or their tenants, every tenant's policy lets them go,
and their Parquet files are written, fsynced, read back and proved from the files by verify's own checks
(``archive_proof``).

The unit is one monthly partition (every tenant's streams started that month: a stream never straddles two).
Each partition considered that was due is recorded in ``llm_ledger_retention_runs``, archived or refused, with
the reason; the drop itself is migration 0010's function, in the same transaction as the run's record, so
that no partition leaves unrecorded. The seals never leave: ``audit verify --archive`` proves the month
against them from the files (``retired``). PostgreSQL only: SQLite has no partitions.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from llm_ledger.audit import archive_files, archive_proof, retention_queries, retired
from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.audit.keys import PublicKey
from llm_ledger.audit.outside import CHAIN_CONTRADICTED
from llm_ledger.audit.queries import AuditQueries
from llm_ledger.audit.report import AuditReport, Finding
from llm_ledger.audit.retention_policy import RetentionPolicy
from llm_ledger.audit.roles import audit_engine, scoped_connection
from llm_ledger.audit.schema import retention_files, retention_runs
from llm_ledger.audit.seals import Seal
from llm_ledger.audit.verify import verify_ledger
from llm_ledger.events import uuid7
from llm_ledger.store import START
from llm_ledger.store.partitions import DEFAULT_PARTITION, Partition, is_partitioned, list_partitions
from llm_ledger.store.scoping import RETENTION_ROLE

_MAX_NAMED_FINDINGS = 3


@dataclass(slots=True)
class MonthPlan:
    """One monthly partition: what it holds, and why it may or may not leave."""

    partition: str
    month: str
    low: str
    high: str
    ends_at: datetime
    events: dict[str, int]
    kept_by_policy: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    seals: dict[str, list[int]] = field(default_factory=dict)
    """Per tenant, the sequences of the seals covering its events of the month."""

    @property
    def is_due(self) -> bool:
        return not self.kept_by_policy

    @property
    def may_go(self) -> bool:
        return self.is_due and not self.refusals

    @property
    def event_count(self) -> int:
        return sum(self.events.values())

    def describe(self) -> str:
        head = f"{self.partition} ({self.month}, {self.event_count:,} events of {len(self.events)} tenants)"
        if not self.is_due:
            return f"{head}: kept: {'; '.join(self.kept_by_policy)}"
        if self.refusals:
            return f"{head}: refused: {'; '.join(self.refusals)}"
        return f"{head}: may be archived and dropped"


@dataclass(slots=True)
class RetentionPlan:
    months: list[MonthPlan]
    verify_run_id: str | None
    verify_seconds: float | None = None
    """How long the verify took (None: no month was due and sealed, so none ran)."""


@dataclass(frozen=True, slots=True)
class MonthOutcome:
    """What ``apply`` did with one due partition."""

    plan: MonthPlan
    run_id: str
    archived: bool
    reason: str | None
    directory: Path | None
    files: tuple[archive_files.WrittenFile, ...] = ()
    seconds: float = 0.0
    """Writing, reading back, proving and dropping (or failing to)."""
    proof_seconds: float = 0.0
    """Of ``seconds``, proving the archive from its files (``archive_proof``)."""

    def describe(self) -> str:
        if self.archived:
            return (
                f"{self.plan.partition}: archived {self.plan.event_count:,} events of {len(self.files)} tenants to"
                f" {self.directory} and dropped in {self.seconds:.1f} s, {self.proof_seconds:.1f} s of it proving"
                f" the archive from its files (run {self.run_id})"
            )
        return f"{self.plan.partition}: refused (run {self.run_id}): {self.reason}"


def _month_bounds(name: str) -> tuple[str, datetime] | None:
    """``2025_11`` and the first moment after that month, from a monthly partition's name."""
    suffix = name.removeprefix("llm_ledger_events_")
    try:
        year, month = int(suffix[:4]), int(suffix[5:7])
        ends = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    except ValueError:
        return None
    return f"{year:04d}-{month:02d}", ends


def _require_partitions(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise AuditConfigurationError(
            "retention moves whole monthly partitions out of PostgreSQL; an SQLite ledger is one table in one file,"
            " with no partitions to move (keep or copy the file itself)"
        )
    with engine.connect() as connection:
        if not is_partitioned(connection):
            raise AuditConfigurationError("the events table is not partitioned: run llm-ledger db upgrade")
        if not retention_queries.has_retention_tables(connection):
            raise AuditConfigurationError("the ledger has no retention tables: run llm-ledger db upgrade")


def _relevant(finding: Finding, month: MonthPlan) -> bool:
    """Whether a broken finding stands against removing the month: of one of its tenants, and of one of its
    streams, of a seal covering it, or of the tenant's seal chain as a whole. A run the database contradicts
    is not one of these: ``_plan`` weighs it by what it names (``InconsistentRun.blocks``)."""
    if finding.severity != "broken" or finding.kind == "archive_run_inconsistent":
        return False
    if not finding.tenant_id:
        return True  # the witness, verify's state or an archive: nothing is known to be sound
    if finding.tenant_id not in month.events:
        return False
    if finding.stream_id is not None:
        return month.low <= finding.stream_id < month.high
    if finding.kind in CHAIN_CONTRADICTED:
        return True  # the head kept outside is not the database's: no seal of the tenant is vouched for
    return finding.seal_sequence is None or finding.seal_sequence in month.seals.get(finding.tenant_id, [])


def _plan_month(
    engine: Engine, queries: AuditQueries, policy: RetentionPolicy, now: datetime, partition: Partition
) -> MonthPlan | None:
    """The month's plan; None for a partition that is not a month's or holds no event."""
    bounds = _month_bounds(partition.name)
    if bounds is None or partition.low is None or partition.high is None:
        return None
    month, ends_at = bounds
    with scoped_connection(engine, RETENTION_ROLE) as connection:
        counts = retention_queries.tenant_counts(connection, partition.low, partition.high)
        if not counts:
            return None
        plan = MonthPlan(partition.name, month, partition.low, partition.high, ends_at, counts)
        if ends_at > now:
            plan.kept_by_policy.append("the month is not over: its streams may still be written")
            return plan
        # A stream's month is the one its id was made in; an event may be stored long after. The age counts
        # from the later of the two, so that no event leaves younger than its tenant's policy allows.
        stored = retention_queries.last_recorded(connection, partition.low, partition.high)
        for tenant in sorted(counts):
            age = policy.age_for(tenant)
            since = max(ends_at, stored.get(tenant, ends_at))
            if age is None:
                plan.kept_by_policy.append(f"tenant {tenant!r}'s policy keeps its events")
            elif since > now - age:
                plan.kept_by_policy.append(
                    f"tenant {tenant!r} keeps events {age.days}d: not before {(since + age).date().isoformat()}"
                    + (f" (its latest of the month was stored {since.date().isoformat()})" if since > ends_at else "")
                )
        if not plan.is_due:
            return plan
        for tenant in sorted(counts):
            chain = [Seal.from_row(row) for row in queries.seals_of(connection, tenant)]
            through = chain[-1].through if chain else START
            unsealed = retention_queries.unsealed_in_month(
                connection, tenant, plan.low, plan.high, (through.tx_id, through.position)
            )
            if unsealed:
                after = f"after its seal {chain[-1].sequence}" if chain else "it was never sealed"
                plan.refusals.append(
                    f"tenant {tenant!r}: {unsealed:,} of its {counts[tenant]:,} events of the month are not sealed"
                    f" ({after}): run llm-ledger audit seal"
                )
                continue
            first, last = retention_queries.cursor_span(connection, tenant, plan.low, plan.high)
            plan.seals[tenant] = [
                seal.sequence
                for seal in chain
                if (seal.through.tx_id, seal.through.position) >= first
                and (seal.after.tx_id, seal.after.position) < last
            ]
    return plan


@dataclass(frozen=True, slots=True)
class _Pins:
    """What the verify holds the seals against, as ``audit verify`` does (``verify_ledger``'s arguments of
    the same names): every seal signed by ``public_key``; the heads of the sealer's ``witness``."""

    public_key: PublicKey | str | None
    witness: str | os.PathLike[str] | None


def _refuse_blocked(months: Sequence[MonthPlan], inconsistent: Sequence[retired.InconsistentRun]) -> None:
    """Refuse each due month that a run the database contradicts names (by its partition or a tenant)."""
    for month in months:
        if not month.is_due:
            continue
        for run in inconsistent:
            refusal = (
                f"{run.describe()}: it names this month or its tenants; resolve it first"
                f" ({retired.RESOLVING_INCONSISTENT_RUNS})"
            )
            if run.blocks(month.partition, month.events) and refusal not in month.refusals:
                month.refusals.append(refusal)


def _plan(engine: Engine, policy: RetentionPolicy, now: datetime, record_verify: bool, pins: _Pins) -> RetentionPlan:
    _require_partitions(engine)
    queries = AuditQueries(engine.dialect.name)
    with engine.connect() as connection:
        partitions = [p for p in list_partitions(connection) if p.name != DEFAULT_PARTITION]
    with scoped_connection(engine, RETENTION_ROLE) as connection:
        inconsistent = retired.inconsistent_runs(connection)
    months = [plan for p in partitions if (plan := _plan_month(engine, queries, policy, now, p)) is not None]
    _refuse_blocked(months, inconsistent)
    candidates = [month for month in months if month.may_go]
    if not candidates:
        return RetentionPlan(months, None)
    started = time.perf_counter()
    report: AuditReport = verify_ledger(engine, record=record_verify, public_key=pins.public_key, witness=pins.witness)
    seconds = time.perf_counter() - started
    # Read again now that the verify has read the runs: one recorded after the read above (a row inserted by
    # another holder of the role) was taken at its word by the verify, whose finding of it ``_relevant``
    # leaves to this; the runs are append-only, so whatever the verify saw is seen here.
    with scoped_connection(engine, RETENTION_ROLE) as connection:
        _refuse_blocked(candidates, retired.inconsistent_runs(connection))
    for month in candidates:
        against = [finding for finding in report.findings if _relevant(finding, month)]
        if against:
            month.refusals.append(f"verify run {report.run_id} found it broken: {_named(against)}")
    return RetentionPlan(months, report.run_id if record_verify else None, seconds)


def _named(findings: Sequence[Finding]) -> str:
    """The first findings, and how many more."""
    named = "; ".join(str(finding).strip() for finding in findings[:_MAX_NAMED_FINDINGS])
    more = len(findings) - _MAX_NAMED_FINDINGS
    return f"{named} (and {more:,} more)" if more > 0 else named


def plan_retention(
    database_url: str | URL | Engine,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    public_key: PublicKey | str | None = None,
    witness: str | os.PathLike[str] | None = None,
) -> RetentionPlan:
    """What ``apply_retention`` would do, and why: nothing is written (the verify is not recorded)."""
    pins = _Pins(public_key, witness)
    with audit_engine(database_url) as engine:
        return _plan(engine, policy, now or datetime.now(UTC), record_verify=False, pins=pins)


def _archive_month(
    engine: Engine, plan: MonthPlan, run_id: str, directory: Path, started_at: datetime
) -> list[archive_files.WrittenFile]:
    directory.mkdir(parents=True)
    for made in (directory.parent, directory.parent.parent):  # the new entries survive a crash after the drop
        archive_files.fsync_directory(made)
    queries = AuditQueries(engine.dialect.name)
    written = []
    tenants: list[dict[str, Any]] = []
    for tenant in sorted(plan.events):
        with scoped_connection(engine, RETENTION_ROLE) as connection:
            file = archive_files.write_tenant_file(
                directory, tenant, retention_queries.month_rows(connection, tenant, plan.low, plan.high)
            )
            seals = [
                Seal.from_row(row).to_row()
                for row in queries.seals_of(connection, tenant)
                if int(row.sequence) in plan.seals[tenant]
            ]
        if file.events != plan.events[tenant]:
            raise OSError(f"tenant {tenant!r}: {file.events:,} events written, {plan.events[tenant]:,} counted")
        written.append(file)
        tenants.append(
            {
                "tenant_id": tenant,
                "file": file.name,
                "sha256": file.sha256,
                "bytes": file.bytes,
                "events": file.events,
                "streams": file.streams,
                "seals": seals,
            }
        )
    manifest = {
        "format": archive_files.FORMAT,
        "run_id": run_id,
        "partition": plan.partition,
        "month": plan.month,
        "stream_low": plan.low,
        "stream_high": plan.high,
        "archived_at": started_at,
        "columns": [name for name, _ in archive_files.COLUMNS],
        "tenants": tenants,
    }
    archive_files.write_manifest(directory, manifest)
    for file in written:  # read back from the disk once more, now that the manifest names it
        if archive_files.file_sha256(directory / file.name) != file.sha256:
            raise OSError(f"{directory / file.name} does not read back with the SHA-256 its manifest names")
    return written


def _run_values(
    plan: MonthPlan,
    policy: RetentionPolicy,
    outcome: MonthOutcome,
    started_at: datetime,
    manifest_sha: str | None,
    verify_run_id: str | None,
) -> dict[str, Any]:
    """The month's row of ``llm_ledger_retention_runs``."""
    return {
        "run_id": outcome.run_id,
        "partition_name": plan.partition,
        "month": plan.month,
        "stream_low": plan.low,
        "stream_high": plan.high,
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "run_by": "",  # the trigger writes the login's session_user
        "outcome": "archived" if outcome.archived else "refused",
        "reason": outcome.reason,
        "event_count": plan.event_count if outcome.archived else 0,
        "tenant_count": len(plan.events),
        "archive_dir": str(outcome.directory) if outcome.directory else None,
        "manifest_sha256": manifest_sha,
        "policy": policy.to_json(),
        "verify_run_id": verify_run_id,
    }


def _file_values(plan: MonthPlan, outcome: MonthOutcome) -> list[dict[str, Any]]:
    """An archived month's rows of ``llm_ledger_retention_files``, one per tenant."""
    return [
        {
            "run_id": outcome.run_id,
            "partition_name": plan.partition,
            "tenant_id": file.tenant_id,
            "file_name": file.name,
            "sha256": file.sha256,
            "bytes": file.bytes,
            "event_count": file.events,
            "stream_count": file.streams,
            "seal_sequences": _json_list(plan.seals[file.tenant_id]),
        }
        for file in outcome.files
    ]


def _record(
    engine: Engine,
    plan: MonthPlan,
    policy: RetentionPolicy,
    outcome: MonthOutcome,
    started_at: datetime,
    manifest_sha: str | None,
    verify_run_id: str | None,
) -> None:
    """Record the month's run; for an archived one, its files, and drop the partition in the same transaction
    (the drop function finds the run there), so that a partition never leaves unrecorded."""
    values = _run_values(plan, policy, outcome, started_at, manifest_sha, verify_run_id)
    with scoped_connection(engine, RETENTION_ROLE) as connection:
        connection.execute(retention_runs.insert().values(**values))
        if not outcome.archived:
            return
        for file in _file_values(plan, outcome):
            connection.execute(retention_files.insert().values(**file))
        retention_queries.drop_archived_partition(connection, outcome.run_id, plan.partition)


def _json_list(values: Sequence[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def apply_retention(
    database_url: str | URL | Engine,
    policy: RetentionPolicy,
    archive_dir: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    public_key: PublicKey | str | None = None,
    witness: str | os.PathLike[str] | None = None,
) -> tuple[RetentionPlan, list[MonthOutcome]]:
    """Archive and drop every monthly partition that may go, oldest first, as ``llm_ledger_retention``; each
    due partition gets a run row, archived or refused with the reason. ``public_key`` and ``witness``: what
    the full verify before it holds the seals against, as ``verify_ledger``'s (``audit verify --public-key
    --witness``): a broken finding of them refuses the months it concerns."""
    pins = _Pins(public_key, witness)
    root = Path(archive_dir)
    if root.exists() and not root.is_dir():
        raise AuditConfigurationError(f"--archive {root}: not a directory")
    archive_files.pyarrow()  # before the verify: without the extra, nothing could be archived
    with audit_engine(database_url) as engine:
        started_at = datetime.now(UTC)
        plan = _plan(engine, policy, now or started_at, record_verify=True, pins=pins)
        outcomes = []
        for month in plan.months:
            if not month.is_due:
                continue
            run_id = str(uuid7())
            if not month.may_go:
                outcome = MonthOutcome(month, run_id, False, "; ".join(month.refusals), None)
                _record(engine, month, policy, outcome, started_at, None, plan.verify_run_id)
                outcomes.append(outcome)
                continue
            outcome = _archive_and_drop(engine, month, policy, run_id, root, started_at, plan.verify_run_id)
            outcomes.append(outcome)
        return plan, outcomes


CommitFate = Literal["rolled_back", "committed", "unknown"]


def commit_fate(run_recorded: bool | None, partition_exists: bool | None) -> CommitFate:
    """What became of a recording-and-drop transaction that raised, from what the database shows after it
    (None: that could not be read). Only a fate known to be a rollback lets the archive's copy go."""
    if run_recorded is False and partition_exists is True:
        return "rolled_back"
    if run_recorded is True and partition_exists is False:
        return "committed"
    return "unknown"


def _fate_of(engine: Engine, run_id: str, partition: str) -> CommitFate:
    try:
        with scoped_connection(engine, RETENTION_ROLE) as connection:
            recorded = retention_queries.run_recorded(connection, run_id, partition)
            exists = any(p.name == partition for p in list_partitions(connection))
    except DBAPIError:
        return "unknown"
    return commit_fate(recorded, exists)


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def _why(exc: Exception) -> str:
    """An exception's first line; prefixed by its type unless it is one that writing or reading a file, or
    the database, raises in the ordinary way (those name what failed themselves)."""
    expected: tuple[type[Exception], ...] = (DBAPIError, *archive_files.damaged_file_errors())
    line = _first_line(exc)
    return line if isinstance(exc, expected) else f"{type(exc).__name__}: {line}"


def _archive_and_drop(
    engine: Engine,
    month: MonthPlan,
    policy: RetentionPolicy,
    run_id: str,
    root: Path,
    started_at: datetime,
    verify_run_id: str | None,
) -> MonthOutcome:
    """Write the month's archive under ``root`` and prove it from its files (``archive_proof``), then record
    the run and drop the partition in one transaction. The directory is removed only when nothing can have
    left the database: any failure while writing or proving (the partition is untouched until the drop), an
    archive that does not verify, or a recording transaction the database shows rolled back; when its fate
    is unknown, the directory is kept."""
    started = time.perf_counter()
    directory = root / f"{month.partition}-{run_id}"
    try:
        files = _archive_month(engine, month, run_id, directory, started_at)
        manifest_sha = archive_files.file_sha256(directory / archive_files.MANIFEST)
    except Exception as exc:  # noqa: BLE001 - whatever it is, nothing has left the database: the copy goes
        shutil.rmtree(directory, ignore_errors=True)
        return _refuse(engine, month, policy, run_id, started_at, verify_run_id, f"not archived: {_why(exc)}")
    outcome = MonthOutcome(month, run_id, True, None, directory, tuple(files))
    try:
        run = _run_values(month, policy, outcome, started_at, manifest_sha, verify_run_id)
        proving = time.perf_counter()
        against = archive_proof.prove_before_drop(engine, root, run, _file_values(month, outcome))
        outcome = replace(outcome, proof_seconds=time.perf_counter() - proving)
    except Exception as exc:  # noqa: BLE001 - a proof that did not finish proved nothing: the month is refused
        shutil.rmtree(directory, ignore_errors=True)
        reason = f"not dropped: the archive could not be proved from its files: {_why(exc)}"
        return _refuse(engine, month, policy, run_id, started_at, verify_run_id, reason)
    if against:
        shutil.rmtree(directory, ignore_errors=True)
        reason = f"not dropped: the archive does not verify from its files: {_named(against)}"
        return _refuse(engine, month, policy, run_id, started_at, verify_run_id, reason)
    try:
        _record(engine, month, policy, outcome, started_at, manifest_sha, verify_run_id)
    except DBAPIError as exc:
        fate = _fate_of(engine, run_id, month.partition)
        if fate == "committed":
            return replace(outcome, seconds=time.perf_counter() - started)
        if fate == "rolled_back":
            shutil.rmtree(directory, ignore_errors=True)
            return _refuse(engine, month, policy, run_id, started_at, verify_run_id, f"not dropped: {_first_line(exc)}")
        reason = (
            f"the drop's commit failed and its outcome is unknown ({_first_line(exc)}): the archive {directory}"
            f" is kept; see llm_ledger_retention_runs for run {run_id} and whether {month.partition} exists"
        )
        return MonthOutcome(month, run_id, False, reason, directory, tuple(files))
    return replace(outcome, seconds=time.perf_counter() - started)


def _refuse(
    engine: Engine,
    month: MonthPlan,
    policy: RetentionPolicy,
    run_id: str,
    started_at: datetime,
    verify_run_id: str | None,
    reason: str,
) -> MonthOutcome:
    outcome = MonthOutcome(month, run_id, False, reason, None)
    _record(engine, month, policy, outcome, started_at, None, verify_run_id)
    return outcome
