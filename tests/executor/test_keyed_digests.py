"""Capture ``hash`` keeps HMAC-SHA-256 digests under the tenant's key, end to end: the real executor
records through the real buffered writer into the real store (PostgreSQL as the least-privilege writer
login, and SQLite) beside an execution recorded before keyed digests (plain SHA-256), and ``audit verify``
passes both. The expected digests are computed independently (``tests.digests``)."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from pathlib import Path

import pytest

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, execution_context, record_tool_call
from llm_ledger.events import DigestSecret, canonical_json, sha256_hex
from llm_ledger.executor.digest_secret import DIGEST_KEY_FILE, DigestSecretError, default_digest_secret
from tests.audit_sql.ledger import legacy_execution
from tests.digests import key_id, keyed, tenant_key
from tests.executor.ledger import Ledger

MESSAGES = (("system", "You decide which rules apply."), ("user", "My order arrived broken."))
FORM = [{"content": content, "role": role} for role, content in MESSAGES]


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


async def _generate(executor: LLMExecutor, tenant: str) -> uuid.UUID:
    with execution_context(tenant_id=tenant, agent_id="support"):
        response = await executor.generate([LLMMessage(role=role, content=content) for role, content in MESSAGES])
    assert response.execution_id is not None
    return response.execution_id


async def test_capture_hash_keeps_keyed_digests_and_older_plain_ones_still_verify(ledger: Ledger) -> None:
    tenant = _tenant()
    executor = LLMExecutor("mock/keyed?seed=3", sink=ledger.writer, max_retries=0)
    execution_id = await _generate(executor, tenant)
    older = legacy_execution(tenant, MESSAGES, "an answer of before keyed digests")
    ledger.store.append(older)
    ledger.settle()

    started, *_, ended = ledger.stream(execution_id)
    record: dict[str, object] = started.to_record()["payload"]["input"]
    assert record["sha256"] is None, "no plain digest: it would confirm a guess"
    assert (record["digest"], record["digest_alg"], record["key_id"]) == (
        keyed(tenant, canonical_json(FORM)),
        "hmac-sha256",
        key_id(tenant_key(tenant)),
    )
    answer = ended.payload.output  # type: ignore[union-attr]
    assert answer.sha256 is None and answer.digest_alg == "hmac-sha256"
    plain = ledger.stream(older[0].stream_id)[0].payload.input  # type: ignore[union-attr]
    assert plain.sha256 == sha256_hex(canonical_json(FORM)) and plain.digest is None
    assert "digest" not in ledger.stream(older[0].stream_id)[0].to_record()["payload"]["input"]

    report = ledger.verify(tenant)
    assert report.ok and report.tenants[0].events == 8, report.to_text()


async def test_each_tenant_digests_under_its_own_key() -> None:
    sink = InMemorySink()
    executor = LLMExecutor("mock/keyed?seed=3", sink=sink, max_retries=0)
    first, second = _tenant(), _tenant()
    digests = {}
    for tenant in (first, second):
        started = sink.stream(await _generate(executor, tenant))[0]
        digests[tenant] = started.payload.input.digest  # type: ignore[union-attr]
    assert digests[first] != digests[second], "the same messages, another tenant's key"
    assert digests[first] == keyed(first, canonical_json(FORM)) != keyed(second, canonical_json(FORM))


async def test_a_tool_run_digests_its_arguments_and_result_under_its_tenant_s_key() -> None:
    sink, tenant = InMemorySink(), _tenant()
    with execution_context(tenant_id=tenant):
        async with record_tool_call("lookup_order", {"order": 42}, sink=sink) as run:
            run.result = "shipped"
    started, succeeded = sink.stream(run.tool_execution_id)
    assert started.payload.arguments.digest == keyed(tenant, b'{"order":42}')  # type: ignore[union-attr]
    assert succeeded.payload.result.digest == keyed(tenant, b"shipped")  # type: ignore[union-attr]
    assert started.payload.arguments.sha256 is None  # type: ignore[union-attr]


async def test_an_executor_given_a_secret_derives_its_keys_from_it() -> None:
    secret = DigestSecret.generate()
    sink, tenant = InMemorySink(), _tenant()
    executor = LLMExecutor("mock/keyed?seed=3", sink=sink, max_retries=0, digest_secret=secret)
    started = sink.stream(await _generate(executor, tenant))[0]
    assert started.payload.input.digest == keyed(tenant, canonical_json(FORM), secret.secret)  # type: ignore[union-attr]


async def test_capture_none_keeps_no_digest_and_needs_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LLM_LEDGER_DIGEST_KEY")
    monkeypatch.setenv("LLM_LEDGER_HOME", str(tmp_path / "home"))
    default_digest_secret.reset()
    try:
        sink = InMemorySink()
        executor = LLMExecutor("mock/keyed?seed=3", sink=sink, max_retries=0, capture="none")
        started = sink.stream(await _generate(executor, _tenant()))[0]
        assert started.to_record()["payload"]["input"] == {
            "message_count": 2, "chars": 53, "bytes": 53, "sha256": None, "messages": None
        }  # fmt: skip
        assert not (tmp_path / "home").exists(), "no secret made for an executor that digests nothing"
    finally:
        default_digest_secret.reset()


async def test_with_nothing_configured_a_secret_is_made_in_the_home_and_said_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("LLM_LEDGER_DIGEST_KEY")
    monkeypatch.delenv("LLM_LEDGER_DATABASE_URL", raising=False)
    monkeypatch.setenv("LLM_LEDGER_HOME", str(tmp_path / "home"))
    default_digest_secret.reset()
    try:
        sink, tenant = InMemorySink(), _tenant()
        with caplog.at_level(logging.WARNING, logger="llm_ledger.executor"):
            execution_id = await _generate(LLMExecutor("mock/keyed?seed=3", sink=sink, max_retries=0), tenant)
        path = tmp_path / "home" / DIGEST_KEY_FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert [str(path) in record.getMessage() for record in caplog.records] == [True]
        secret = DigestSecret.parse(path.read_text())
        started = sink.stream(execution_id)[0]
        assert started.payload.input.digest == keyed(tenant, canonical_json(FORM), secret.secret)  # type: ignore[union-attr]
        assert sorted(p.name for p in path.parent.iterdir()) == [DIGEST_KEY_FILE], "nothing left aside"

        # Another process of the same home (the process's secret forgotten): the same secret, said nothing.
        default_digest_secret.reset()
        caplog.clear()
        again = sink.stream(await _generate(LLMExecutor("mock/keyed?seed=3", sink=sink, max_retries=0), tenant))
        assert again[0].payload.input.digest == started.payload.input.digest  # type: ignore[union-attr]
        assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
    finally:
        default_digest_secret.reset()


def test_a_postgresql_writer_without_the_secret_is_refused_when_the_executor_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LLM_LEDGER_DIGEST_KEY")
    monkeypatch.setenv("LLM_LEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLM_LEDGER_DATABASE_URL", "postgresql://llm_ledger_writer@127.0.0.1/ledger")
    default_digest_secret.reset()
    try:
        with pytest.raises(DigestSecretError, match=r"LLM_LEDGER_DIGEST_KEY is not set.*audit digest-key --new"):
            LLMExecutor("mock/keyed?seed=3", sink=InMemorySink(), max_retries=0)
        assert not (tmp_path / "home").exists(), "no secret of its own"
        # Capture `none` digests nothing: it needs no secret.
        LLMExecutor("mock/keyed?seed=3", sink=InMemorySink(), max_retries=0, capture="none")
    finally:
        default_digest_secret.reset()


def test_the_secret_s_fingerprint_is_logged_once_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = DigestSecret.generate()
    monkeypatch.setenv("LLM_LEDGER_DIGEST_KEY", secret.text())
    default_digest_secret.reset()
    try:
        with caplog.at_level(logging.INFO, logger="llm_ledger.executor"):
            for _ in range(2):
                LLMExecutor("mock/keyed?seed=3", sink=InMemorySink(), max_retries=0)
        said = [record.getMessage() for record in caplog.records if "digest secret" in record.getMessage()]
        assert said == [f"llm-ledger: digest secret from LLM_LEDGER_DIGEST_KEY, fingerprint {secret.fingerprint()}"]
        assert secret.text() not in caplog.text and secret.fingerprint() != key_id(secret.secret)
    finally:
        default_digest_secret.reset()
