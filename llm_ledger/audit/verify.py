"""``verify_ledger``: check every stream's chain and shape, and every seal, over the raw events.

Per tenant, in two streamed passes (nothing is loaded whole, so it runs on tens of millions of events):

1. the seals, in sequence: each one's own hash, its link to the previous seal, its range following the
   previous one's, its signature; then its content: the events of its range again give its Merkle root and
   count, and its manifest names each stream that lost, gained or changed events since it was sealed;
2. the events in stream order: each stream's hash chain (``events.verify_chain``), that it starts with
   the first event of its kind at position 0 (``ExecutionStarted`` for an execution, ``ToolCallStarted``
   for a tool's execution: ``events.STREAM_KINDS``), holds only events of that kind, and has one terminal
   event of that kind, its last. A stream without one is *incomplete* (its process died mid-call, or mid
   tool run), which is a fact to report, not a failure; if a seal says the stream had more events, that
   seal's finding fails the run.

``since``: the contents of the seals from the first whose recorded time span reaches ``since``
(``last_occurred_at >= since``) on, and every stream with an event in their ranges or after them (by the
read cursor, not by the events' own times, which are stored fields an attacker can move), or with an event
that occurred at or after ``since``; the seal chain itself, a row per seal, is always checked in full. An
event whose time lies outside the span its seal recorded is a finding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.audit.heads import STATE_FILE, WITNESS_FILE, Head, HeadLog, locked, resolve
from llm_ledger.audit.keys import PublicKey
from llm_ledger.audit.outside import RecordedHeads
from llm_ledger.audit.parallel import default_jobs, map_tenants
from llm_ledger.audit.queries import AuditQueries
from llm_ledger.audit.report import AuditReport, Finding, Severity, TenantResult
from llm_ledger.audit.retired import ArchiveDirs, Retired, RetiredTenant
from llm_ledger.audit.roles import audit_engine, scoped_connection
from llm_ledger.audit.runs import record_run
from llm_ledger.audit.seals import RangeDigest, Seal, digest_range, manifest_digest
from llm_ledger.audit.stream_rows import StoredRow, stored_chain_holds
from llm_ledger.events import STREAM_KIND_OF_START, STREAM_KINDS, chain_holds, uuid7, verify_chain
from llm_ledger.store import START, Cursor, as_utc
from llm_ledger.store.rows import row_to_record
from llm_ledger.store.scoping import AUDITOR_ROLE

PARALLEL_FROM = 100_000
"""Sealed events from which ``verify_ledger(jobs=None)`` verifies tenants in worker processes."""

_STARTS = " or ".join(sorted(STREAM_KIND_OF_START))
_WHAT = {"execution": "an execution", "tool_call": "a tool execution"}
_DIED = {
    "execution": "its process died mid-call, or the call is still running",
    "tool_call": "a tool execution: its process died while the tool ran, or the tool is still running",
}


def verify_ledger(
    database_url: str | URL | Engine,
    *,
    tenant_id: str | None = None,
    since: datetime | None = None,
    public_key: PublicKey | str | None = None,
    record: bool = True,
    witness: str | os.PathLike[str] | None = None,
    state: str | os.PathLike[str] | None = None,
    jobs: int | None = 1,
    archive: ArchiveDirs = None,
) -> AuditReport:
    """Verify the ledger (every tenant, or ``tenant_id``), as ``llm_ledger_auditor`` on PostgreSQL.

    ``jobs`` tenants are verified at once, each in a worker process (``parallel``) when more than one; None:
    as many as this process may use cores, at most ``parallel.DEFAULT_JOBS_CAP``, if the ledger holds at
    least ``PARALLEL_FROM`` sealed events (below that, starting the workers costs more than they save). The
    report is the same whatever ``jobs``. Each worker is a process (~93 MiB) with a connection of its own.
    Workers open the ledger from its URL alone, so they are only started for ``database_url`` given as a
    URL (or its text) of a database another process can open: an ``Engine`` (whose creator or connect_args
    a URL would lose) and an SQLite database in memory (``:memory:``, ``file:...?mode=memory``) are
    verified in this process whatever ``jobs``. Workers are spawned: a script that calls this with ``jobs``
    other than 1 must do so under ``if __name__ == "__main__":`` (each worker imports the caller's main
    module). A worker that fails on the database, or dies, raises ``StoreUnavailableError``.

    With ``public_key`` (or its base64 text), every seal must carry a valid signature by that key. With
    ``record``, the result is stored in the audit run tables for the dashboard. With ``witness`` (the
    sealer's, ``audit seal --witness``) and ``state`` (this function's own, read and then appended to), each
    tenant's seal chain is held against the heads recorded there (``outside``): a head or a tenant that
    disappeared is broken, and so is a seal the witness never recorded that is not signed by the sealer.

    Months that retention archived (``retired``) are reported as not checked, unless ``archive`` (one or more
    directories ``retention apply --archive`` wrote) holds their files: then they are proved from those.
    """
    if since is not None and since.tzinfo is None:
        raise AuditConfigurationError("since must be an aware datetime (UTC)")
    if jobs is not None and jobs < 1:
        raise AuditConfigurationError(f"jobs must be at least 1, not {jobs}")
    if isinstance(public_key, str):
        public_key = PublicKey.parse(public_key, "public_key")
    recorded: list[RecordedHeads] = []
    if witness is not None:
        witness_path = resolve(witness, WITNESS_FILE)
        witness_log = HeadLog.read(witness_path, public_key)
        if not witness_log.exists:
            raise AuditConfigurationError(f"no witness at {witness_path} (audit seal --witness writes it)")
        recorded.append(RecordedHeads(witness_log, "witness", is_witness=True, public_key=public_key))
    state_path = resolve(state, STATE_FILE) if state is not None else None
    with locked(state_path) if state_path is not None else nullcontext():
        if state_path is not None:
            recorded.append(RecordedHeads(HeadLog.read(state_path), "verify state", is_witness=False))
        report = _verify(database_url, tenant_id, since, public_key, recorded, jobs, archive)
        if state_path is not None:
            _remember(recorded[-1].log, report)
    if record:
        with audit_engine(database_url) as engine:
            record_run(engine, report)
    return report


def _verify(
    database_url: str | URL | Engine,
    tenant_id: str | None,
    since: datetime | None,
    public_key: PublicKey | None,
    recorded: list[RecordedHeads],
    jobs: int | None,
    archive: ArchiveDirs,
) -> AuditReport:
    with audit_engine(database_url) as engine:
        queries = AuditQueries(engine.dialect.name)
        started_at = datetime.now(UTC)
        with scoped_connection(engine, AUDITOR_ROLE) as connection:
            with_events = set(queries.tenants(connection, tenant_id))
            sealed = queries.sealed_events(connection)
            retired = Retired.load(connection, archive)
            # A tenant whose every event was deleted is still known to its seals, or to the heads kept outside.
            known = {*with_events, *sealed, *(t for r in recorded for t in r.log.heads())}
            tenants = {tenant for tenant in known if tenant_id is None or tenant == tenant_id}
            if not tenants:
                raise AuditConfigurationError(f"the ledger has no events and no seals of tenant {tenant_id!r}")
        # The largest first, so that no worker is left with a large tenant when the others are done.
        order = sorted(tenants, key=lambda tenant: (-sealed.get(tenant, 0), tenant))
        workers = _workers(jobs, database_url, engine, sum(sealed.get(tenant, 0) for tenant in tenants))
        if workers > 1 and len(order) > 1:
            key = public_key.text() if public_key is not None else None
            work = partial(_verify_tenant_in_worker, since=since, public_key=key)
            own = {tenant: retired.of(tenant) for tenant in order}
            outcomes = dict(zip(order, map_tenants(work, engine.url, order, workers, own), strict=True))
        else:
            outcomes = {
                tenant: _verify_tenant(engine, tenant, since, public_key, retired.of(tenant)) for tenant in order
            }
        results = []
        for tenant in sorted(tenants):
            result, chain = outcomes[tenant]
            for heads in recorded:
                heads.check(result, chain, tenant in with_events)
            results.append(result)
        return AuditReport(
            run_id=str(uuid7()),
            started_at=started_at,
            finished_at=datetime.now(UTC),
            tenant_scope=tenant_id,
            since=since,
            tenants=results,
            outside_findings=[*retired.findings, *(finding for heads in recorded for finding in heads.findings())],
        )


def _workers(jobs: int | None, database_url: str | URL | Engine, engine: Engine, sealed_events: int) -> int:
    """How many worker processes verify the tenants: ``jobs``; by default ``parallel.default_jobs()``, for a
    ledger of at least ``PARALLEL_FROM`` sealed events. One means none: the tenants are verified in this
    process, as they always are for a given ``Engine`` and an SQLite database in memory (``verify_ledger``)."""
    if isinstance(database_url, Engine) or _in_memory(engine.url):
        return 1
    if jobs is None:
        return default_jobs() if sealed_events >= PARALLEL_FROM else 1
    return jobs


def _in_memory(url: URL) -> bool:
    """Whether ``url`` is an SQLite database in memory, this process's own: ``:memory:`` (or no file), or a
    URI filename with ``mode=memory``."""
    if url.get_backend_name() != "sqlite":
        return False
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _verify_tenant(
    engine: Engine, tenant: str, since: datetime | None, public_key: PublicKey | None, archived: RetiredTenant
) -> tuple[TenantResult, list[Seal]]:
    """One tenant's seals and streams checked, its archived months with them; its result, and its seals in
    sequence."""
    queries = AuditQueries(engine.dialect.name)
    result = TenantResult(tenant)
    with scoped_connection(engine, AUDITOR_ROLE) as connection:
        chain = [Seal.from_row(row) for row in queries.seals_of(connection, tenant)]
        archived.use_seals(chain)
        first_checked = next((index for index, seal in enumerate(chain) if _reaches(seal, since)), len(chain))
        # The streams first, so that a seal's manifest needs comparing only when something is wrong
        # (``check_seal_content``); their findings are reported after the seals', as always.
        streams = TenantResult(tenant)
        _check_streams(connection, queries, streams, since, _checked_after(chain, first_checked))
        _check_seals(connection, queries, result, chain, first_checked, public_key, archived, streams.ok)
        result.extend(streams)
    archived.check_streams(result, check_stream)
    return result, chain


def _verify_tenant_in_worker(
    engine: Engine, tenant: str, archived: RetiredTenant, *, since: datetime | None, public_key: str | None
) -> tuple[TenantResult, list[Seal]]:
    """``_verify_tenant`` in a worker process (``parallel``), given the public key as its text and the
    tenant's archived months alone."""
    key = PublicKey.parse(public_key, "public_key") if public_key is not None else None
    return _verify_tenant(engine, tenant, since, key, archived)


def _remember(state: HeadLog, report: AuditReport) -> None:
    """Append to verify's state the head of each tenant that verified clean, where it moved: a broken
    tenant keeps the head it had, so that the next run compares with it again. Nothing at all when the
    witness or the state is broken itself: the tenants were held against heads that cannot be trusted."""
    if any(finding.severity == "broken" for finding in report.outside_findings):
        return
    known = state.heads()
    moved = []
    for result in report.tenants:
        head = Head(result.tenant_id, result.last_seal_sequence, result.last_seal_hash)
        earlier = known.get(result.tenant_id)
        if result.ok and (earlier is None or earlier.head != head):
            moved.append(head)
    state.append(moved, "verified", None)


# --- seals -------------------------------------------------------------------------------------------


def _check_seals(
    connection: Connection,
    queries: AuditQueries,
    result: TenantResult,
    chain: list[Seal],
    first_checked: int,
    public_key: PublicKey | None,
    archived: RetiredTenant,
    streams_hold: bool,
) -> None:
    """Check the tenant's seals, in sequence: the whole chain, and the content of each from ``first_checked``
    on (with ``since``, the first seal made at or after ``since`` or holding an event of ``since`` or later,
    by the times the seal recorded, which its hash and signature cover; every seal after it too).
    ``streams_hold``: the stream pass found nothing broken (``check_seal_content``)."""
    tenant = result.tenant_id
    previous: Seal | None = None
    for index, seal in enumerate(chain):
        result.seals += 1
        for kind, detail in [*_chain_problems(seal, previous), *_signature_problems(seal, public_key)]:
            result.add(Finding(tenant, kind, "broken", detail, seal_sequence=seal.sequence))
        if index >= first_checked:
            check_seal_content(connection, queries, result, seal, archived, streams_hold=streams_hold)
        previous = seal
    if previous is not None:
        result.last_seal_hash, result.last_sealed_at = previous.seal_hash, previous.sealed_at
        result.last_seal_sequence = previous.sequence
    unsealed_after = previous.through if previous else START
    result.unsealed_events = queries.count_after(connection, tenant, unsealed_after)
    if result.unsealed_events:
        result.add(
            Finding(
                tenant,
                "unsealed",
                "warning",
                f"{result.unsealed_events:,} events after the last seal are not sealed yet (llm-ledger audit seal)",
            )
        )


def _checked_after(chain: Sequence[Seal], first_checked: int) -> Cursor:
    """The cursor after which the stream pass checks events: where the first seal whose content is checked
    begins, or after the last seal."""
    if first_checked < len(chain):
        return chain[first_checked].after
    return chain[-1].through if chain else START


def _reaches(seal: Seal, since: datetime | None) -> bool:
    # By its sealing time too: events recorded with old dates (a backfill, the demo's history) are sealed
    # now, and a verify of the last hour must check them.
    return since is None or seal.sealed_at >= since or seal.last_occurred_at >= since


def _chain_problems(seal: Seal, previous: Seal | None) -> list[tuple[str, str]]:
    problems = []
    expected = previous.sequence + 1 if previous is not None else 1
    if seal.sequence != expected:
        gone = f"{expected}" if seal.sequence == expected + 1 else f"{expected}..{seal.sequence - 1}"
        problems.append(("seal_missing", f"seal(s) {gone} before this one are gone"))
    elif seal.prev_seal_hash != (previous.seal_hash if previous else None):
        problems.append(
            (
                "seal_link_broken",
                f"prev_seal_hash {seal.prev_seal_hash} is not the previous seal's hash"
                f" {previous.seal_hash if previous else 'none (first seal)'}: the seal before it was replaced",
            )
        )
    computed = seal.computed_hash()
    if computed != seal.seal_hash:
        problems.append(("seal_hash_mismatch", f"the seal's fields give hash {computed}, not {seal.seal_hash}: edited"))
    if seal.sequence == expected and seal.after != (previous.through if previous else START):
        problems.append(
            ("seal_range_broken", f"its range starts after {seal.after}, not where the previous seal ended")
        )
    return problems


def _signature_problems(seal: Seal, public_key: PublicKey | None) -> list[tuple[str, str]]:
    if public_key is not None:
        if seal.signature is None:
            return [("seal_unsigned", "not signed, but a public key is pinned")]
        if not public_key.is_signature_of(seal.signature, seal.seal_hash):
            return [("seal_signature_invalid", "its signature is not the pinned key's signature of its hash")]
        return []
    if seal.signature is not None:
        # Without a pinned key this only shows the row is as it was signed by the key it names.
        try:
            named = PublicKey.parse(seal.public_key or "", "the seal's public_key")
        except AuditConfigurationError:
            return [("seal_signature_invalid", "signed, but its public_key is not an Ed25519 key")]
        if not named.is_signature_of(seal.signature, seal.seal_hash):
            return [("seal_signature_invalid", "its signature does not match its hash and public key")]
    return []


def check_seal_content(
    connection: Connection,
    queries: AuditQueries,
    result: TenantResult,
    seal: Seal,
    archived: RetiredTenant,
    *,
    streams_hold: bool = False,
) -> None:
    """The seal's content against its range: Merkle root, count, time span and stream manifest (and, for a
    seal over archived events, theirs from ``archived``). Also what ``retention apply`` proves an archive by
    before it drops the month (``archive_proof``).

    ``streams_hold``: every stream with an event in the range was checked and nothing was broken (verify's
    stream pass ran first). Then a range whose live leaves give the sealed root and count is not compared
    stream by stream with the manifest (the costliest query of a seal): the root and count say the range
    holds the sealed hashes in their sealed order, and each hash, recomputed by the stream pass, binds its
    event's stream and position, of which the manifest is made, so no stream can differ. The manifest's own
    rows are held to the sealed digest first, and compared when they are not the sealed ones."""
    tenant, sequence = result.tenant_id, seal.sequence

    def broken(kind: str, detail: str, **where: Any) -> None:
        result.add(Finding(tenant, kind, "broken", detail, seal_sequence=sequence, **where))

    # A seal over events that retention archived gets its leaves from the archive too, or goes unchecked.
    retired = archived.covers(seal)
    digest = (
        archived.digest(connection, seal, result) if retired else digest_range(queries.leaves(connection, seal.range))
    )
    if digest is not None and not _is_within_sealed_span(digest, seal):
        _name_events_outside_span(connection, queries, seal, result)
    if digest is not None and digest.count != seal.event_count:
        broken("seal_count_mismatch", f"its range now holds {digest.count:,} events; {seal.event_count:,} were sealed")
    if digest is not None and digest.root != seal.merkle_root:
        broken("seal_root_mismatch", f"its range's events give Merkle root {digest.root}, not {seal.merkle_root}")
    manifest, streams = manifest_digest(queries.manifest(connection, tenant, sequence))
    manifest_holds = manifest == seal.manifest_digest and streams == seal.stream_count
    if not manifest_holds:
        broken("manifest_altered", f"its stream manifest ({streams:,} rows) is not the one sealed")
    leaves_hold = digest is not None and digest.root == seal.merkle_root and digest.count == seal.event_count
    if streams_hold and manifest_holds and leaves_hold and not retired:
        return
    for difference in queries.manifest_differences(connection, seal.range, sequence):
        if retired and archived.explains(seal, difference, result):
            continue
        for finding in _stream_differences(connection, queries, seal, difference):
            result.add(finding)


def _is_within_sealed_span(digest: RangeDigest, seal: Seal) -> bool:
    """Whether the times the pass saw lie in the span the seal recorded; only when not are the events named,
    by a query of their own, so that a clean seal costs no more than its pass."""
    if digest.first_occurred_at is None or digest.last_occurred_at is None:
        return True
    return seal.first_occurred_at <= digest.first_occurred_at and digest.last_occurred_at <= seal.last_occurred_at


def _name_events_outside_span(connection: Connection, queries: AuditQueries, seal: Seal, result: TenantResult) -> None:
    """Name each event of the seal's range whose ``occurred_at`` lies outside the time span the seal recorded
    (an event moved in time, which a chain check misses when the stream is not selected by its time)."""
    first, last = seal.first_occurred_at, seal.last_occurred_at
    for row in queries.outside_span(connection, seal.range, first, last):
        result.add(
            Finding(
                seal.tenant_id,
                "occurred_at_outside_seal",
                "broken",
                f"occurred at {as_utc(row.occurred_at).isoformat()}, outside the seal's recorded span"
                f" {first.isoformat()} to {last.isoformat()}: its time was changed",
                stream_id=str(row.stream_id),
                stream_position=row.stream_position,
                event_id=str(row.event_id),
                event_type=row.event_type,
                seal_sequence=seal.sequence,
            )
        )


def _runs(positions: Iterable[int]) -> str:
    """``[3, 4, 5, 9]`` as ``3..5, 9``."""
    spans: list[list[int]] = []
    for position in sorted(positions):
        if spans and position == spans[-1][1] + 1:
            spans[-1][1] = position
        else:
            spans.append([position, position])
    return ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in spans)


def _stream_differences(connection: Connection, queries: AuditQueries, seal: Seal, difference: Any) -> list[Finding]:
    stream_id = difference.sealed_stream or difference.actual_stream

    def broken(kind: str, detail: str, row: Any = None, **where: Any) -> Finding:
        if row is not None:
            where.update(stream_position=row.stream_position, event_id=row.event_id, event_type=row.event_type)
        return Finding(
            seal.tenant_id, kind, "broken", detail, stream_id=stream_id, seal_sequence=seal.sequence, **where
        )

    if difference.actual_stream is None:
        return [
            broken(
                "sealed_stream_gone",
                f"stream is gone: the seal holds its positions {difference.sealed_first}..{difference.sealed_last}"
                f" ({difference.sealed_count} events)",
            )
        ]
    present = queries.stream_in_range(connection, seal.range, stream_id)
    if difference.sealed_stream is None:
        return [
            broken("event_inserted", "inserted into a sealed range: the seal has no event of this stream", row)
            for row in present
        ]
    findings = []
    sealed = range(difference.sealed_first, difference.sealed_last + 1)
    held = f"{sealed.start}..{sealed.stop - 1}"
    positions = [row.stream_position for row in present]
    missing = sorted(set(sealed) - set(positions))
    if missing:
        findings.append(
            broken(
                "sealed_events_missing",
                f"lost sealed position(s) {_runs(missing)} (the seal holds {held})",
                stream_position=missing[0],
            )
        )
    seen: set[int] = set()
    for row in present:
        if row.stream_position not in sealed or row.stream_position in seen:
            findings.append(
                broken("event_inserted", f"inserted into a sealed range (the seal holds positions {held})", row)
            )
        seen.add(row.stream_position)
    if not findings and present and present[-1].hash != difference.sealed_head:
        head = present[-1]
        findings.append(
            broken(
                "stream_rewritten",
                f"the event at position {head.stream_position} is not the sealed one (hash {head.hash}, sealed"
                f" {difference.sealed_head}): the stream was rewritten, with its chain recomputed if no chain"
                " break is reported",
                head,
            )
        )
    return findings


# --- streams -----------------------------------------------------------------------------------------


def _check_streams(
    connection: Connection, queries: AuditQueries, result: TenantResult, since: datetime | None, after: Cursor
) -> None:
    stream: list[StoredRow] = []
    stream_id: Any = None
    make = StoredRow._make
    for stored in queries.stream_events(connection, result.tenant_id, since, after):
        row = make(stored)
        if row.stream_id != stream_id:
            if stream:
                check_stream(stream, result)
            stream, stream_id = [], row.stream_id
        stream.append(row)
    if stream:
        check_stream(stream, result)


def check_stream(rows: Sequence[Any], result: TenantResult, archive_file: str | None = None) -> None:
    """One stream's rows (stored or archived, in stream order, ``payload`` as its JSON text or as the column's
    type reads it): its hash chain, its kind and its terminal. ``archive_file``: the file archived rows were
    read from; a payload that no JSON reader reads there is ``archive_file_unreadable``, naming it (stored, it
    is ``invalid``)."""
    result.streams += 1
    result.events += len(rows)
    tenant, stream_id = result.tenant_id, str(rows[0].stream_id)

    def finding(kind: str, severity: Severity, detail: str, row: Any) -> Finding:
        return Finding(
            tenant,
            kind,
            severity,
            detail,
            stream_id=stream_id,
            stream_position=row.stream_position,
            event_id=str(row.event_id),
            event_type=row.event_type,
        )

    if not stored_chain_holds([StoredRow.of(row) for row in rows]):
        _check_chain(rows, result, finding, archive_file)
    first = rows[0]
    kind = STREAM_KIND_OF_START.get(first.event_type)
    if first.stream_position == 0 and kind is None:
        result.add(finding("bad_start", "broken", f"the stream starts with {first.event_type}, not {_STARTS}", first))
    if kind is None:  # its start is missing or wrong (reported): its kind is the one its first event is of
        kind = next((k for k in STREAM_KINDS.values() if first.event_type in k.event_types), STREAM_KINDS["execution"])
    for row in rows[1:]:
        if row.event_type not in kind.event_types:
            detail = f"a {row.event_type} in the stream of {_WHAT[kind.name]}, which holds no such event"
            result.add(finding("wrong_kind", "broken", detail, row))
    terminals = [index for index, row in enumerate(rows) if row.event_type in kind.terminals]
    for index in terminals[1:]:
        result.add(finding("several_terminals", "broken", "a second terminal event in the stream", rows[index]))
    if terminals and terminals[0] != len(rows) - 1:
        for row in rows[terminals[0] + 1 :]:
            result.add(finding("after_terminal", "broken", "an event after the stream's terminal event", row))
    if not terminals:
        last = rows[-1]
        age = datetime.now(UTC) - as_utc(last.occurred_at)
        result.add(
            finding(
                "incomplete",
                "incomplete",
                f"no terminal event: the last is {last.event_type} at position {last.stream_position},"
                f" {_age(age.total_seconds())} ago ({_DIED[kind.name]})",
                last,
            )
        )


def _check_chain(
    rows: Sequence[Any],
    result: TenantResult,
    finding: Callable[[str, Severity, str, Any], Finding],
    archive_file: str | None,
) -> None:
    """The stream's chain checked from its stored records, its breaks named (the stream did not pass
    ``stored_chain_holds``: something may be wrong)."""
    records, unreadable = _stored_records(rows)
    for index, reason in unreadable.items():
        if archive_file is None:
            result.add(finding("invalid", "broken", f"its payload is not readable JSON ({reason})", rows[index]))
        else:
            detail = f"{archive_file} cannot be read: the event's payload is not readable JSON ({reason})"
            result.add(finding("archive_file_unreadable", "broken", detail, rows[index]))
    if unreadable or not chain_holds(records):
        # Something is wrong: verify_chain names it, from the records as the payload column's type reads them.
        # An unreadable payload is left as its text: verify_chain still checks the event's links (by its stored
        # hash), and what it says of its content is what was said above.
        chain = verify_chain(_as_read(record, row) for record, row in zip(records, rows, strict=True))
        for brk in chain.breaks:
            if brk.index in unreadable and brk.kind in ("invalid", "hash_mismatch"):
                continue
            result.add(finding(brk.kind, "broken", brk.reason, rows[brk.index]))


def _stored_records(rows: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The stored records of rows (``_stored_record``), and why each payload that is no JSON (which SQLite's
    column may hold) could not be read, by index: such a payload stays its text."""
    records: list[dict[str, Any]] = []
    unreadable: dict[int, str] = {}
    for index, row in enumerate(rows):
        try:
            records.append(_stored_record(row))
        # ValueError, not only JSONDecodeError: json.loads refuses an integer of over 4,300 digits with a
        # plain ValueError, and jsonb stores one (a tampered row must be a finding, not a crash).
        except (ValueError, RecursionError) as exc:
            records.append(row_to_record(row._mapping))
            unreadable[index] = str(exc) or type(exc).__name__
    return records, unreadable


def _stored_record(row: Any) -> dict[str, Any]:
    """The stored record of a row (``store.rows.row_to_record``); a payload read as its JSON text (the stream
    query's) parsed by orjson. orjson and json.loads give the same values, but for an integer beyond 64 bits,
    which orjson makes a float; ``chain_holds`` passes no record whose floats need rewriting, so that such a
    payload goes to ``_as_read``."""
    record = row_to_record(row._mapping)
    payload = record["payload"]
    if isinstance(payload, str):
        try:
            record["payload"] = orjson.loads(payload)
        except orjson.JSONDecodeError:  # NaN, a lone surrogate, a number beyond a double: json.loads reads them
            record["payload"] = json.loads(payload)
    return record


def _as_read(record: dict[str, Any], row: Any) -> dict[str, Any]:
    """The record with its payload as the column's type reads it (json.loads, on both dialects); as it is
    when that cannot read it (``_stored_record`` has said why)."""
    payload = row.payload
    if not isinstance(payload, str):
        return record
    try:
        return {**record, "payload": json.loads(payload)}
    except (ValueError, RecursionError):
        return record


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def stream_findings(tenant_id: str, rows: Sequence[Any]) -> list[Finding]:
    """What a verify finds in one stream's stored rows (``READ_COLUMNS``, in stream order), without its
    seals: its hash chain, its first and terminal events, or that it has no terminal event. For a view of a
    few streams (the dashboard's session page).

    Their payloads are the values the column's type read, which ``check_stream`` takes as the stored JSON text
    when they are a string: a payload stored as a JSON string holding an event's payload text would be read
    twice, into the object it spells, and pass. So each payload is handed on as its JSON text (``json.dumps``
    writes the values back exactly, NaN and integers beyond 64 bits included)."""
    result = TenantResult(tenant_id)
    check_stream([StoredRow.of(row)._replace(payload=json.dumps(row.payload)) for row in rows], result)
    return result.findings
