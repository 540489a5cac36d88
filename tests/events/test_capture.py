"""The capture policy decides how much of a prompt or an answer an event keeps."""

import hashlib

from llm_ledger.events import Scrubber, canonical_json, record_input, record_output

MESSAGES = [("system", "You are terse."), ("user", "My key is sk-proj-ABCDEF1234567890, refund me")]


def test_none_keeps_sizes_only() -> None:
    record = record_input(MESSAGES, "none", Scrubber())
    assert (record.message_count, record.sha256, record.messages) == (2, None, None)
    assert record.chars == sum(len(c) for _, c in MESSAGES)
    assert record_output("answer", "none", Scrubber()).sha256 is None


def test_hash_keeps_a_digest_an_auditor_can_recompute() -> None:
    record = record_input(MESSAGES, "hash", Scrubber())
    form = [{"content": content, "role": role} for role, content in MESSAGES]
    assert record.sha256 == hashlib.sha256(canonical_json(form)).hexdigest()
    assert record.messages is None
    out = record_output("the answer", "hash", Scrubber())
    assert out.sha256 == hashlib.sha256(b"the answer").hexdigest() and out.text is None


def test_full_keeps_the_text_without_secrets() -> None:
    record = record_input(MESSAGES, "full", Scrubber())
    assert record.messages is not None
    assert [m.role for m in record.messages] == ["system", "user"]
    assert "sk-proj-ABCDEF1234567890" not in record.messages[1].content
    assert "refund me" in record.messages[1].content
    out = record_output("Bearer abcdefghijklmnop is yours", "full", Scrubber())
    assert out.text is not None and "abcdefghijklmnop" not in out.text
