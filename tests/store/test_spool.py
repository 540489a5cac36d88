"""The spool (the writer's journal) on damaged disks: a flipped bit sets aside one record, a truncation is
counted, and evidence is never overwritten."""

from __future__ import annotations

import logging
import struct
import uuid
from pathlib import Path

import orjson
import pytest

from llm_ledger.events import Event
from llm_ledger.store.spool import Spool, encode_batch
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import BufferedWriter
from tests.store.workload import make_events

_HEADER = struct.Struct(">4sQQIII")  # the record header spool.py documents


def _journal(directory: Path, events: list[Event], per_record: int) -> list[list[Event]]:
    """Write ``events`` into a spool, ``per_record`` to a record, as a writer that stopped would leave it."""
    spool = Spool(directory)
    batches = [events[i : i + per_record] for i in range(0, len(events), per_record)]
    for batch in batches:
        spool.append(encode_batch([orjson.dumps(e.to_record()) for e in batch]), len(batch))
    spool.close()
    return batches


def _record_offsets(segment: Path) -> list[tuple[int, int]]:
    """(offset, size) of each record of an intact segment."""
    data, offsets, position = segment.read_bytes(), [], 0
    while position < len(data):
        length = _HEADER.unpack_from(data, position)[4]
        offsets.append((position, _HEADER.size + length))
        position += _HEADER.size + length
    return offsets


def _replay(url: str, directory: Path) -> BufferedWriter:
    writer = BufferedWriter(EventStore(url, role="llm_ledger_writer"), directory)
    assert writer.wait_stored(60), "the spool is replayed"
    writer.close()
    return writer


def _stored_ids(url: str, tenant: str) -> set[str]:
    return {str(e.event_id) for e in EventStore(url).read_tenant(tenant)}


def _ids(batches: list[list[Event]]) -> set[str]:
    return {str(e.event_id) for batch in batches for e in batch}


@pytest.fixture
def writer_url(ledger_login) -> str:  # type: ignore[no-untyped-def]
    url: str = ledger_login("llm_ledger_writer", "llm_ledger_ingest")
    return url


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


def test_a_flipped_bit_sets_aside_only_its_record_and_the_intact_ones_after_it_are_replayed(
    writer_url: str, postgres_migrated_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    batches = _journal(spool, make_events(12, tenant=tenant), per_record=4)
    segment = next(spool.glob("spool-*.log"))
    first_offset, first_size = _record_offsets(segment)[0]
    data = bytearray(segment.read_bytes())
    data[first_offset + _HEADER.size + 40] ^= 0x10  # one bit inside the first record's body
    damaged = bytes(data[first_offset : first_offset + first_size])
    segment.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")

    writer = _replay(writer_url, spool)

    assert _stored_ids(postgres_migrated_url, tenant) == _ids(batches[1:]), "every intact record is replayed"
    torn = list(spool.glob("*.torn"))
    assert [path.read_bytes() for path in torn] == [damaged], "the damaged record, and only it, is kept aside"
    assert writer.stats.lost == len(batches[0])
    assert any(f"lost 1 batch(es), {len(batches[0])} event(s)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("cut", ["the last record", "everything"])
def test_a_truncated_segment_is_reported_with_what_it_lost(
    cut: str, writer_url: str, postgres_migrated_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, spool = _tenant(), tmp_path / "spool"
    batches = _journal(spool, make_events(10, tenant=tenant), per_record=5)
    segment = next(spool.glob("spool-*.log"))
    last_offset = _record_offsets(segment)[-1][0]
    kept = batches[:-1] if cut == "the last record" else []
    with open(segment, "r+b") as file:
        file.truncate(last_offset if cut == "the last record" else 0)  # at a record boundary: no torn bytes
    caplog.set_level(logging.ERROR, logger="llm_ledger.store")

    writer = _replay(writer_url, spool)

    lost = sum(len(batch) for batch in batches) - sum(len(batch) for batch in kept)
    assert _stored_ids(postgres_migrated_url, tenant) == _ids(kept)
    assert writer.stats.lost == lost, "the loss is counted in events"
    records = len(batches) - len(kept)
    assert any(f"lost {records} batch(es), {lost} event(s)" in r.getMessage() for r in caplog.records)


def test_set_aside_files_are_never_overwritten_and_segment_numbers_never_restart(
    writer_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    evidence: dict[str, bytes] = {}
    segments: list[str] = []
    for _ in range(2):  # two runs, each leaving a damaged first record at the same offset
        _journal(spool, make_events(4, tenant=_tenant()), per_record=2)
        segment = sorted(spool.glob("spool-*.log"))[-1]
        segments.append(segment.name)
        data = bytearray(segment.read_bytes())
        data[_HEADER.size + 10] ^= 0x01
        segment.write_bytes(bytes(data))
        _replay(writer_url, spool)
        for path in spool.glob("*.torn"):
            evidence.setdefault(path.name, path.read_bytes())
        assert not list(spool.glob("spool-*.log")), "the replayed segment is removed"

    assert segments[0] != segments[1], "the second run's segment does not take the first one's number"
    assert len(evidence) == 2, "two damaged records, two files"
    assert {path.name: path.read_bytes() for path in spool.glob("*.torn")} == evidence, "none overwritten"
