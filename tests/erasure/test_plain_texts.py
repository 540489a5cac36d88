"""``plain_texts``, the count of texts stored in plain that an erasure cannot erase, on payloads of any form:
it runs on whatever the database holds, so a payload it cannot read is counted apart, never raised."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from llm_ledger.audit.erasure import PlainTexts, named_key_ids, plain_texts


@dataclass(frozen=True)
class Row:
    stream_id: str
    event_type: str
    payload: str


PLAIN_OUTPUT = {"output": {"chars": 2, "bytes": 2, "sha256": None, "text": "hi"}}

UNREADABLE = [
    ("ExecutionStarted", "{broken"),  # no JSON
    ("ExecutionStarted", '"an object once"'),  # a JSON string
    ("ExecutionSucceeded", "42"),
    ("ExecutionSucceeded", "null"),
    ("ExecutionSucceeded", "[1, 2]"),
    ("ExecutionStarted", "{}"),  # no input
    ("ExecutionStarted", '{"input": "text"}'),  # a string where a record should be
    ("AttemptSucceeded", '{"output": {"text": null}, "tool_calls": 5}'),
    ("AttemptSucceeded", '{"output": {"text": null}, "tool_calls": ["x"]}'),
    ("AttemptSucceeded", '{"output": {"text": null}, "tool_calls": {"a": 1}}'),
    ("AttemptSucceeded", '{"output": {"text": null}, "tool_calls": [{}]}'),
    ("ToolCallSucceeded", '{"result": [1]}'),
]


@pytest.mark.parametrize(("event_type", "payload"), UNREADABLE)
def test_a_payload_of_no_readable_form_is_counted_apart(event_type: str, payload: str) -> None:
    rows = [Row("s1", event_type, payload), Row("s2", "ExecutionSucceeded", orjson.dumps(PLAIN_OUTPUT).decode())]
    assert plain_texts(rows) == PlainTexts(captured=1, unreadable=1), "the readable one is counted as ever"


def test_the_key_ids_a_payload_names_are_found_in_any_form_as_postgresql_counts_them() -> None:
    named = {"a": [{"x": {"encrypted": {"key_id": "k1"}}}, {"encrypted": [{"key_id": "k2"}, "k9"]}], "b": 3}
    assert named_key_ids(named) == {"k1", "k2"}
    assert named_key_ids([{"encrypted": {"key_id": 5}}, "text", None]) == set()
    assert named_key_ids(None) == set()
