"""A ledger as the product leaves it verifies clean; what is only a fact (a call that died, events not
sealed yet) is reported without failing the run."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from llm_ledger.audit import Seal, SigningKey, parse_since, seal_ledger, verify_ledger
from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.audit.schema import seals
from llm_ledger.cli import main
from llm_ledger.demo.workload import run_workload
from llm_ledger.events import Event, StreamHeader, seal_event
from llm_ledger.store import as_utc, create_store_engine, migrate
from tests.audit.conftest import TENANTS, Ledger, seal_all, store_events, wait_until_sealable


def started_event(recorded: list[Event], header: StreamHeader, occurred_at: datetime) -> Event:
    """The first event of a new stream, with a recorded ExecutionStarted's payload."""
    payload = next(event.payload for event in recorded if event.event_type == "ExecutionStarted")
    sealed = seal_event(
        header, position=0, prev_hash=None, payload=payload, event_type="ExecutionStarted", occurred_at=occurred_at
    )
    # sealing builds the concrete event class; it is typed as the EventEnvelope base
    return cast(Event, sealed)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_ledger_url(request: pytest.FixtureRequest, _create_postgres_database: Callable[[], str]) -> str:
    url = _create_postgres_database() if request.param == "postgresql" else request.getfixturevalue("sqlite_url")
    migrate.upgrade(url)
    return url


def test_the_demo_workload_sealed_verifies_clean_with_the_pinned_key(
    empty_ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_workload(empty_ledger_url, sessions=3, latency_scale=0.01)
    key = SigningKey.generate()
    made = seal_all(empty_ledger_url, key)
    assert made and all(seal.signature for seal in made)

    status = main(["audit", "verify", "--database-url", empty_ledger_url, "--public-key", key.public_key.text()])

    out = capsys.readouterr().out
    assert status == 0, out
    assert out.splitlines()[-3].startswith("OK: ")
    assert all(seal.seal_hash in out for seal in made)  # the latest seal hashes, to keep elsewhere


def test_verify_json_counts_every_stream_event_and_seal(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["audit", "verify", "--database-url", ledger.auditor_url, "--json"])

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    rows = ledger.rows()
    assert report["ok"] is True
    assert report["tenants"] == len(TENANTS)
    assert report["events"] == len(rows)
    assert report["streams"] == len({row.stream_id for row in rows})
    assert report["seals"] == 2 * len(TENANTS)
    assert report["unsealed_events"] == 0 and report["findings"] == []


def test_a_stream_without_terminal_event_is_incomplete_with_its_age_and_does_not_fail(
    ledger: Ledger, recorded: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    # A process that died mid-call, three hours ago: its stream stops after ExecutionStarted.
    header = StreamHeader(stream_id=uuid.uuid4(), tenant_id=TENANTS[1], agent_id="support", session_id="s")
    store_events(ledger.url, [started_event(recorded, header, datetime.now(UTC) - timedelta(hours=3))])

    status = main(["audit", "verify", "--database-url", ledger.auditor_url])

    out = capsys.readouterr().out
    assert status == 0, out
    line = next(line for line in out.splitlines() if line.startswith("INCOMPLETE"))
    assert str(header.stream_id) in line and "3.0h ago" in line and "ExecutionStarted" in line
    report = ledger.verify()
    assert report.ok and report.incomplete_streams == 1 and report.unsealed_events == 1


def test_events_after_the_last_seal_are_reported_unsealed_until_the_next_seal(
    ledger: Ledger, recorded: list[Event]
) -> None:
    header = StreamHeader(stream_id=uuid.uuid4(), tenant_id=TENANTS[0])
    store_events(ledger.url, [started_event(recorded, header, datetime.now(UTC))])
    report = ledger.verify()
    assert report.ok and report.unsealed_events == 1
    assert [f.kind for f in report.findings if f.severity == "warning"] == ["unsealed"]

    (seal,) = ledger.seal()
    assert seal.tenant_id == TENANTS[0] and seal.sequence == 3 and seal.event_count == 1
    assert ledger.verify().unsealed_events == 0


def test_sealing_twice_with_nothing_new_makes_no_seal(ledger: Ledger) -> None:
    assert seal_ledger(ledger.sealer_url) == []
    with ledger.engine.connect() as connection:
        assert len(connection.execute(select(seals)).all()) == 2 * len(TENANTS)


def test_tenant_option_verifies_only_that_tenant(ledger: Ledger) -> None:
    report = ledger.verify(tenant_id=TENANTS[1])
    assert [tenant.tenant_id for tenant in report.tenants] == [TENANTS[1]]
    assert report.ok and report.seals == 2


def test_an_unknown_tenant_is_a_usage_error(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--database-url", ledger.auditor_url, "--tenant", "nobody"]) == 2
    assert "no events and no seals of tenant 'nobody'" in capsys.readouterr().err


def streams_checked_since(ledger: Ledger, since: datetime) -> set[str]:
    """The streams a verify ``since`` checks: per tenant, those with an event in the range of the first seal
    made at or after ``since`` or whose recorded span reaches it, or after it (by position), and those with an
    event of ``since`` or later (by time)."""
    with ledger.engine.connect() as connection:
        chain = [Seal.from_row(row) for row in connection.execute(select(seals).order_by(seals.c.sequence))]
    start = {}
    for tenant in TENANTS:
        own = [seal for seal in chain if seal.tenant_id == tenant]
        reaching = [seal for seal in own if seal.sealed_at >= since or seal.last_occurred_at >= since]
        start[tenant] = reaching[0].after.position if reaching else own[-1].through.position
    return {
        row.stream_id
        for row in ledger.rows()
        if row.global_position > start[row.tenant_id] or as_utc(row.occurred_at) >= since
    }


def test_since_checks_the_seals_made_since_then_though_their_events_occurred_long_before(
    ledger: Ledger, recorded: list[Event]
) -> None:
    # A backfill (or the demo's history): events dated three days back, sealed after ``since``.
    since = datetime.now(UTC)
    header = StreamHeader(stream_id=uuid.uuid4(), tenant_id=TENANTS[0], agent_id="support", session_id="s")
    store_events(ledger.url, [started_event(recorded, header, since - timedelta(days=3))])
    (seal,) = ledger.seal()
    assert seal.sealed_at >= since > seal.last_occurred_at

    report = ledger.verify(since=since)

    assert report.ok, report.to_text()
    assert streams_checked_since(ledger, since) == {str(header.stream_id)}
    assert (report.streams, report.events) == (1, 1)


def test_since_checks_the_streams_of_the_seals_that_reach_it_and_of_what_follows(ledger: Ledger) -> None:
    # Every seal of the ledger was made after the newest event it holds: a verify since then checks them all.
    with ledger.engine.connect() as connection:
        lasts = connection.execute(select(seals.c.last_occurred_at)).scalars()
        since = max(as_utc(moment) for moment in lasts)
    rows = ledger.rows()
    checked = streams_checked_since(ledger, since)
    recent = {row.stream_id for row in rows if as_utc(row.occurred_at) >= since}

    report = ledger.verify(since=since)

    assert report.ok
    assert len(recent) < report.streams == len(checked) == len({row.stream_id for row in rows})
    assert report.events == len(rows)


def test_since_accepts_dates_datetimes_and_spans() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T12:00+02:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    with pytest.raises(AuditConfigurationError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_usage_errors_exit_2_naming_the_problem(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--database-url", ledger.auditor_url, "--since", "soon"]) == 2
    assert "--since 'soon'" in capsys.readouterr().err
    assert main(["audit", "verify", "--database-url", ledger.auditor_url, "--public-key", "not-a-key"]) == 2
    assert "--public-key must be the base64 of 32 raw Ed25519 key bytes" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["0", "-1", "all"])
def test_a_bad_jobs_count_is_a_usage_error_naming_the_option(
    jobs: str, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "verify", "--jobs", jobs, "--database-url", sqlite_url])
    assert exited.value.code == 2
    assert "argument --jobs:" in capsys.readouterr().err
    with pytest.raises(AuditConfigurationError, match="jobs must be at least 1, not 0"):
        verify_ledger(sqlite_url, jobs=0)


def test_a_database_without_the_audit_tables_is_a_configuration_error(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate.upgrade(sqlite_url, "0004")
    assert main(["audit", "verify", "--database-url", sqlite_url]) == 2
    assert "has no audit tables: run llm-ledger db upgrade" in capsys.readouterr().err


def test_keygen_prints_a_pair_that_signs_and_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "keygen"]) == 0
    values = dict(
        line.split("=", 1) for line in capsys.readouterr().out.splitlines() if not line.startswith("#") and line
    )
    key = SigningKey.parse(values["LLM_LEDGER_SEAL_KEY"])
    assert key.public_key.text() == values["LLM_LEDGER_SEAL_PUBLIC_KEY"]
    assert key.public_key.is_signature_of(key.sign("ab" * 32), "ab" * 32)


def test_the_seal_key_may_be_a_pem_file(tmp_path: Path) -> None:
    key = SigningKey.generate()
    pem = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "seal.pem"
    path.write_bytes(pem)
    assert SigningKey.parse(str(path)).text() == key.text()
    with pytest.raises(AuditConfigurationError, match="LLM_LEDGER_SEAL_KEY must be the base64"):
        SigningKey.parse("short")


def test_the_seal_command_signs_with_the_key_from_the_environment(
    sqlite_url: str, recorded: list[Event], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate.upgrade(sqlite_url)
    store_events(sqlite_url, recorded)
    key = SigningKey.generate()
    monkeypatch.setenv("LLM_LEDGER_SEAL_KEY", key.text())

    assert main(["audit", "seal", "--database-url", sqlite_url]) == 0

    out = capsys.readouterr().out
    assert out.count(", signed; seal hash ") == len(TENANTS)
    monkeypatch.setenv("LLM_LEDGER_SEAL_PUBLIC_KEY", key.public_key.text())
    assert verify_ledger(sqlite_url, record=False, public_key=key.public_key.text()).ok
    assert main(["audit", "verify", "--database-url", sqlite_url]) == 0
    engine = create_store_engine(sqlite_url)
    with engine.connect() as connection:
        assert all(row.public_key == key.public_key.text() for row in connection.execute(select(seals)))
    engine.dispose()


def test_an_unreachable_database_exits_3_not_1(capsys: pytest.CaptureFixture[str]) -> None:
    # 1 would say the ledger is broken; it could not be checked at all.
    assert main(["audit", "verify", "--database-url", "postgresql://postgres@127.0.0.1:1/ledger"]) == 3
    assert "cannot be reached" in capsys.readouterr().err


def test_two_sealers_at_once_make_one_seal_per_tenant(ledger: Ledger, recorded: list[Event]) -> None:
    header = StreamHeader(stream_id=uuid.uuid4(), tenant_id=TENANTS[0])
    store_events(ledger.url, [started_event(recorded, header, datetime.now(UTC))])
    wait_until_sealable(ledger.url)
    start = threading.Barrier(2)

    def seal_at_once(_: int) -> list[Seal]:
        start.wait()
        return seal_ledger(ledger.sealer_url)

    with ThreadPoolExecutor(2) as pool:
        made = [seal for seals_made in pool.map(seal_at_once, range(2)) for seal in seals_made]

    assert [(seal.tenant_id, seal.sequence, seal.event_count) for seal in made] == [(TENANTS[0], 3, 1)]
    assert ledger.verify().ok
