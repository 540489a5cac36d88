"""The capture policy decides how much of a prompt or an answer an event keeps."""

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from llm_ledger.events import (
    DigestSecret,
    InputRecord,
    OutputRecord,
    Scrubber,
    canonical_json,
    record_input,
    record_output,
)

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


KEY = DigestSecret.parse(base64.b64encode(bytes(range(32))).decode()).tenant_key("acme")


def test_hash_under_a_tenant_key_keeps_a_keyed_digest_labelled_and_no_plain_one() -> None:
    form = [{"content": content, "role": role} for role, content in MESSAGES]
    record = record_input(MESSAGES, "hash", Scrubber(), KEY)
    assert record.sha256 is None, "a plain digest would confirm a guessed prompt"
    assert (record.digest, record.digest_alg, record.key_id) == (
        hmac.new(KEY.key, canonical_json(form), hashlib.sha256).hexdigest(),
        "hmac-sha256",
        KEY.key_id,
    )
    out = record_output("the answer", "hash", Scrubber(), KEY)
    assert (out.sha256, out.digest) == (None, hmac.new(KEY.key, b"the answer", hashlib.sha256).hexdigest())
    assert record_output("the answer", "none", Scrubber(), KEY).model_dump(mode="json") == {
        "chars": 10, "bytes": 10, "sha256": None, "text": None
    }, "no digest under none, and no digest field either"  # fmt: skip


def test_a_record_of_before_keyed_digests_reads_and_dumps_as_it_was_stored() -> None:
    stored = {"message_count": 2, "chars": 60, "bytes": 60, "sha256": "ab" * 32, "messages": None}
    record = InputRecord.model_validate(stored)
    assert (record.sha256, record.digest, record.digest_alg, record.key_id) == ("ab" * 32, None, None, None)
    assert record.model_dump(mode="json") == stored, "the same form, so the same hash"
    output = {"chars": 3, "bytes": 3, "sha256": "cd" * 32, "text": None}
    assert OutputRecord.model_validate(output).model_dump(mode="json") == output


_KEYED = {"digest": "ef" * 32, "digest_alg": "hmac-sha256", "key_id": "01" * 8}


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"digest": "ef" * 32}, "all three or none"),
        ({"digest": "ef" * 32, "digest_alg": "hmac-sha256"}, "all three or none"),
        ({"key_id": "01" * 8}, "all three or none"),
        ({**_KEYED, "digest_alg": "sha256"}, "Input should be 'hmac-sha256'"),
        ({**_KEYED, "digest": "EF" * 32}, "String should match pattern"),
        ({**_KEYED, "digest": "ef" * 31}, "String should match pattern"),
        ({**_KEYED, "key_id": "xyz"}, "String should match pattern"),
        ({**_KEYED, "sha256": "ab" * 32}, "a keyed digest or a plain sha256, not both"),
    ],
)
def test_digest_fields_are_refused_unless_whole_and_well_formed(fields: dict[str, str], said: str) -> None:
    for model, sizes in (
        (OutputRecord, {"chars": 1, "bytes": 1}),
        (InputRecord, {"message_count": 1, "chars": 1, "bytes": 1}),
    ):
        with pytest.raises(ValidationError, match=said):
            model.model_validate({**sizes, **fields})
    assert OutputRecord.model_validate({"chars": 1, "bytes": 1, **_KEYED}).digest == _KEYED["digest"]
