"""Seal heads kept outside the database catch what a database-wide forger can do to the seals themselves:
the sealer's witness (``audit seal --witness``) and verify's own state (``audit verify --state``).

Each attack of issue 11 (finding 12) is run as it was reported, with the triggers disabled: first shown to
pass a verify that has only the database (exit 0), then failed by the witness and the state (exit 1) and
refused by the real sealer (exit 1, no seal made). Seal and verify run as the least-privilege logins.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, func, insert, select, update

from llm_ledger.audit import SealRefusedError, SigningKey, seal_ledger
from llm_ledger.audit import verify as verify_module
from llm_ledger.audit.heads import HeadLog
from llm_ledger.audit.schema import seal_streams, seals
from llm_ledger.cli import main
from llm_ledger.events import canonical_json, sha256_hex
from llm_ledger.store.schema import events
from tests.audit.conftest import TENANTS, Ledger, wait_until_sealable
from tests.audit.test_tampering import header_of, named, replace_rows, resealed


@dataclass
class Witnessed:
    """A sealed ledger whose sealer keeps a witness, and whose verifier keeps a state, both as they are after
    one clean run each."""

    ledger: Ledger
    key: SigningKey
    witness: Path
    state: Path
    capsys: pytest.CaptureFixture[str]

    def seal(self, *options: str) -> tuple[int, str, str]:
        """``llm-ledger audit seal --witness`` with the sealer's key: status, out, err."""
        wait_until_sealable(self.ledger.url)
        self.capsys.readouterr()
        status = main(
            ["audit", "seal", "--database-url", self.ledger.sealer_url, "--witness", str(self.witness), *options]
        )
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    def verify(self, *options: str) -> tuple[int, dict[str, Any]]:
        """``llm-ledger audit verify --json`` as the auditor: status and report."""
        self.capsys.readouterr()
        arguments = ["audit", "verify", "--database-url", self.ledger.auditor_url, "--json", "--no-record"]
        status = main([*arguments, *options])
        return status, json.loads(self.capsys.readouterr().out)

    def pinned(self) -> list[str]:
        return ["--public-key", self.key.public_key.text()]

    def seal_count(self, tenant_id: str) -> int:
        with self.ledger.engine.connect() as connection:
            query = select(func.count()).select_from(seals).where(seals.c.tenant_id == tenant_id)
            return int(connection.execute(query).scalar_one())


@pytest.fixture
def witnessed(
    ledger: Ledger, signing_key: SigningKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> Iterator[Witnessed]:
    monkeypatch.setenv("LLM_LEDGER_SEAL_KEY", signing_key.text())
    made = Witnessed(ledger, signing_key, tmp_path / "witness.jsonl", tmp_path / "state", capsys)
    made.state.mkdir()
    status, _out, err = made.seal("--adopt")  # the template was sealed before the witness existed
    assert status == 0, err
    status, report = made.verify("--state", str(made.state), *made.pinned())
    assert status == 0, report
    yield made


def tenant_forged_and_unsealed(connection: Connection, ledger: Ledger, tenant_id: str) -> None:
    """Every stream of the tenant rewritten one second later with every hash recomputed, and its seals gone."""
    streams: dict[str, list[Any]] = {}
    for row in ledger.rows(events.c.tenant_id == tenant_id):
        streams.setdefault(row.stream_id, []).append(row)
    for rows in streams.values():
        replace_rows(connection, rows, resealed(rows, header_of(rows[0]), shift=timedelta(seconds=1)))
    connection.execute(delete(seal_streams).where(seal_streams.c.tenant_id == tenant_id))
    connection.execute(delete(seals).where(seals.c.tenant_id == tenant_id))


def test_a_forged_tenant_whose_seals_were_dropped_fails_and_is_not_resealed(witnessed: Witnessed) -> None:
    ledger, tenant = witnessed.ledger, TENANTS[0]
    ledger.tamper(lambda c: tenant_forged_and_unsealed(c, ledger, tenant))
    # What the database alone says: a consistent ledger, merely unsealed.
    status, report = witnessed.verify(*witnessed.pinned())
    assert status == 0 and report["unsealed_events"] > 0

    status, report = witnessed.verify("--witness", str(witnessed.witness), *witnessed.pinned())

    assert status == 1
    gone = named(report["findings"], "seal_head_gone", tenant_id=tenant, seal_sequence=2)
    assert "the database's newest seal is none: seals were removed" in gone["detail"]
    status, report = witnessed.verify("--state", str(witnessed.state))
    assert status == 1
    named(report["findings"], "seal_head_gone", tenant_id=tenant)
    status, _out, err = witnessed.seal()
    assert status == 1 and f"refused: tenant '{tenant}'" in err and "its seals were removed" in err
    assert witnessed.seal_count(tenant) == 0  # the forged history was not signed


def test_dropping_the_newest_seal_and_rewriting_a_stream_of_its_range_fails(witnessed: Witnessed) -> None:
    ledger, tenant = witnessed.ledger, TENANTS[0]
    with ledger.engine.connect() as connection:
        first = connection.execute(select(seals).where(seals.c.tenant_id == tenant, seals.c.sequence == 1)).one()
    stream = next(
        rows
        for rows in _streams(ledger, tenant)
        if min(row.global_position for row in rows) > first.through_position and len(rows) >= 3
    )

    def tamper(connection: Connection) -> None:
        replace_rows(connection, stream, resealed(stream, header_of(stream[0]), shift=timedelta(seconds=5)))
        connection.execute(
            delete(seal_streams).where(seal_streams.c.tenant_id == tenant, seal_streams.c.seal_sequence == 2)
        )
        connection.execute(delete(seals).where(seals.c.tenant_id == tenant, seals.c.sequence == 2))

    ledger.tamper(tamper)
    assert witnessed.verify(*witnessed.pinned())[0] == 0

    status, report = witnessed.verify("--witness", str(witnessed.witness), "--state", str(witnessed.state))

    assert status == 1
    found = report["findings"]
    assert (
        "the database's newest seal is 1" in named(found, "seal_head_gone", tenant_id=tenant, seal_sequence=2)["detail"]
    )
    assert [f["detail"] for f in found if f["kind"] == "seal_head_gone"][1].startswith("the verify state")
    status, _, err = witnessed.seal()
    assert status == 1 and "the database's newest is seal 1: seals were removed" in err
    assert witnessed.seal_count(tenant) == 1


def test_a_stream_forged_after_the_last_seal_and_sealed_by_another_sealer_fails(witnessed: Witnessed) -> None:
    ledger, tenant = witnessed.ledger, TENANTS[0]
    real = ledger.complete_stream(tenant)
    forged = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(seconds=1), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), forged))
    ledger.seal()  # the forger's own sealer: no key, no witness
    assert witnessed.verify()[0] == 0

    status, report = witnessed.verify("--witness", str(witnessed.witness))

    assert status == 1
    unwitnessed = named(report["findings"], "seal_unwitnessed", tenant_id=tenant, seal_sequence=3)
    assert "the sealer did not make it" in unwitnessed["detail"]
    status, _, err = witnessed.seal()
    assert status == 1 and "seal 3 after the recorded head 2 was not made by this sealer" in err
    assert witnessed.seal_count(tenant) == 3


def test_a_deleted_tenant_fails_against_the_witness_and_the_state(witnessed: Witnessed) -> None:
    ledger, tenant = witnessed.ledger, TENANTS[1]

    def tamper(connection: Connection) -> None:
        for table in (events, seal_streams, seals):
            connection.execute(delete(table).where(table.c.tenant_id == tenant))

    ledger.tamper(tamper)
    status, report = witnessed.verify(*witnessed.pinned())
    assert status == 0 and [t["tenant_id"] for t in report["tenant_results"]] == [TENANTS[0]]

    for option, path in (("--witness", witnessed.witness), ("--state", witnessed.state)):
        status, report = witnessed.verify(option, str(path))
        assert status == 1
        gone = named(report["findings"], "tenant_gone", tenant_id=tenant)
        assert "the tenant has no event and no seal left" in gone["detail"]
    status, _, err = witnessed.seal()
    assert status == 1 and f"tenant '{tenant}'" in err


def _streams(ledger: Ledger, tenant_id: str) -> list[list[Any]]:
    streams: dict[str, list[Any]] = {}
    for row in ledger.rows(events.c.tenant_id == tenant_id):
        streams.setdefault(row.stream_id, []).append(row)
    return list(streams.values())


def test_the_sealer_records_each_seal_it_makes_and_verify_passes_with_it(witnessed: Witnessed) -> None:
    ledger = witnessed.ledger
    real = ledger.complete_stream(TENANTS[1])
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))  # as a late spool replay would store them

    status, out, err = witnessed.seal()

    assert status == 0, err
    assert f"{TENANTS[1]}: seal 3 over {len(late)} events" in out
    lines = [json.loads(line) for line in witnessed.witness.read_text().splitlines()]
    assert [(line["tenant_id"], line["sequence"], line["reason"]) for line in lines] == [
        (TENANTS[0], 2, "adopted"),
        (TENANTS[1], 2, "adopted"),
        (TENANTS[1], 3, "sealed"),
    ]
    assert lines[2]["prev"] == lines[1]["entry_hash"] and all(line["signature"] for line in lines)
    status, report = witnessed.verify("--witness", str(witnessed.witness), "--state", str(witnessed.state))
    assert status == 0, report["findings"]
    state = [json.loads(line) for line in (witnessed.state / "verify-state.jsonl").read_text().splitlines()]
    assert [(line["tenant_id"], line["sequence"], line["reason"]) for line in state][-1] == (TENANTS[1], 3, "verified")
    assert state[-1]["seal_hash"] == lines[2]["seal_hash"] and len(state) == len(TENANTS) + 1


def test_a_witness_line_edited_or_removed_fails_verify_and_stops_the_sealer(witnessed: Witnessed) -> None:
    lines = witnessed.witness.read_text().splitlines()
    witnessed.witness.write_text(lines[1] + "\n")  # the first line removed

    status, report = witnessed.verify("--witness", str(witnessed.witness))

    assert status == 1
    assert [f["kind"] for f in report["findings"] if f["severity"] == "broken"] == ["head_log_chain_broken"]
    status, _, err = witnessed.seal()
    assert status == 1 and "the witness is not as this sealer wrote it" in err


def test_a_seal_the_sealer_signed_but_did_not_record_is_recovered(witnessed: Witnessed) -> None:
    # A sealer stopped between its commit and its witness's append: its seal is signed, and chains on.
    ledger = witnessed.ledger
    real = ledger.complete_stream(TENANTS[0])
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))
    ledger.seal(witnessed.key)  # signed, not witnessed
    status, report = witnessed.verify("--witness", str(witnessed.witness))
    assert status == 0
    assert [f["kind"] for f in report["findings"]] == ["seal_not_witnessed_yet"]

    status, _, err = witnessed.seal()

    assert status == 0, err
    assert json.loads(witnessed.witness.read_text().splitlines()[-1])["reason"] == "recovered"
    status, report = witnessed.verify("--witness", str(witnessed.witness), *witnessed.pinned())
    assert status == 0 and report["findings"] == []


def test_a_new_witness_on_a_sealed_ledger_needs_adopt_and_adopt_only_starts_one(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    witness = tmp_path / "witness"
    witness.mkdir()
    arguments = ["audit", "seal", "--database-url", ledger.sealer_url, "--witness", str(witness)]

    assert main(arguments) == 1
    assert "start it with `llm-ledger audit seal --adopt` once" in capsys.readouterr().err
    assert main([*arguments, "--adopt"]) == 0
    assert len((witness / "witness.jsonl").read_text().splitlines()) == len(TENANTS)
    assert main([*arguments, "--adopt"]) == 1
    assert "already records heads" in capsys.readouterr().err
    with pytest.raises(SealRefusedError, match="already records heads"):
        seal_ledger(ledger.sealer_url, witness=witness, adopt=True)


def test_verify_needs_an_existing_witness(ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["audit", "verify", "--database-url", ledger.auditor_url, "--witness", str(tmp_path / "none.jsonl")])
    assert status == 2
    assert "no witness at" in capsys.readouterr().err


def test_the_witness_and_the_state_may_come_from_the_environment(
    witnessed: Witnessed, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, tenant = witnessed.ledger, TENANTS[1]
    ledger.tamper(lambda c: c.execute(delete(seals).where(seals.c.tenant_id == tenant, seals.c.sequence == 2)))
    monkeypatch.setenv("LLM_LEDGER_VERIFY_WITNESS", str(witnessed.witness))
    status, report = witnessed.verify()
    assert status == 1 and named(report["findings"], "seal_head_gone", tenant_id=tenant)
    monkeypatch.delenv("LLM_LEDGER_VERIFY_WITNESS")
    monkeypatch.setenv("LLM_LEDGER_VERIFY_STATE", str(witnessed.state))
    assert witnessed.verify()[0] == 1
    monkeypatch.setenv("LLM_LEDGER_SEAL_WITNESS", str(witnessed.witness))
    wait_until_sealable(ledger.url)
    assert main(["audit", "seal", "--database-url", ledger.sealer_url]) == 1


def test_two_sealers_sharing_a_witness_take_turns(witnessed: Witnessed) -> None:
    ledger = witnessed.ledger
    real = ledger.complete_stream(TENANTS[0])
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))
    wait_until_sealable(ledger.url)
    start = threading.Barrier(2)

    def seal_at_once(_: int) -> list[Any]:
        start.wait()
        return seal_ledger(ledger.sealer_url, signing_key=witnessed.key, witness=witnessed.witness)

    with ThreadPoolExecutor(2) as pool:
        made = [seal for seals_made in pool.map(seal_at_once, range(2)) for seal in seals_made]

    assert [(seal.tenant_id, seal.sequence) for seal in made] == [(TENANTS[0], 3)]
    reasons = [json.loads(line)["reason"] for line in witnessed.witness.read_text().splitlines()]
    assert reasons == ["adopted", "adopted", "sealed"]
    assert witnessed.verify("--witness", str(witnessed.witness), *witnessed.pinned())[0] == 0


def test_a_witness_directory_may_be_named_before_it_exists(
    ledger: Ledger, signing_key: SigningKey, tmp_path: Path
) -> None:
    ledger.seal(signing_key, witness=f"{tmp_path / 'new'}/", adopt=True)
    assert len((tmp_path / "new" / "witness.jsonl").read_text().splitlines()) == len(TENANTS)


def test_the_sealer_does_not_extend_a_head_whose_row_was_edited_under_its_hash(witnessed: Witnessed) -> None:
    # The stored seal_hash is still the recorded one, but the row's range (where the next seal starts) is not
    # what was sealed: extending it would sign a chain the sealer did not write.
    ledger, tenant = witnessed.ledger, TENANTS[0]
    real = ledger.complete_stream(tenant)
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)

    def tamper(connection: Connection) -> None:
        connection.execute(insert(events), late)
        newest = connection.execute(select(func.max(events.c.global_position))).scalar_one()
        connection.execute(
            update(seals).where(seals.c.tenant_id == tenant, seals.c.sequence == 2).values(through_position=newest)
        )

    ledger.tamper(tamper)

    status, _, err = witnessed.seal()

    assert status == 1 and f"refused: tenant '{tenant}'" in err
    assert "seal 2's fields do not give its hash" in err
    assert witnessed.seal_count(tenant) == 2


def test_verify_does_not_remember_heads_checked_against_a_broken_witness(witnessed: Witnessed) -> None:
    # A head the tenant reached is only as good as the witness it was held against: with that witness broken,
    # the state keeps the heads it had, and the next run compares with them again.
    ledger = witnessed.ledger
    real = ledger.complete_stream(TENANTS[0])
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))
    ledger.seal(witnessed.key)  # the tenant's head moves to seal 3
    lines = witnessed.witness.read_text().splitlines()
    witnessed.witness.write_text(lines[1] + "\n")  # the first line removed
    state = witnessed.state / "verify-state.jsonl"
    before = state.read_bytes()

    status, report = witnessed.verify("--witness", str(witnessed.witness), "--state", str(witnessed.state))

    assert status == 1 and named(report["findings"], "head_log_chain_broken")
    assert state.read_bytes() == before


def test_a_seal_the_sealer_records_while_verify_runs_is_not_taken_for_a_forgery(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a seal key, a seal missing from the witness is a forgery; verify must therefore hold each chain
    # against the witness as it is after the chain was read, not as it was when verify started (the compose
    # stack's sealer seals every 5 minutes, a verify of a large ledger takes longer).
    witness = tmp_path / "witness.jsonl"
    ledger.seal(witness=witness, adopt=True)
    real = ledger.complete_stream(TENANTS[0])
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))
    wait_until_sealable(ledger.url)
    reads = []

    class SealedAfterTheFirstRead(HeadLog):
        @classmethod
        def read(cls, path: Path, public_key: Any = None) -> HeadLog:
            log = HeadLog.read(path, public_key)
            reads.append(path)
            if len(reads) == 1:  # the sealer's round, just after verify read its witness
                assert [seal.sequence for seal in seal_ledger(ledger.sealer_url, witness=witness)] == [3]
            return log

    monkeypatch.setattr(verify_module, "HeadLog", SealedAfterTheFirstRead)

    report = ledger.verify(witness=witness)

    assert report.ok, [str(finding) for finding in report.findings]
    assert [finding.kind for finding in report.findings] == []


def test_a_refused_tenant_id_is_shown_escaped_once_as_verify_shows_it(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A tenant the forger inserted and sealed with a sealer of their own: the real sealer refuses it, and
    # names it as `audit verify` does (one escape per character), not as Python's repr escaped once more.
    witness = tmp_path / "witness.jsonl"
    ledger.seal(witness=witness, adopt=True)
    evil = "x\nrefused: nothing\\"
    copies = [
        {c.name: getattr(row, c.name) for c in events.c if c.name not in ("global_position", "recorded_at", "tx_id")}
        | {"tenant_id": evil, "event_id": str(uuid.uuid4())}
        for row in ledger.complete_stream()
    ]
    ledger.tamper(lambda c: c.execute(insert(events), copies))
    ledger.seal(tenant_id=evil)  # the forger's own sealer: no witness
    capsys.readouterr()

    status = main(["audit", "seal", "--database-url", ledger.sealer_url, "--witness", str(witness)])

    err = capsys.readouterr().err
    assert status == 1
    assert "refused: tenant 'x\\nrefused: nothing\\\\': the database has seals up to 1" in err
    assert not [line for line in err.splitlines() if line.startswith("refused: nothing")]


def test_follow_with_adopt_still_adopts_after_a_first_round_without_the_database(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The database restarting as the sealer starts: --adopt must stand until a round reaches it, instead of
    # every later round refusing with "start it with --adopt".
    import time

    import llm_ledger.audit as audit
    from llm_ledger.store import StoreUnavailableError

    witness = tmp_path / "witness.jsonl"
    real_seal_ledger, rounds = audit.seal_ledger, []

    def first_round_unreachable(*args: Any, **options: Any) -> list[Any]:
        rounds.append(options["adopt"])
        if len(rounds) == 1:
            raise StoreUnavailableError("the database is restarting (a test's outage)")
        return real_seal_ledger(*args, **options)

    def sleep(_: float) -> None:
        if len(rounds) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(audit, "seal_ledger", first_round_unreachable)
    monkeypatch.setattr(time, "sleep", sleep)
    arguments = ["audit", "seal", "--database-url", ledger.sealer_url, "--witness", str(witness)]

    assert main([*arguments, "--adopt", "--follow", "--interval", "1"]) == 130

    assert "refused" not in capsys.readouterr().err
    assert rounds == [True, True, False]
    assert [json.loads(line)["reason"] for line in witness.read_text().splitlines()] == ["adopted"] * len(TENANTS)


def newest_seal_replaced(connection: Connection, ledger: Ledger, tenant_id: str) -> None:
    """A stream of the tenant's newest seal (2) rewritten with its hashes recomputed, and that seal dropped,
    for the forger's own sealer to make again over the rewritten range."""
    with ledger.engine.connect() as reading:
        first = reading.execute(select(seals).where(seals.c.tenant_id == tenant_id, seals.c.sequence == 1)).one()
    stream = next(
        rows for rows in _streams(ledger, tenant_id) if min(r.global_position for r in rows) > first.through_position
    )
    replace_rows(connection, stream, resealed(stream, header_of(stream[0]), shift=timedelta(0)))
    connection.execute(
        delete(seal_streams).where(seal_streams.c.tenant_id == tenant_id, seal_streams.c.seal_sequence == 2)
    )
    connection.execute(delete(seals).where(seals.c.tenant_id == tenant_id, seals.c.sequence == 2))


@pytest.mark.parametrize("forger_signs", [False, True], ids=["unsigned", "signed-with-own-key"])
def test_the_newest_seal_recomputed_over_a_rewritten_stream_is_a_replaced_head(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str], forger_signs: bool
) -> None:
    # No seal key anywhere (the compose stack's default): the witness and the state are unsigned, and the
    # forger's seal 2 is as valid a seal as the real one was, but not the one they recorded.
    witness, state = tmp_path / "witness.jsonl", tmp_path / "state.jsonl"
    ledger.seal(witness=witness, adopt=True)
    assert ledger.verify(state=state).ok
    tenant = TENANTS[0]
    ledger.tamper(lambda c: newest_seal_replaced(c, ledger, tenant))
    ledger.seal(SigningKey.generate() if forger_signs else None, tenant_id=tenant)  # the forger's sealer
    assert ledger.verify().ok

    report = ledger.verify(witness=witness, state=state)

    assert not report.ok
    replaced = [f for f in report.findings if f.kind == "seal_head_replaced"]
    assert [(f.tenant_id, f.seal_sequence) for f in replaced] == [(tenant, 2), (tenant, 2)]
    assert "the chain up to it was replaced" in replaced[0].detail
    assert state.read_text().count("\n") == len(TENANTS)  # the forged head is not remembered
    with pytest.raises(SealRefusedError, match="the chain was replaced"):
        ledger.seal(witness=witness)


def test_a_witness_line_edited_with_or_without_its_hash_recomputed_is_named(witnessed: Witnessed) -> None:
    lines = [json.loads(line) for line in witnessed.witness.read_text().splitlines()]
    edited = {**lines[-1], "sequence": 1}
    witnessed.witness.write_text("".join(canonical_json(line).decode() + "\n" for line in [*lines[:-1], edited]))

    status, report = witnessed.verify("--witness", str(witnessed.witness))

    assert status == 1 and named(report["findings"], "head_log_edited", tenant_id=edited["tenant_id"])
    fields = {k: v for k, v in edited.items() if k not in ("entry_hash", "public_key", "signature")}
    rehashed = {**edited, "entry_hash": sha256_hex(canonical_json(fields))}
    witnessed.witness.write_text("".join(canonical_json(line).decode() + "\n" for line in [*lines[:-1], rehashed]))

    status, report = witnessed.verify("--witness", str(witnessed.witness))

    assert status == 1 and named(report["findings"], "head_log_signature_invalid", tenant_id=edited["tenant_id"])
    status, _, err = witnessed.seal()
    assert status == 1 and "the witness is not as this sealer wrote it" in err


def test_an_unsigned_witness_cut_after_its_last_seal_does_not_pass_that_seal(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without a seal key, a seal the witness does not hold cannot be the sealer's: the witness cut at a line
    # boundary (a valid, shorter chain) leaves that seal unwitnessed, for verify and the sealer alike.
    witness = tmp_path / "witness.jsonl"
    ledger.seal(witness=witness, adopt=True)
    real = ledger.complete_stream(TENANTS[0])
    late = resealed(real, header_of(real[0], uuid.uuid4()), shift=timedelta(0), ids=True)
    ledger.tamper(lambda c: c.execute(insert(events), late))
    assert [seal.sequence for seal in ledger.seal(witness=witness)] == [3]
    lines = witness.read_text().splitlines(keepends=True)
    witness.write_text("".join(lines[:-1]))

    report = ledger.verify(witness=witness)

    assert not report.ok and not report.outside_findings
    assert [(f.kind, f.tenant_id, f.seal_sequence) for f in report.findings if f.severity == "broken"] == [
        ("seal_unwitnessed", TENANTS[0], 3)
    ]
    with pytest.raises(SealRefusedError, match="seal 3 after the recorded head 2 was not made by this sealer"):
        ledger.seal(witness=witness)
