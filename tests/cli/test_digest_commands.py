"""``llm-ledger audit digest-key`` and ``audit digest``: a tenant's key printed by the holder of the writers'
secret, and the keyed digest of messages or a text on stdin, as the executor made it; bad input refused
with what is wrong (exit 2), no secret ever made by these commands."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_ledger.events import DigestSecret, canonical_json
from tests.cli.conftest import Outcome
from tests.digests import key_id, keyed, tenant_key

Run = Callable[..., Outcome]
MESSAGES = [
    {"role": "user", "content": "weather in Paris?"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'}]},
    {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "weather"},
]  # fmt: skip


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_digest_key_prints_the_tenant_s_key_and_its_id(llm_ledger: Run) -> None:
    done = llm_ledger("audit", "digest-key", "--tenant", "acme")
    assert done.status == 0, done.err
    key = tenant_key("acme")
    assert done.out.strip() == base64.b64encode(key).decode()
    assert f"key id {key_id(key)}" in done.err and "LLM_LEDGER_DIGEST_KEY" in done.err


def test_digest_key_new_prints_a_bare_secret_a_file_of_which_the_variable_may_name(
    llm_ledger: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    done = llm_ledger("audit", "digest-key", "--new")
    assert done.status == 0 and "LLM_LEDGER_DIGEST_KEY" in done.err
    secret = DigestSecret.parse(done.out)
    assert done.out == secret.text() + "\n", "stdout is the secret alone"
    # `--new > f; LLM_LEDGER_DIGEST_KEY=f llm-ledger audit digest-key --tenant acme`
    secret_file = tmp_path / "digest-secret"
    secret_file.write_text(done.out)
    monkeypatch.setenv("LLM_LEDGER_DIGEST_KEY", str(secret_file))
    printed = llm_ledger("audit", "digest-key", "--tenant", "acme")
    assert printed.status == 0, printed.err
    assert printed.out.strip() == base64.b64encode(tenant_key("acme", secret.secret)).decode()
    assert f"(from {secret_file})" in printed.err


@pytest.mark.parametrize("tenant", ["ac\x00me", "\ud800", "t" * 10_000])
def test_a_tenant_no_event_could_hold_is_refused(llm_ledger: Run, tenant: str) -> None:
    done = llm_ledger("audit", "digest-key", "--tenant", tenant)
    assert done.status == 2 and "--tenant" in done.err and done.out == "", done.err


def test_digest_of_messages_is_the_executor_s_under_a_key_or_the_tenant_s(
    llm_ledger: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = keyed("acme", canonical_json(MESSAGES))
    key_file = tmp_path / "acme.key"
    key_file.write_text(llm_ledger("audit", "digest-key", "--tenant", "acme").out)
    for how in (("--key", str(key_file)), ("--key", key_file.read_text().strip()), ("--tenant", "acme")):
        _stdin(monkeypatch, json.dumps(MESSAGES).encode())
        done = llm_ledger("audit", "digest", *how)
        assert (done.status, done.out.strip()) == (0, expected), done.err
        assert f"key id {key_id(tenant_key('acme'))}" in done.err


def test_digest_text_is_over_the_bytes_given_exactly(llm_ledger: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    for text in (b"the answer", b"the answer\n", "réponse ✓".encode()):
        _stdin(monkeypatch, text)
        done = llm_ledger("audit", "digest", "--tenant", "acme", "--text")
        assert done.out.strip() == keyed("acme", text)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (b"not json", "the messages are not JSON"),
        (b"{}", "a JSON array of at least one message"),
        (b"[]", "a JSON array of at least one message"),
        (b'[{"role": "user"}]', "message 0 needs a text 'role' and a text 'content'"),
        (b'[{"role": "user", "content": "x", "extra": 1}]', "message 0 has keys a message does not: extra"),
        (b'[{"role": "user", "content": "x", "tool_calls": [{"id": "1"}]}]', "message 0: 'tool_calls' must be"),
        (b'[{"role": "user", "content": "\\ud800"}]', "the messages have no canonical form"),
    ],
)
def test_messages_that_are_no_messages_are_refused_naming_what(
    llm_ledger: Run, monkeypatch: pytest.MonkeyPatch, given: bytes, said: str
) -> None:
    _stdin(monkeypatch, given)
    done = llm_ledger("audit", "digest", "--tenant", "acme")
    assert done.status == 2 and said in done.err and "Traceback" not in done.err, done.err


def test_a_text_that_is_not_utf8_is_refused(llm_ledger: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b"\xff\xfe")
    done = llm_ledger("audit", "digest", "--tenant", "acme", "--text")
    assert done.status == 2 and "the text is not UTF-8" in done.err


@pytest.mark.parametrize("key", ["not-a-key", "c2hvcnQ="])
def test_a_key_that_is_no_key_is_refused(llm_ledger: Run, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    _stdin(monkeypatch, b"[]")
    done = llm_ledger("audit", "digest", "--key", key)
    assert done.status == 2 and "--key must be the base64 of 32 bytes" in done.err


def test_the_key_is_given_one_way(llm_ledger: Run) -> None:
    assert llm_ledger("audit", "digest").status == 2
    assert llm_ledger("audit", "digest", "--key", "k", "--tenant", "acme").status == 2
    assert llm_ledger("audit", "digest-key").status == 2


def test_without_a_secret_no_key_is_printed_and_none_is_made(
    llm_ledger: Run, ledger_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_LEDGER_DIGEST_KEY")
    done = llm_ledger("audit", "digest-key", "--tenant", "acme")
    assert done.status == 2 and done.out == ""
    assert f"no digest secret: {ledger_home / 'digest.key'} does not exist" in done.err
    assert not ledger_home.exists()
    _stdin(monkeypatch, b'[{"role": "user", "content": "x"}]')
    assert llm_ledger("audit", "digest", "--tenant", "acme").status == 2
    monkeypatch.setenv("LLM_LEDGER_DIGEST_KEY", "garbage")
    done = llm_ledger("audit", "digest-key", "--tenant", "acme")
    assert done.status == 2 and "LLM_LEDGER_DIGEST_KEY must be the base64 of 32 bytes" in done.err
    assert llm_ledger("audit", "digest-key", "--tenant", "").status == 2
