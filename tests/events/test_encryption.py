"""Content encrypted under a data key: what the associated data binds (a ciphertext moved to another event,
field, stream, tenant or subject does not open), which draft carries a new key, and that a draft's
ciphertext, built once, seals to one hash however often it is sealed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from llm_ledger.events import Scrubber, StreamHeader, StreamSealer, uuid7
from llm_ledger.events import values as payloads
from llm_ledger.events.encryption import (
    ContentSubject,
    Keyring,
    UndecryptableError,
    decrypt,
    encrypt,
    encrypt_payload,
    reveal,
    reveal_each,
)
from llm_ledger.events.values import JsonPayload
from llm_ledger.store.content_keys import KeyLookup, opened
from tests.plain_card import holds_plain_card

_scrubber = Scrubber()


def test_a_ciphertext_opens_only_where_it_was_made() -> None:
    key, _ = Keyring().key_for("acme", "person-1", "s1")
    stream, event = str(uuid7()), str(uuid7())
    sealed = encrypt(key, b"my card is 4111", stream, event, "input")
    assert decrypt(key, sealed, stream, event, "input") == b"my card is 4111"
    elsewhere = [
        (key, stream, str(uuid7()), "input"),  # another event
        (key, stream, event, "output"),  # another field
        (key, str(uuid7()), event, "input"),  # another stream
        (replace(key, tenant_id="globex"), stream, event, "input"),  # the same secret claimed by another tenant
        (replace(key, subject_id="person-2"), stream, event, "input"),
    ]
    for other_key, other_stream, other_event, field in elsewhere:
        with pytest.raises(UndecryptableError):
            decrypt(other_key, sealed, other_stream, other_event, field)
    other, _ = Keyring().key_for("acme", "person-1", "s1")
    with pytest.raises(UndecryptableError, match="is encrypted under key"):
        decrypt(other, sealed, stream, event, "input")


def _started(sealer: StreamSealer) -> Any:
    return sealer.draft(
        "ToolCallStarted",
        JsonPayload(
            payloads.tool_call_started,
            tool_name="t",
            tool_call_id=None,
            execution_id=None,
            arguments=payloads.output_values('{"card": "4111"}', "full", _scrubber),
            capture="full",
        ),
        occurred_at=datetime.now(UTC),
    )


def test_the_first_draft_of_a_subject_carries_its_new_key_and_the_next_ones_reuse_it() -> None:
    keyring = Keyring()
    subject = ContentSubject(keyring)
    first = StreamSealer(StreamHeader(uuid7(), "acme", session_id="s1", content=subject))
    second = StreamSealer(StreamHeader(uuid7(), "acme", session_id="s1", content=subject))
    other = StreamSealer(StreamHeader(uuid7(), "acme", session_id="s2", content=subject))
    drafts = [_started(first), _started(second), _started(other)]
    for draft in drafts:
        draft.stored_form()
    keys = [draft.content_key for draft in drafts]
    assert keys[0] is not None and keys[1] is None and keys[2] is not None and keys[0] != keys[2]
    values = drafts[1].payload_values()[0]
    assert values["arguments"]["text"] is None and not holds_plain_card(orjson.dumps(values))
    opened, hidden = reveal(
        "ToolCallStarted",
        values,
        str(drafts[1].stream_id),
        str(drafts[1].event_id),
        keyring.get,
    )
    assert opened["arguments"]["text"] == '{"card": "4111"}' and hidden == {}


def test_a_draft_sealed_again_alone_seals_to_the_same_hash() -> None:
    header = StreamHeader(uuid7(), "acme", session_id="s1", content=ContentSubject(Keyring()))
    sealer = StreamSealer(header)
    draft = _started(sealer)
    draft.payload_values()  # as a handover to a writer process builds them
    digest = draft.stored_form()[0]["hash"]
    alone = StreamSealer(header)
    alone._seal(draft)  # what seal_through does for a draft sealed elsewhere
    assert draft.stored_form()[0]["hash"] == digest


def test_values_without_content_are_left_as_they_are() -> None:
    header = StreamHeader(uuid7(), "acme", session_id="s1")
    values = payloads.tool_call_succeeded(
        tool_name="t", latency_ms=1.0, result=payloads.output_values("x", "hash", _scrubber)
    )
    out, key = encrypt_payload("ToolCallSucceeded", values, ContentSubject(Keyring()), header, str(uuid7()))
    assert out is values and key is None


def test_a_keyring_keeps_a_bounded_number_of_keys_and_replaces_one_past_its_lifetime() -> None:
    keyring = Keyring(kept=2)
    first, made = keyring.key_for("acme", None, "s1")
    assert made and keyring.key_for("acme", None, "s1") == (first, False)
    keyring.key_for("acme", None, "s2")
    keyring.key_for("acme", None, "s1")  # used again: s2 is now the least recently used
    keyring.key_for("acme", None, "s3")
    assert keyring.get(first.key_id) == first
    _, made = keyring.key_for("acme", None, "s2")
    assert made, "s2's key was dropped: a new one, which travels with its first event"
    expiring = Keyring(lifetime=0.0)
    old, _ = expiring.key_for("acme", None, "s1")
    new, made = expiring.key_for("acme", None, "s1")
    assert made and new.key_id != old.key_id and expiring.get(old.key_id) is None
    assert "secret" not in repr(new) and new.secret.hex() not in repr(new)


def test_a_failed_tool_s_exception_text_is_encrypted_under_the_key_of_its_arguments() -> None:
    """The exception's text (``error_text``) is a place of content like the arguments: encrypted under the
    same key (same tenant, subject and session), bound to its own event and field; the class sentence in
    ``message`` stays plain."""
    keyring = Keyring()
    sealer = StreamSealer(StreamHeader(uuid7(), "acme", session_id="s1", content=ContentSubject(keyring, "person-1")))
    started = _started(sealer)
    failed = sealer.draft(
        "ToolCallFailed",
        JsonPayload(
            payloads.tool_call_failed,
            tool_name="t",
            latency_ms=2.0,
            error_type="tool_error",
            error_class="KeyError",
            message="the tool raised KeyError (its text is kept in error_text, encrypted)",
            error_text=payloads.output_values("no card 4111 on file", "full", _scrubber),
        ),
        occurred_at=datetime.now(UTC),
    )
    sealer.seal_through(failed)
    values = failed.payload_values()[0]
    assert not holds_plain_card(orjson.dumps(values)) and values["error_text"]["text"] is None
    assert values["message"].startswith("the tool raised KeyError")
    arguments_key = started.payload_values()[0]["arguments"]["encrypted"]["key_id"]
    assert values["error_text"]["encrypted"]["key_id"] == arguments_key and failed.content_key is None

    stream, event = str(failed.stream_id), str(failed.event_id)
    opened, hidden = reveal("ToolCallFailed", values, stream, event, keyring.get)
    assert opened["error_text"]["text"] == "no card 4111 on file" and hidden == {}
    assert values["error_text"]["text"] is None, "revealing leaves the stored values alone"
    assert reveal("ToolCallFailed", values, stream, event, lambda key_id: None)[1] == {"error_text": arguments_key}
    with pytest.raises(UndecryptableError):
        reveal("ToolCallFailed", values, stream, str(started.event_id), keyring.get)


def test_a_moved_or_altered_ciphertext_is_named_on_its_own_and_the_other_places_open() -> None:
    """``reveal`` refuses a payload with a ciphertext that does not open; ``reveal_each`` (and a reader's
    ``opened``) leaves that one place encrypted and names it ``altered``, the others opened as they would be;
    a key id that is no UUID names no key and reads ``altered`` too, without being looked up."""
    keyring = Keyring()
    sealer = StreamSealer(StreamHeader(uuid7(), "acme", session_id="s1", content=ContentSubject(keyring)))
    succeeded = sealer.draft(
        "AttemptSucceeded",
        JsonPayload(
            payloads.attempt_succeeded,
            attempt=1,
            model="m",
            provider="p",
            latency_ms=1.0,
            usage=None,
            finish_reason="tool_calls",
            request_id=None,
            response_id=None,
            response_model=None,
            time_to_first_chunk_ms=None,
            output=payloads.output_values("card 4111 refunded", "full", _scrubber),
            tool_calls=[payloads.tool_call_values("call_1", "refund", '{"card": "4111"}', "full", _scrubber)],
        ),
        occurred_at=datetime.now(UTC),
    )
    sealer.seal_through(succeeded)
    values = succeeded.payload_values()[0]
    stream, event = str(succeeded.stream_id), str(succeeded.event_id)
    # The arguments' ciphertext put in the output's place: the same key, another field.
    moved = {**values, "output": {**values["output"], "encrypted": values["tool_calls"][0]["arguments"]["encrypted"]}}

    with pytest.raises(UndecryptableError, match="output of event"):
        reveal("AttemptSucceeded", moved, stream, event, keyring.get)
    out, hidden, altered = reveal_each("AttemptSucceeded", moved, stream, event, keyring.get)
    assert set(altered) == {"output"} and hidden == {} and out["output"]["text"] is None
    assert out["tool_calls"][0]["arguments"]["text"] == '{"card": "4111"}'

    key = keyring.get(values["output"]["encrypted"]["key_id"])
    assert key is not None
    lookup = KeyLookup({key.key_id: key}, True)
    assert opened("AttemptSucceeded", moved, stream, event, lookup)[1] == {"output": "altered"}
    no_id = {**values, "output": {**values["output"], "encrypted": {**values["output"]["encrypted"], "key_id": "x"}}}
    shown, states = opened("AttemptSucceeded", no_id, stream, event, lookup)
    assert states == {"output": "altered"} and shown["tool_calls"][0]["arguments"]["text"] == '{"card": "4111"}'


@pytest.mark.parametrize("place", ["nonce", "ciphertext"])
@pytest.mark.parametrize("bad", [123, None, ["AAAA"]])
def test_a_ciphertext_whose_nonce_or_ciphertext_is_no_string_reads_altered(place: str, bad: object) -> None:
    """A stored payload is whatever the database holds: a ``nonce`` or ``ciphertext`` changed to a number,
    null or a list is a ciphertext altered, named as one (not a TypeError that takes the page down)."""
    keyring = Keyring()
    key, _ = keyring.key_for("acme", None, "s1")
    stream, event = str(uuid7()), str(uuid7())
    encrypted = {**encrypt(key, b"card 4111 refunded", stream, event, "result"), place: bad}
    payload = {"result": {"chars": 18, "bytes": 18, "sha256": None, "text": None, "encrypted": encrypted}}

    with pytest.raises(UndecryptableError, match="result of event"):
        reveal("ToolCallSucceeded", payload, stream, event, keyring.get)
    lookup = KeyLookup({key.key_id: key}, True)
    assert opened("ToolCallSucceeded", payload, stream, event, lookup)[1] == {"result": "altered"}
