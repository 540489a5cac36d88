"""Tampering by someone who can switch the append-only triggers off (a PostgreSQL superuser; anyone with
the SQLite file) is detected, and the report names the stream and event; the CLI exits 1."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Connection, delete, insert, select, text, update

from llm_ledger.audit import SigningKey
from llm_ledger.audit.schema import seal_streams, seals
from llm_ledger.audit.seals import Seal
from llm_ledger.cli import main
from llm_ledger.events import Event, StreamHeader, seal_event
from llm_ledger.store import as_utc
from llm_ledger.store.rows import event_to_row, row_to_event
from llm_ledger.store.schema import events
from tests.audit.conftest import TENANTS, Ledger


def findings_of(ledger: Ledger, capsys: pytest.CaptureFixture[str], *options: str) -> list[dict[str, Any]]:
    """The findings of ``llm-ledger audit verify --json``, which must exit 1."""
    capsys.readouterr()
    status = main(["audit", "verify", "--database-url", ledger.auditor_url, "--json", "--no-record", *options])
    report = json.loads(capsys.readouterr().out)
    assert status == 1, report
    assert report["ok"] is False
    found: list[dict[str, Any]] = report["findings"]
    return found


def named(found: list[dict[str, Any]], kind: str, **where: Any) -> dict[str, Any]:
    """The broken finding of ``kind`` that names ``where`` (stream_id, event_id, ...)."""
    for finding in found:
        is_it = finding["kind"] == kind and finding["severity"] == "broken"
        if is_it and all(finding[key] == value for key, value in where.items()):
            return finding
    raise AssertionError(f"no {kind} finding naming {where} in {[(f['kind'], f['stream_id']) for f in found]}")


def resealed(rows: list[Any], header: StreamHeader, *, shift: timedelta, ids: bool = False) -> list[dict[str, Any]]:
    """The rows' events sealed again as one stream of ``header`` (a recomputed, self-consistent chain), each
    ``shift`` later; with ``ids``, under new event ids."""
    made, prev_hash = [], None
    for row in rows:
        event = row_to_event(row._mapping)
        sealed = seal_event(
            header,
            position=event.stream_position,
            prev_hash=prev_hash,
            payload=event.payload,
            event_type=event.event_type,
            occurred_at=event.occurred_at + shift,
            trace_id=event.trace_id,
            span_id=event.span_id,
            event_id=uuid.uuid4() if ids else event.event_id,
        )
        # sealing builds the concrete event class; it is typed as the EventEnvelope base
        made.append(event_to_row(cast(Event, sealed), 0))
        prev_hash = sealed.hash
    return made


def header_of(row: Any, stream_id: uuid.UUID | None = None) -> StreamHeader:
    return StreamHeader(
        stream_id=stream_id or uuid.UUID(row.stream_id),
        tenant_id=row.tenant_id,
        agent_id=row.agent_id,
        session_id=row.session_id,
        turn_id=row.turn_id,
        step=row.step,
    )


def replace_rows(connection: Connection, rows: list[Any], new_rows: list[dict[str, Any]]) -> None:
    """Overwrite rows in place: the new events keep the old ones' place in the sealed range."""
    for row, values in zip(rows, new_rows, strict=True):
        connection.execute(update(events).where(events.c.global_position == row.global_position).values(**values))


def test_a_changed_payload_byte_is_named(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    victim = ledger.complete_stream()[1]
    payload = dict(victim.payload)
    key = next(k for k, v in sorted(payload.items()) if isinstance(v, str) and v)
    payload[key] = ("X" if payload[key][0] != "X" else "Y") + payload[key][1:]
    ledger.tamper(
        lambda c: c.execute(update(events).where(events.c.event_id == victim.event_id).values(payload=payload))
    )

    found = findings_of(ledger, capsys)

    finding = named(found, "hash_mismatch", stream_id=victim.stream_id, event_id=victim.event_id)
    assert finding["tenant_id"] == victim.tenant_id and finding["stream_position"] == victim.stream_position


def test_a_payload_with_an_integer_too_long_to_read_is_named_not_a_crash(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    # json.loads refuses an integer of over 4,300 digits with a plain ValueError; jsonb stores one.
    victim = ledger.complete_stream()[1]
    huge = '{"attempt": ' + "1" * 5000 + "}"

    def tamper(connection: Connection) -> None:
        value = "CAST(:payload AS jsonb)" if connection.dialect.name == "postgresql" else ":payload"
        statement = f"UPDATE llm_ledger_events SET payload = {value} WHERE event_id = :event_id"
        connection.execute(text(statement), {"payload": huge, "event_id": str(victim.event_id)})

    ledger.tamper(tamper)

    found = findings_of(ledger, capsys)

    assert any(f["stream_id"] == victim.stream_id and f["severity"] == "broken" for f in found), found


def test_a_deleted_event_in_the_middle_is_named_by_chain_and_seal(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = ledger.complete_stream()
    victim = stream[1]
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.event_id == victim.event_id)))

    found = findings_of(ledger, capsys)

    named(found, "position_gap", stream_id=victim.stream_id, event_id=stream[2].event_id)
    lost = named(found, "sealed_events_missing", stream_id=victim.stream_id, stream_position=1)
    assert "lost sealed position(s) 1 " in lost["detail"]


def test_a_deleted_terminal_event_is_missing_not_merely_incomplete(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = ledger.complete_stream()
    terminal = stream[-1]
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.event_id == terminal.event_id)))

    found = findings_of(ledger, capsys)

    named(found, "sealed_events_missing", stream_id=terminal.stream_id, stream_position=terminal.stream_position)
    # Without the seal it would look like a call that died: it is still listed as such.
    assert any(f["kind"] == "incomplete" and f["stream_id"] == terminal.stream_id for f in found)


def test_a_deleted_stream_is_named_gone(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    stream_id = ledger.complete_stream()[0].stream_id
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.stream_id == stream_id)))

    found = findings_of(ledger, capsys)

    gone = named(found, "sealed_stream_gone", stream_id=stream_id)
    assert "stream is gone" in gone["detail"]


def test_a_naively_forged_event_is_named(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    stream = ledger.complete_stream()
    forged = {c.name: getattr(stream[-1], c.name) for c in events.c if c.name not in ("global_position", "recorded_at")}
    forged.update(event_id=str(uuid.uuid4()), stream_position=stream[-1].stream_position + 1)
    ledger.tamper(lambda c: c.execute(insert(events).values(**forged)))

    found = findings_of(ledger, capsys)

    named(found, "hash_mismatch", stream_id=forged["stream_id"], event_id=forged["event_id"])
    named(found, "several_terminals", event_id=forged["event_id"])


def test_a_forged_stream_with_a_valid_chain_in_a_sealed_range_is_named(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    # The forger overwrites a real stream's rows (keeping their place in the sealed range) with a stream of
    # their own making, every hash recomputed: the chain check alone sees nothing wrong.
    real = ledger.complete_stream()
    forged = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(seconds=1), ids=True)
    ledger.tamper(lambda c: replace_rows(c, real, forged))

    found = findings_of(ledger, capsys)

    assert not [f for f in found if f["stream_id"] == forged[0]["stream_id"] and f["kind"] == "hash_mismatch"]
    named(found, "sealed_stream_gone", stream_id=real[0].stream_id)
    for row in forged:
        named(found, "event_inserted", stream_id=row["stream_id"], event_id=row["event_id"])


def test_a_stream_rewritten_with_a_recomputed_chain_is_named(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = ledger.complete_stream()
    rewritten = resealed(stream, header_of(stream[0]), shift=timedelta(seconds=5))
    ledger.tamper(lambda c: replace_rows(c, stream, rewritten))

    found = findings_of(ledger, capsys)

    assert not [f for f in found if f["kind"] in ("hash_mismatch", "prev_hash_mismatch")]
    named(found, "stream_rewritten", stream_id=stream[0].stream_id, event_id=stream[-1].event_id)
    named(found, "seal_root_mismatch")


def test_reordered_positions_are_named(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    stream = ledger.complete_stream()
    first, second = stream[1], stream[2]

    def swap(connection: Connection) -> None:
        for row, position in ((first, -1), (second, first.stream_position), (first, second.stream_position)):
            connection.execute(update(events).where(events.c.event_id == row.event_id).values(stream_position=position))

    ledger.tamper(swap)

    found = findings_of(ledger, capsys)

    named(found, "hash_mismatch", stream_id=first.stream_id, event_id=first.event_id)
    named(found, "hash_mismatch", stream_id=first.stream_id, event_id=second.event_id)


def test_a_deleted_seal_is_named(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    ledger.tamper(lambda c: c.execute(delete(seals).where(seals.c.tenant_id == TENANTS[0], seals.c.sequence == 1)))

    found = findings_of(ledger, capsys)

    missing = named(found, "seal_missing", tenant_id=TENANTS[0], seal_sequence=2)
    assert "seal(s) 1 before this one are gone" in missing["detail"]


def test_an_edited_seal_is_named(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    ledger.tamper(
        lambda c: c.execute(
            update(seals).where(seals.c.tenant_id == TENANTS[0], seals.c.sequence == 1).values(event_count=1)
        )
    )

    found = findings_of(ledger, capsys)

    named(found, "seal_hash_mismatch", tenant_id=TENANTS[0], seal_sequence=1)
    named(found, "seal_count_mismatch", tenant_id=TENANTS[0], seal_sequence=1)


def test_a_seal_edited_with_its_hash_recomputed_breaks_the_next_link_and_its_signature(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    with ledger.engine.connect() as connection:
        row = connection.execute(select(seals).where(seals.c.tenant_id == TENANTS[0], seals.c.sequence == 1)).one()
    seal = Seal.from_row(row)
    forged = dataclasses.replace(seal, event_count=seal.event_count - 1)
    new_hash = forged.computed_hash()
    ledger.tamper(
        lambda c: c.execute(
            update(seals)
            .where(seals.c.tenant_id == TENANTS[0], seals.c.sequence == 1)
            .values(event_count=forged.event_count, seal_hash=new_hash)
        )
    )

    found = findings_of(ledger, capsys)

    named(found, "seal_link_broken", tenant_id=TENANTS[0], seal_sequence=2)
    named(found, "seal_signature_invalid", tenant_id=TENANTS[0], seal_sequence=1)


def test_a_deleted_manifest_row_is_named(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    stream_id = ledger.complete_stream()[0].stream_id
    ledger.tamper(lambda c: c.execute(delete(seal_streams).where(seal_streams.c.stream_id == stream_id)))

    found = findings_of(ledger, capsys)

    named(found, "manifest_altered")
    assert any(f["kind"] == "event_inserted" and f["stream_id"] == stream_id for f in found)


def test_seals_signed_by_another_key_fail_when_the_key_is_pinned(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    other = SigningKey.generate().public_key.text()

    found = findings_of(ledger, capsys, "--public-key", other)

    assert {(f["tenant_id"], f["seal_sequence"]) for f in found if f["kind"] == "seal_signature_invalid"} == {
        (tenant, sequence) for tenant in TENANTS for sequence in (1, 2)
    }


def test_an_unsigned_seal_fails_when_the_key_is_pinned(
    ledger: Ledger, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = ledger.complete_stream()
    late = resealed(stream, header_of(stream[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))
    ledger.seal()  # no key

    found = findings_of(ledger, capsys, "--public-key", signing_key.public_key.text())

    named(found, "seal_unsigned", tenant_id=TENANTS[0], seal_sequence=3)
    assert not [f for f in found if f["kind"] != "seal_unsigned"]


def test_a_tenant_whose_every_event_was_deleted_is_still_verified_by_its_seals(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    streams = {row.stream_id for row in ledger.rows(events.c.tenant_id == TENANTS[1])}
    ledger.tamper(lambda c: c.execute(delete(events).where(events.c.tenant_id == TENANTS[1])))

    found = findings_of(ledger, capsys)

    assert {f["stream_id"] for f in found if f["kind"] == "sealed_stream_gone"} == streams
    assert all(f["tenant_id"] == TENANTS[1] for f in found if f["severity"] == "broken")


def stream_of_the_second_seal(ledger: Ledger, tenant_id: str = TENANTS[0]) -> list[Any]:
    """A complete stream whose every event lies in the tenant's second seal."""
    with ledger.engine.connect() as connection:
        first = connection.execute(select(seals).where(seals.c.tenant_id == tenant_id, seals.c.sequence == 1)).one()
    streams: dict[str, list[Any]] = {}
    for row in ledger.rows(events.c.tenant_id == tenant_id):
        streams.setdefault(row.stream_id, []).append(row)
    return next(
        rows
        for rows in streams.values()
        if len(rows) >= 3
        and min(row.global_position for row in rows) > first.through_position
        and rows[-1].event_type in ("ExecutionSucceeded", "ExecutionFailed")
    )


def test_since_cannot_be_evaded_by_moving_a_tampered_stream_back_in_time(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    # A byte changed (its hash column left alone, so the seal's root still matches), and the stream's times
    # moved back before --since: selected by time alone, its chain would never be checked.
    stream = stream_of_the_second_seal(ledger)
    since = min(as_utc(row.occurred_at) for row in stream)
    victim = stream[1]
    payload = dict(victim.payload)
    key = next(k for k, v in sorted(payload.items()) if isinstance(v, str) and v)
    payload[key] = ("X" if payload[key][0] != "X" else "Y") + payload[key][1:]

    def tamper(connection: Connection) -> None:
        connection.execute(update(events).where(events.c.event_id == victim.event_id).values(payload=payload))
        for row in stream:
            moved = as_utc(row.occurred_at) - timedelta(days=30)
            connection.execute(update(events).where(events.c.event_id == row.event_id).values(occurred_at=moved))

    ledger.tamper(tamper)

    found = findings_of(ledger, capsys, "--since", since.isoformat())

    named(found, "hash_mismatch", stream_id=victim.stream_id, event_id=victim.event_id)
    for row in stream:
        outside = named(found, "occurred_at_outside_seal", event_id=row.event_id, seal_sequence=2)
        assert "outside the seal's recorded span" in outside["detail"]


def test_an_event_moved_outside_its_seals_time_span_is_named(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    # The seal recorded when its first and last events occurred: an event a year later is not one it sealed.
    last = stream_of_the_second_seal(ledger)[-1]
    moved = as_utc(last.occurred_at) + timedelta(days=365)
    ledger.tamper(
        lambda c: c.execute(update(events).where(events.c.event_id == last.event_id).values(occurred_at=moved))
    )

    found = findings_of(ledger, capsys)

    named(found, "occurred_at_outside_seal", stream_id=last.stream_id, event_id=last.event_id, seal_sequence=2)


def test_a_tenant_id_cannot_forge_lines_of_the_text_report(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    # Stored by someone who can write the table: a tenant id that would print a clean verdict and clear the
    # screen. Its events fail (the tenant is in their hashes); the report must show it as one escaped value.
    evil = "x\nOK: 0 tenants, 0 streams checked\x1b[2J\r\u202e"
    stream = ledger.complete_stream()
    copies = [
        {c.name: getattr(row, c.name) for c in events.c if c.name not in ("global_position", "recorded_at", "tx_id")}
        | {"tenant_id": evil, "event_id": str(uuid.uuid4())}
        for row in stream
    ]
    ledger.tamper(lambda c: c.execute(insert(events), copies))
    capsys.readouterr()

    status = main(["audit", "verify", "--database-url", ledger.auditor_url, "--no-record"])

    out = capsys.readouterr().out
    assert status == 1
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and evil not in out
    assert not [line for line in out.splitlines() if line.startswith("OK: ")]
    shown = "x\\nOK: 0 tenants, 0 streams checked\\x1b[2J\\r\\u202e"
    assert f"{shown}: BROKEN;" in out and f"tenant {shown}, stream {stream[0].stream_id}" in out
