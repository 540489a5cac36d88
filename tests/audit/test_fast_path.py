"""The verify's fast path (``stored_chain_holds`` on the rows, then ``events.chain_holds`` on records read with
orjson, worker processes per tenant)
finds exactly what the full validation of every record finds (``verify_chain`` on every stream, the payload
read by json.loads, one process), on ledgers tampered with in every way tests/audit/test_tampering.py does
and in the ways that aim at the fast path itself."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, Engine, delete, insert, literal, make_url, text, update

from llm_ledger.audit import parallel, verify_ledger
from llm_ledger.audit import queries as queries_module
from llm_ledger.audit import verify as verify_module
from llm_ledger.audit.schema import seal_streams
from llm_ledger.cli import main
from llm_ledger.events import canonical_json, compute_hash, sha256_hex
from llm_ledger.store import as_utc, create_store_engine
from llm_ledger.store.rows import row_to_record
from llm_ledger.store.schema import READ_COLUMNS, events
from tests.audit.conftest import TENANTS, Ledger
from tests.audit.test_tampering import header_of, replace_rows, resealed, stream_of_the_second_seal
from tests.store.conftest import _postgres_server  # noqa: F401  (fixture)

Tampering = Callable[[Ledger], None]


def changed_payload_byte(ledger: Ledger) -> None:
    victim = ledger.complete_stream()[1]
    payload = dict(victim.payload)
    key = next(k for k, v in sorted(payload.items()) if isinstance(v, str) and v)
    payload[key] = ("X" if payload[key][0] != "X" else "Y") + payload[key][1:]
    ledger.tamper(
        lambda c: c.execute(update(events).where(events.c.event_id == victim.event_id).values(payload=payload))
    )


def deleted_middle_event(ledger: Ledger) -> None:
    victim = ledger.complete_stream()[1]
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.event_id == victim.event_id)))


def deleted_terminal_event(ledger: Ledger) -> None:
    terminal = ledger.complete_stream()[-1]
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.event_id == terminal.event_id)))


def deleted_stream(ledger: Ledger) -> None:
    stream_id = ledger.complete_stream()[0].stream_id
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.stream_id == stream_id)))


def naively_forged_event(ledger: Ledger) -> None:
    last = ledger.complete_stream()[-1]
    forged = {c.name: getattr(last, c.name) for c in events.c if c.name not in ("global_position", "recorded_at")}
    forged.update(event_id=str(uuid.uuid4()), stream_position=last.stream_position + 1)
    ledger.tamper(lambda c: c.execute(insert(events).values(**forged)))


def forged_stream_with_a_valid_chain(ledger: Ledger) -> None:
    real = ledger.complete_stream()
    forged = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(seconds=1), ids=True)
    ledger.tamper(lambda c: replace_rows(c, real, forged))


def stream_rewritten_with_a_recomputed_chain(ledger: Ledger) -> None:
    stream = ledger.complete_stream()
    ledger.tamper(lambda c: replace_rows(c, stream, resealed(stream, header_of(stream[0]), shift=timedelta(seconds=5))))


def reordered_positions(ledger: Ledger) -> None:
    stream = ledger.complete_stream()
    first, second = stream[1], stream[2]

    def swap(connection: Connection) -> None:
        for row, position in ((first, -1), (second, first.stream_position), (first, second.stream_position)):
            connection.execute(update(events).where(events.c.event_id == row.event_id).values(stream_position=position))

    ledger.tamper(swap)


def deleted_manifest_row(ledger: Ledger) -> None:
    stream_id = ledger.complete_stream()[0].stream_id
    ledger.tamper(lambda c: c.execute(delete(seal_streams).where(seal_streams.c.stream_id == stream_id)))


def event_moved_outside_its_seals_span(ledger: Ledger) -> None:
    last = stream_of_the_second_seal(ledger)[-1]
    moved = as_utc(last.occurred_at) + timedelta(days=365)
    ledger.tamper(
        lambda c: c.execute(update(events).where(events.c.event_id == last.event_id).values(occurred_at=moved))
    )


def rechain(ledger: Ledger, change: Callable[[dict[str, Any]], str]) -> None:
    """Change the second event of a stream (``change`` edits its record and returns its new hash), then link
    and rehash every later event of the stream, as a forger who can compute hashes would."""
    stream = ledger.complete_stream(skip=1)
    records = [row_to_record(row._mapping) for row in stream]
    records[1]["hash"] = change(records[1])
    for index in range(2, len(records)):
        records[index]["prev_hash"] = records[index - 1]["hash"]
        records[index]["hash"] = compute_hash(records[index])

    def write(connection: Connection) -> None:
        for row, record in zip(stream[1:], records[1:], strict=True):
            values = {key: record[key] for key in ("payload", "prev_hash", "hash")}
            connection.execute(update(events).where(events.c.global_position == row.global_position).values(**values))

    ledger.tamper(write)


def invalid_event_with_its_hash_recomputed(ledger: Ledger) -> None:
    def change(record: dict[str, Any]) -> str:
        record["payload"] = {**record["payload"], "surprise": True}  # no payload model has it
        return compute_hash(record)

    rechain(ledger, change)


def integer_beyond_64_bits_hashed_as_orjson_reads_it(ledger: Ledger) -> None:
    # json.loads (the column's reader) keeps the integer, which has no canonical form: invalid. orjson reads it
    # as a float, whose canonical form the forger hashed: the fast path must not pass it.
    def change(record: dict[str, Any]) -> str:
        record["payload"] = {**record["payload"], "attempt": 2**70}
        return sha256_hex(canonical_json({**record, "payload": {**record["payload"], "attempt": float(2**70)}}))

    rechain(ledger, change)


def orjson_hash(record: dict[str, Any]) -> str:
    """The hash a forger computes over orjson's sorted output as it stands, skipping the canonical float check
    (``canonical._may_differ``): what a fast path that trusted orjson's output would recompute."""
    unhashed = {key: value for key, value in record.items() if key != "hash"}
    return sha256_hex(orjson.dumps(unhashed, option=orjson.OPT_SORT_KEYS))


NUMBER_FIELD = "timeout_seconds"
"""A number field (where a float is valid) of the event ``rechain`` changes, an ``AttemptStarted``."""


def integer_beyond_64_bits_hashed_over_orjson_bytes(ledger: Ledger) -> None:
    # orjson reads 2**70 as a float, valid in a number field, which it writes 1.1805916207174113e+21: a hash
    # over those bytes passes only a fast path that skips the float check. json.loads keeps the integer, which
    # canonical JSON has no form for: invalid.
    def change(record: dict[str, Any]) -> str:
        assert record["event_type"] == "AttemptStarted"
        record["payload"] = {**record["payload"], NUMBER_FIELD: 2**70}
        return orjson_hash({**record, "payload": {**record["payload"], NUMBER_FIELD: float(2**70)}})

    rechain(ledger, change)


def float_to_rewrite_hashed_over_orjson_bytes(ledger: Ledger) -> None:
    # A valid number written 2.0 by orjson, 2 by ECMAScript: the canonical hash differs from the forger's.
    def change(record: dict[str, Any]) -> str:
        assert record["event_type"] == "AttemptStarted"
        record["payload"] = {**record["payload"], NUMBER_FIELD: 2.0}
        return orjson_hash(record)

    rechain(ledger, change)


def float_to_rewrite_with_its_hash_recomputed(ledger: Ledger) -> None:
    def change(record: dict[str, Any]) -> str:
        record["payload"] = {**record["payload"], "attempt": 1e-7}
        return compute_hash(record)

    rechain(ledger, change)


TAMPERINGS: list[Tampering] = [
    changed_payload_byte,
    deleted_middle_event,
    deleted_terminal_event,
    deleted_stream,
    naively_forged_event,
    forged_stream_with_a_valid_chain,
    stream_rewritten_with_a_recomputed_chain,
    reordered_positions,
    deleted_manifest_row,
    event_moved_outside_its_seals_span,
    invalid_event_with_its_hash_recomputed,
    integer_beyond_64_bits_hashed_as_orjson_reads_it,
    integer_beyond_64_bits_hashed_over_orjson_bytes,
    float_to_rewrite_hashed_over_orjson_bytes,
    float_to_rewrite_with_its_hash_recomputed,
]

_AGE = re.compile(r"\d+(?:\.\d)?[smhd] ago")


def report_of(ledger: Ledger, **options: Any) -> dict[str, Any]:
    """The report's JSON without what differs from run to run (its id and times, the ages of incomplete
    streams)."""
    report = ledger.verify(**options).to_json()
    for key in ("run_id", "started_at", "finished_at", "duration_seconds"):
        report.pop(key)
    report["findings"] = [{**f, "detail": _AGE.sub("_ ago", f["detail"])} for f in report["findings"]]
    return report


def full_validation(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The report of a verify that sends every stream to ``verify_chain``, from the records as the payload
    column's type reads them (what every verify did before the fast path: ``READ_COLUMNS``, no cast to text,
    ``row_to_record``), in this process."""
    with monkeypatch.context() as patch:
        patch.setattr(queries_module, "_STORED_COLUMNS", READ_COLUMNS)
        patch.setattr(verify_module, "_stored_record", lambda row: row_to_record(row._mapping))
        patch.setattr(verify_module, "stored_chain_holds", lambda rows: False)
        patch.setattr(verify_module, "chain_holds", lambda records: False)
        check_seal_content = verify_module.check_seal_content

        def compared_stream_by_stream(*arguments: Any, streams_hold: bool = False) -> None:
            check_seal_content(*arguments, streams_hold=False)

        patch.setattr(verify_module, "check_seal_content", compared_stream_by_stream)
        return report_of(ledger, jobs=1)


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=[t.__name__ for t in TAMPERINGS])
def test_the_fast_path_finds_what_the_full_validation_finds(
    ledger: Ledger, tampering: Tampering, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampering(ledger)

    fast = report_of(ledger, jobs=1)

    assert fast == full_validation(ledger, monkeypatch)
    assert not fast["ok"]


def test_the_forgeries_aimed_at_the_fast_path_are_named(ledger: Ledger) -> None:
    invalid_event_with_its_hash_recomputed(ledger)
    integer_beyond_64_bits_hashed_as_orjson_reads_it(ledger)

    found = report_of(ledger)["findings"]

    invalid = [f for f in found if f["kind"] == "invalid"]
    assert {f["stream_id"] for f in invalid} == {ledger.complete_stream(skip=1)[0].stream_id}
    assert any("not a valid event" in f["detail"] for f in invalid)
    assert any("cannot be canonicalized" in f["detail"] for f in invalid)


def test_an_intact_ledger_passes_the_fast_path_and_the_full_validation_alike(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = report_of(ledger)

    assert fast == full_validation(ledger, monkeypatch)
    assert fast["ok"] and fast["events"] > 0


def test_a_seals_manifest_is_compared_stream_by_stream_only_when_something_is_wrong(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[int] = []
    differences = queries_module.AuditQueries.manifest_differences

    def recorded(self: Any, connection: Any, sealed: Any, sequence: int) -> Any:
        compared.append(sequence)
        return differences(self, connection, sealed, sequence)

    monkeypatch.setattr(queries_module.AuditQueries, "manifest_differences", recorded)
    clean = report_of(ledger, jobs=1)
    assert clean["ok"] and clean["seals"] > 0
    assert compared == []  # every root and count as sealed, every stream's chain holds

    changed_payload_byte(ledger)  # one stream broken: its hash no longer binds its event
    broken = report_of(ledger, jobs=1)
    [tampered] = [tenant for tenant in broken["tenant_results"] if not tenant["ok"]]
    assert len(compared) == tampered["seals"] > 0  # that tenant's seals, each; the other tenant's none


def test_worker_processes_give_the_report_of_one_process(ledger: Ledger) -> None:
    # Two tenants, two workers; a tampered ledger, so that the report has findings to order.
    forged_stream_with_a_valid_chain(ledger)
    changed_payload_byte(ledger)

    assert report_of(ledger, jobs=2) == report_of(ledger, jobs=1)


def test_by_default_only_a_large_ledger_is_verified_in_worker_processes(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], int]] = []
    map_tenants = parallel.map_tenants

    def recorded(work: Any, url: Any, tenants: Any, jobs: int, own: Any = None) -> Any:
        started.append((list(tenants), jobs))
        return map_tenants(work, url, tenants, jobs, own)

    monkeypatch.setattr(verify_module, "map_tenants", recorded)
    small = report_of(ledger, jobs=None)
    assert started == []  # far below PARALLEL_FROM sealed events: this process

    monkeypatch.setattr(verify_module, "PARALLEL_FROM", 1)
    assert report_of(ledger, jobs=None) == small
    [(tenants, jobs)] = started
    assert sorted(tenants) == sorted(TENANTS) and jobs == parallel.default_jobs()


def test_by_default_the_workers_are_the_cores_this_process_may_use_at_most_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 256)  # the host's, which a container does not get
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert parallel.default_jobs() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert parallel.default_jobs() == parallel.DEFAULT_JOBS_CAP
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows: the count is all there is
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert parallel.default_jobs() == 3


def recording_map_tenants(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the jobs of each start of worker processes by the verify."""
    started: list[int] = []
    map_tenants = parallel.map_tenants

    def recorded(work: Any, url: Any, tenants: Any, jobs: int, own: Any = None) -> Any:
        started.append(jobs)
        return map_tenants(work, url, tenants, jobs, own)

    monkeypatch.setattr(verify_module, "map_tenants", recorded)
    return started


def test_a_given_engine_is_verified_in_this_process_whatever_jobs(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker would rebuild it from its URL alone, without the creator or connect_args it was made with.
    started = recording_map_tenants(monkeypatch)
    engine = create_store_engine(ledger.auditor_url)
    try:
        by_engine = verify_ledger(engine, record=False, jobs=2).to_json()
    finally:
        engine.dispose()

    assert started == []
    assert by_engine["ok"] and by_engine["tenants"] == report_of(ledger, jobs=2)["tenants"]
    assert started == [2]  # the same ledger by its URL: in workers


@pytest.mark.parametrize(
    ("url", "in_memory"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file:ledger?mode=memory&cache=shared&uri=true", True),
        ("sqlite:///file:ledger.db?mode=rwc&uri=true", False),
        ("sqlite:////var/lib/ledger.db", False),
        ("postgresql://auditor@db/ledger?application_name=memory", False),
    ],
)
def test_only_an_sqlite_database_in_memory_is_taken_for_one(url: str, in_memory: bool) -> None:
    assert verify_module._in_memory(make_url(url)) is in_memory


@pytest.mark.parametrize(
    "text", ['{"bad', "[" * 100_000 + "]" * 100_000], ids=["truncated", "nested_beyond_the_parsers_depth"]
)
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_payload_that_is_no_json_is_an_invalid_event_named_not_a_crash(
    sqlite_ledger: Ledger, text: str, jobs: int
) -> None:
    stream = sqlite_ledger.complete_stream()
    victim = stream[1]
    sqlite_ledger.tamper(
        lambda c: c.execute(update(events).where(events.c.event_id == victim.event_id).values(payload=literal(text)))
    )

    report = report_of(sqlite_ledger, jobs=jobs)

    in_stream = [f for f in report["findings"] if f["stream_id"] == str(victim.stream_id)]
    assert [(f["kind"], f["severity"], f["event_id"]) for f in in_stream] == [
        ("invalid", "broken", str(victim.event_id))
    ]
    assert "its payload is not readable JSON" in in_stream[0]["detail"]
    assert not report["ok"]
    assert report == report_of(sqlite_ledger, jobs=1)


def vanishing_database(ledger: Ledger, server: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ledger's database vanish once the verify has read its tenants, before its workers start."""
    map_tenants = parallel.map_tenants

    def after_the_database_vanished(work: Any, url: Any, tenants: Any, jobs: int, own: Any = None) -> Any:
        ledger.engine.dispose()
        if ledger.dialect == "postgresql":
            with server.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{make_url(ledger.url).database}" WITH (FORCE)'))
        else:
            Path(str(make_url(ledger.url).database)).unlink()
        return map_tenants(work, url, tenants, jobs, own)

    monkeypatch.setattr(verify_module, "map_tenants", after_the_database_vanished)


def test_a_worker_that_cannot_reach_the_database_exits_3_could_not_check(
    ledger: Ledger,
    _postgres_server: Engine,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vanishing_database(ledger, _postgres_server, monkeypatch)

    code = main(["audit", "verify", "--jobs", "2", "--no-record", "--database-url", ledger.auditor_url])

    err = capsys.readouterr().err
    assert code == 3, err  # 1 would say the ledger is broken: it could not be checked
    assert re.search(r"tenant '[^']+' could not be checked: its worker process failed on the database \(.+\)", err)
    assert "Traceback" not in err
