"""What ``audit verify`` knows of the months that retention moved out of the database, and how it proves them.

The runs that archived a partition (``llm_ledger_retention_runs``, ``llm_ledger_retention_files``) say which
stream ids left (the partition's bounds), which tenant's events, how many, and which seals cover them. The
seals themselves never leave. So, per tenant:

- without the archive, a seal covering archived events cannot give its Merkle root (its leaves are partly
  gone): that, and the archived streams, are reported as a warning, "N events archived in run R, not checked
  (use --archive DIR)"; the streams the seal's manifest holds in the archived month are expected to be gone,
  every other difference is checked as before;
- with the archive (``--archive DIR``), each file's SHA-256 is checked against the run's record, each
  archived stream's hash chain and shape as a live one's (the same check), each such seal's Merkle root and
  count recomputed from its live leaves and its archived ones merged in cursor order, and each archived
  stream the seal's manifest names held against the archive's events of that seal.
"""

from __future__ import annotations

import bisect
import heapq
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import Connection

from llm_ledger.audit import archive_files, retention_queries
from llm_ledger.audit.report import Finding, TenantResult
from llm_ledger.audit.seals import RangeDigest, Seal, digest_range
from llm_ledger.store import as_utc
from llm_ledger.store.partitions import is_partitioned, list_partitions, month_bounds, partition_month

ArchiveDirs = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None
StreamCheck = Callable[[Sequence[Any], TenantResult, str], None]
"""``verify.check_stream``: one archived stream's rows, the result, the file they were read from."""


class Leaf(NamedTuple):
    tx: int
    position: int
    hash: str
    occurred_at: datetime


class ArchivedRow:
    """An archived event as a verify reads a stored one: its columns as attributes and as ``_mapping``."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class StreamSummary:
    """One archived stream's events within one seal, as a seal's manifest row describes them."""

    first_position: int
    last_position: int
    event_count: int
    head_hash: str


@dataclass
class ArchivedMonth:
    """One tenant's events of one archived partition: the run's record, and the file when at hand."""

    run_id: str
    partition: str
    low: str
    high: str
    events: int
    streams: int
    seal_sequences: frozenset[int]
    recorded_sha256: str
    file_name: str
    path: Path | None = None
    leaves: list[Leaf] = field(default_factory=list)
    cursors: list[tuple[int, int]] = field(default_factory=list)
    summaries: dict[tuple[int, str], StreamSummary] = field(default_factory=dict)
    loaded: bool = False
    in_manifest: bool = False
    """Whether a manifest found in ``--archive`` names it (its file may still be missing)."""

    def holds(self, stream_id: str) -> bool:
        return self.low <= stream_id < self.high

    def release(self) -> None:
        """Let the leaves go once the tenant is checked: only one tenant's months are held at a time."""
        self.leaves, self.cursors, self.summaries = [], [], {}


def _seal_index(seals: Sequence[Seal]) -> Callable[[Leaf], int | None]:
    """The sequence of the seal whose range holds a cursor (seals are contiguous, in cursor order)."""
    ends = [(seal.through.tx_id, seal.through.position) for seal in seals]

    def sequence_of(leaf: Leaf) -> int | None:
        index = bisect.bisect_left(ends, (leaf.tx, leaf.position))
        return seals[index].sequence if index < len(seals) else None

    return sequence_of


class RetiredTenant:
    """One tenant's archived months, for the hooks of ``verify``. ``still_live``: the stream bounds of a
    month archived but not dropped yet (``archive_proof``), whose live events a seal's leaves leave out, as
    they will be once it is dropped."""

    def __init__(
        self,
        tenant_id: str,
        months: list[ArchivedMonth],
        with_archive: bool,
        still_live: tuple[str, str] | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.months = months
        self.with_archive = with_archive
        self.still_live = still_live
        self._seals: list[Seal] = []

    def covers(self, seal: Seal) -> bool:
        return any(seal.sequence in month.seal_sequences for month in self.months)

    def use_seals(self, chain: Sequence[Seal]) -> None:
        self._seals = list(chain)

    def _months_of(self, seal: Seal) -> list[ArchivedMonth]:
        return [month for month in self.months if seal.sequence in month.seal_sequences]

    def _finding(self, kind: str, severity: Any, detail: str, **where: Any) -> Finding:
        return Finding(self.tenant_id, kind, severity, detail, **where)

    def digest(self, connection: Connection, seal: Seal, result: TenantResult) -> RangeDigest | None:
        """The seal's Merkle root, count and span over its live and archived leaves; None (with a warning)
        when an archived month it covers is not at hand."""
        months = self._months_of(seal)
        missing = [month for month in months if not self._load(month, result)]
        if missing:
            runs = ", ".join(f"run {m.run_id} ({m.partition})" for m in missing)
            result.add(
                self._finding(
                    "archived_not_checked",
                    "warning",
                    f"part of its events were archived in {runs}: its Merkle root and count are not checked"
                    " (use --archive DIR)",
                    seal_sequence=seal.sequence,
                )
            )
            return None
        archived = [self._leaves_of(month, seal) for month in months]
        live = (
            Leaf(int(r.tx), int(r.position), r.hash, r.occurred_at)
            for r in retention_queries.leaves_at(connection, seal.range, self.still_live)
        )
        merged = heapq.merge(live, *archived, key=lambda leaf: (leaf.tx, leaf.position))
        return digest_range((leaf.hash, leaf.occurred_at) for leaf in merged)

    @staticmethod
    def _leaves_of(month: ArchivedMonth, seal: Seal) -> Iterator[Leaf]:
        after, through = (seal.after.tx_id, seal.after.position), (seal.through.tx_id, seal.through.position)
        start, end = bisect.bisect_right(month.cursors, after), bisect.bisect_right(month.cursors, through)
        return iter(month.leaves[start:end])

    def explains(self, seal: Seal, difference: Any, result: TenantResult) -> bool:
        """Whether a difference between the seal's manifest and the live events is a stream that retention
        archived; with the archive, the stream is held against the seal's manifest row there."""
        stream_id = difference.sealed_stream
        if difference.actual_stream is not None or stream_id is None:
            return False
        month = next((m for m in self._months_of(seal) if m.holds(str(stream_id))), None)
        if month is None:
            return False
        if not self.with_archive or not self._load(month, result):
            return True  # reported once per seal, by ``digest``
        summary = month.summaries.get((seal.sequence, str(stream_id)))
        sealed = StreamSummary(
            difference.sealed_first, difference.sealed_last, difference.sealed_count, difference.sealed_head
        )
        if summary != sealed:
            held = (
                f"{summary.first_position}..{summary.last_position} ({summary.event_count} events,"
                f" head {summary.head_hash})"
                if summary
                else "nothing"
            )
            result.add(
                self._finding(
                    "archived_stream_differs",
                    "broken",
                    f"the seal holds positions {sealed.first_position}..{sealed.last_position} ({sealed.event_count}"
                    f" events, head {sealed.head_hash}); the archive of run {month.run_id} holds {held}",
                    stream_id=str(stream_id),
                    seal_sequence=seal.sequence,
                )
            )
        return True

    def check_streams(self, result: TenantResult, check_stream: StreamCheck) -> None:
        """Each archived month's streams, by ``check_stream`` (verify's own, given the file they are read
        from), or a warning that they were not."""
        for month in self.months:
            if not self.with_archive or not self._load(month, result):
                result.add(
                    self._finding(
                        "archived_not_checked",
                        "warning",
                        f"{month.events:,} events archived in run {month.run_id} ({month.partition}), not checked"
                        " (use --archive DIR)",
                    )
                )
                continue
            assert month.path is not None
            stream: list[ArchivedRow] = []
            for row in self._rows(month, result):
                if stream and row.stream_id != stream[0].stream_id:
                    check_stream(stream, result, str(month.path))
                    stream = []
                stream.append(row)
            if stream:
                check_stream(stream, result, str(month.path))
            month.release()

    def _rows(self, month: ArchivedMonth, result: TenantResult) -> Iterator[ArchivedRow]:
        assert month.path is not None
        try:
            for mapping in archive_files.read_rows(month.path):
                row = ArchivedRow(mapping)
                if mapping["tenant_id"] != self.tenant_id or not month.holds(str(mapping["stream_id"])):
                    result.add(
                        self._finding(
                            "archived_event_misplaced",
                            "broken",
                            f"{month.path} holds an event of tenant {mapping['tenant_id']!r}, stream outside"
                            f" {month.partition}'s bounds or of another tenant",
                            stream_id=str(mapping["stream_id"]),
                            event_id=str(mapping["event_id"]),
                        )
                    )
                yield row
        except archive_files.damaged_file_errors() as exc:
            result.add(self._finding("archive_file_unreadable", "broken", f"{month.path} cannot be read: {exc}"))

    def _load(self, month: ArchivedMonth, result: TenantResult) -> bool:
        """Read the month's leaves and per-seal stream summaries (once), after checking its file's SHA-256
        against the run's record. False when its file is not at hand."""
        if month.path is None:
            return False
        if month.loaded:
            return True
        month.loaded = True
        actual = archive_files.file_sha256(month.path)
        if actual != month.recorded_sha256:
            result.add(
                self._finding(
                    "archive_file_altered",
                    "broken",
                    f"{month.path} has SHA-256 {actual}; run {month.run_id} recorded {month.recorded_sha256}",
                )
            )
        sequence_of = _seal_index(self._seals)
        leaves: list[Leaf] = []
        try:
            columns = ("tx_id", "global_position", "hash", "occurred_at", "stream_id", "stream_position")
            for batch in archive_files.read_columns(month.path, columns):
                for tx, position, event_hash, moment, stream_id, stream_position in zip(
                    *(batch[name] for name in columns), strict=True
                ):
                    leaf = Leaf(int(tx), int(position), str(event_hash), as_utc(moment))
                    leaves.append(leaf)
                    self._summarise(month, sequence_of(leaf), str(stream_id), int(stream_position), leaf.hash)
        except archive_files.damaged_file_errors() as exc:  # named; its seals' roots cannot be recomputed
            result.add(self._finding("archive_file_unreadable", "broken", f"{month.path} cannot be read: {exc}"))
        leaves.sort(key=lambda leaf: (leaf.tx, leaf.position))
        month.leaves = leaves
        month.cursors = [(leaf.tx, leaf.position) for leaf in leaves]
        return True

    @staticmethod
    def _summarise(month: ArchivedMonth, sequence: int | None, stream_id: str, position: int, event_hash: str) -> None:
        if sequence is None:
            return
        summary = month.summaries.get((sequence, stream_id))
        if summary is None:
            month.summaries[(sequence, stream_id)] = StreamSummary(position, position, 1, event_hash)
            return
        summary.event_count += 1
        summary.first_position = min(summary.first_position, position)
        if position >= summary.last_position:
            summary.last_position, summary.head_hash = position, event_hash


class Retired:
    """Every archived month the ledger records, and the archive directories given to this verify."""

    def __init__(
        self,
        months: dict[str, list[ArchivedMonth]],
        with_archive: bool,
        findings: list[Finding],
        still_live: tuple[str, str] | None = None,
    ) -> None:
        self._months = months
        self._with_archive = with_archive
        self.findings = findings
        self._still_live = still_live

    def of(self, tenant_id: str) -> RetiredTenant:
        return RetiredTenant(tenant_id, self._months.get(tenant_id, []), self._with_archive, self._still_live)

    @classmethod
    def load(cls, connection: Connection, archive: ArchiveDirs) -> Retired:
        """The recorded runs (none before migration 0010) and, with ``archive``, their files found there."""
        roots = [] if archive is None else [archive] if isinstance(archive, str | os.PathLike) else list(archive)
        if not retention_queries.has_retention_tables(connection):
            return cls({}, bool(roots), [])
        runs = {(row.run_id, row.partition_name): row for row in retention_queries.archived_runs(connection)}
        months, by_key = _archived_months(runs, retention_queries.archived_files(connection))
        findings = [run.finding() for run in _inconsistent(connection, runs, months)]
        if roots:
            findings += _attach_archives(roots, runs, by_key)
            findings += _missing_archives(by_key)
        return cls(months, bool(roots), findings)

    @classmethod
    def before_drop(
        cls, connection: Connection, root: Path, run: Mapping[str, Any], files: Sequence[Mapping[str, Any]]
    ) -> Retired:
        """The tenants of a month ``retention apply`` has archived to ``root`` and is about to drop, as a
        verify with ``--archive root`` will see them once it is dropped: ``run`` and ``files`` are the rows
        it is about to record, the month's events still live are left out of its seals' leaves, and the
        tenants' months archived earlier are looked for in ``root`` too (a seal may cover several months).
        ``findings``: what is wrong with the month's own manifest or files."""
        pending = SimpleNamespace(**run)
        key = (pending.run_id, pending.partition_name)
        runs: dict[tuple[str, str], Any] = {
            (r.run_id, r.partition_name): r for r in retention_queries.archived_runs(connection)
        }
        runs[key] = pending
        tenants = {str(file["tenant_id"]) for file in files}
        recorded = [file for file in retention_queries.archived_files(connection) if file.tenant_id in tenants]
        months, by_key = _archived_months(runs, [*recorded, *(SimpleNamespace(**file) for file in files)])
        found = _attach_archives([root], runs, by_key)
        own = {k: month for k, month in by_key.items() if k[:2] == key}
        # A finding of no tenant (an earlier run's manifest altered or unreadable) leaves nothing known to be
        # sound, as ``_relevant`` treats it: a verify with this archive would fail, so the month is refused.
        findings = [
            f for f in found if f.tenant_id in tenants or (not f.tenant_id and f.severity == "broken")
        ] + _missing_archives(own)
        return cls(months, True, findings, still_live=(pending.stream_low, pending.stream_high))


def _archived_months(
    runs: Mapping[tuple[str, str], Any], files: Iterable[Any]
) -> tuple[dict[str, list[ArchivedMonth]], dict[tuple[str, str, str], ArchivedMonth]]:
    """Each recorded file of an archived run as an ``ArchivedMonth``: by tenant, and by run, partition and
    tenant."""
    months: dict[str, list[ArchivedMonth]] = {}
    by_key: dict[tuple[str, str, str], ArchivedMonth] = {}
    for file in files:
        run = runs.get((file.run_id, file.partition_name))
        if run is None:
            continue
        month = ArchivedMonth(
            run_id=run.run_id,
            partition=run.partition_name,
            low=run.stream_low,
            high=run.stream_high,
            events=int(file.event_count),
            streams=int(file.stream_count),
            seal_sequences=frozenset(int(s) for s in json.loads(file.seal_sequences)),
            recorded_sha256=file.sha256,
            file_name=file.file_name,
        )
        months.setdefault(file.tenant_id, []).append(month)
        by_key[(run.run_id, run.partition_name, file.tenant_id)] = month
    return months, by_key


RESOLVING_INCONSISTENT_RUNS = 'docs/AUDIT.md, "A retention run the database contradicts"'


@dataclass(frozen=True, slots=True)
class InconsistentRun:
    """A recorded archived run that the database contradicts. ``tenants``: those its files name; a verify
    takes the seals its files list for them as partly archived, on its word."""

    run_id: str
    partition: str
    tenants: frozenset[str]
    problems: tuple[str, ...]

    def describe(self) -> str:
        return f"run {self.run_id} records {self.partition} as archived and dropped, but {'; '.join(self.problems)}"

    def blocks(self, partition: str, tenants: Iterable[str]) -> bool:
        """Whether it stands against retiring ``partition``, of ``tenants``: its own partition, or a month of
        one of its tenants (their seals' roots were not all checked: the run says their events left)."""
        return partition == self.partition or not self.tenants.isdisjoint(tenants)

    def finding(self) -> Finding:
        named = ", ".join(repr(tenant) for tenant in sorted(self.tenants)) or "none"
        detail = (
            f"{self.describe()}: retention refuses {self.partition} and every month of its tenants ({named})"
            f" until it is resolved ({RESOLVING_INCONSISTENT_RUNS})"
        )
        return Finding("", "archive_run_inconsistent", "broken", detail)


def inconsistent_runs(connection: Connection) -> list[InconsistentRun]:
    """The recorded archived runs the database contradicts (none before migration 0010)."""
    if not retention_queries.has_retention_tables(connection):
        return []
    runs = {(row.run_id, row.partition_name): row for row in retention_queries.archived_runs(connection)}
    return _inconsistent(connection, runs, _archived_months(runs, retention_queries.archived_files(connection))[0])


def _inconsistent(
    connection: Connection, runs: Mapping[tuple[str, str], Any], months: Mapping[str, list[ArchivedMonth]]
) -> list[InconsistentRun]:
    """A recorded archived run is believed only when it matches what the database shows: its bounds are its
    partition's month, that partition is gone, and no live event remains in its range."""
    present = {p.name for p in list_partitions(connection)} if is_partitioned(connection) else set()
    found = []
    for (run_id, partition), run in runs.items():
        month = partition_month(partition)
        problems = []
        if month is None or (run.stream_low, run.stream_high) != month_bounds(*month):
            problems.append(f"its stream bounds [{run.stream_low}, {run.stream_high}) are not {partition}'s month")
        if partition in present:
            problems.append(f"{partition} still exists")
        live = retention_queries.live_in_range(connection, run.stream_low, run.stream_high)
        if live:
            problems.append(f"{live:,} live events remain in its range")
        if problems:
            tenants = frozenset(
                tenant
                for tenant, held in months.items()
                if any(m.run_id == run_id and m.partition == partition for m in held)
            )
            found.append(InconsistentRun(run_id, partition, tenants, tuple(problems)))
    return found


def _missing_archives(months: dict[tuple[str, str, str], ArchivedMonth]) -> list[Finding]:
    """With ``--archive``, every recorded month whose file was not found there is broken: the only copy of
    its events is not where the verify was told to look."""
    return [
        Finding(
            tenant,
            "archive_missing",
            "broken",
            f"run {run_id} archived the tenant's events of {partition}; no manifest naming them was found in --archive",
        )
        for (run_id, partition, tenant), month in months.items()
        if not month.in_manifest
    ]


def _attach_archives(
    roots: Iterable[str | os.PathLike[str]],
    runs: dict[tuple[str, str], Any],
    months: dict[tuple[str, str, str], ArchivedMonth],
) -> list[Finding]:
    """Point each recorded month at its file in the archive directories, checking each manifest against its
    run's recorded SHA-256 first; what is wrong with a manifest (not JSON, or not of the shape ``retention
    apply`` writes) is the ledger's finding, naming the file, never an exception."""
    findings: list[Finding] = []
    for manifest_path in archive_files.find_manifests(roots):
        try:
            body = manifest_path.read_bytes()
            manifest = json.loads(body)
            key = archive_files.manifest_key(manifest)
        except (OSError, ValueError, RecursionError) as exc:
            findings.append(Finding("", "archive_manifest_unreadable", "broken", f"{manifest_path}: {exc}"))
            continue
        run = runs.get(key)
        if run is None:
            detail = f"{manifest_path} is of run {key[0]} ({key[1]}), which this ledger does not record as archived"
            findings.append(Finding("", "archive_unrecorded", "warning", detail))
            continue
        sha = archive_files.sha256_bytes(body)
        if sha != run.manifest_sha256:
            detail = f"{manifest_path} has SHA-256 {sha}; run {key[0]} recorded {run.manifest_sha256}"
            findings.append(Finding("", "archive_manifest_altered", "broken", detail))
        try:
            tenants = archive_files.manifest_tenants(manifest)
        except archive_files.ManifestShapeError as exc:
            # Its months stay unattached: each is then ``archive_missing`` too, as no manifest names it.
            findings.append(Finding("", "archive_manifest_unreadable", "broken", f"{manifest_path}: {exc}"))
            continue
        for tenant in tenants:
            month = months.get((*key, tenant))
            if month is not None:
                month.in_manifest = True
                month.path = manifest_path.parent / month.file_name
                if not month.path.is_file():
                    detail = f"{month.path} is missing: run {key[0]} archived the tenant's events of {key[1]} to it"
                    findings.append(Finding(tenant, "archive_file_missing", "broken", detail))
                    month.path = None
    return findings
