"""The tool-call fields: the ``AddedLater`` fields of ``ExecutionStarted`` (``tools``, ``tool_choice``) and
``AttemptSucceeded`` (``tool_calls``), the tool fields of a captured message, and the tool execution's own
events. An event that uses none keeps exactly the form and hash it had before they existed; one that uses
them stores them; both sealing routes (the builders' and the models') agree on every byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import orjson
import pytest
from pydantic import ValidationError

from llm_ledger.events import (
    PAYLOAD_TYPES,
    AttemptSucceededPayload,
    CapturedMessage,
    ExecutionStartedPayload,
    InputRecord,
    Scrubber,
    StreamHeader,
    StreamSealer,
    canonical_json,
    compute_hash,
    parse_event,
    sha256_hex,
)
from llm_ledger.events import values as builders
from llm_ledger.events.later import AddedLater, OmitsUnusedLaterFields
from llm_ledger.events.storable import MAX_FIELD_CHARS, TRUNCATED
from llm_ledger.events.values import JsonPayload
from tests.events.test_stored_hashes import _HASHES, _HEADER, _STREAM, _T0

_scrubber = Scrubber([])
_DIGEST = "ab" * 32
_LATER = {"ExecutionStarted": ("tools", "tool_choice"), "AttemptSucceeded": ("tool_calls",)}


def _pinned(event_type: str) -> tuple[int, Any, dict[str, Any]]:
    index = next(i for i, (name, _, _) in enumerate(_STREAM) if name == event_type)
    _, build, arguments = _STREAM[index]
    return index, build, arguments


def _seal(event_type: str, payload: Any, index: int) -> Any:
    """The event at ``index`` of the pinned stream, sealed with ``payload``, as test_stored_hashes seals it
    (its predecessors sealed first, so that ``prev_hash`` is the pinned one)."""
    sealer = StreamSealer(_HEADER)
    for position, (name, build, arguments) in enumerate(_STREAM[:index]):
        sealer.seal_through(
            sealer.draft(
                name,
                JsonPayload(build, **arguments),
                occurred_at=_T0 + timedelta(milliseconds=position),
                event_id=UUID(int=position + 1),
                trace_id="0" * 31 + "1",
            )
        )
    return sealer.draft(
        event_type,
        payload,
        occurred_at=_T0 + timedelta(milliseconds=index),
        event_id=UUID(int=index + 1),
        trace_id="0" * 31 + "1",
    ).event


def _tools() -> dict[str, Any]:
    return {"tools": builders.offered_tool_values([("lookup_order", _DIGEST), ("weather", "cd" * 32)])}


def _tool_calls() -> dict[str, Any]:
    return {
        "tool_calls": [
            builders.tool_call_values("call_1", "lookup_order", '{"order": 42}', "full", _scrubber),
            builders.tool_call_values("call_2", "weather", '{"city": "Paris"}', "hash", _scrubber),
        ]
    }


# --- the mechanism ------------------------------------------------------------------------------------------


def test_the_later_fields_are_the_declared_ones() -> None:
    declared = {name: model.later_fields for name, model in PAYLOAD_TYPES.items() if model.later_fields}
    assert declared == {**_LATER, "ToolCallFailed": ("error_text",)}
    assert CapturedMessage.later_fields == ("tool_calls", "tool_call_id", "name")


@pytest.mark.parametrize("event_type", sorted(_LATER))
@pytest.mark.parametrize("route", ["builders", "models"])
def test_an_event_without_tools_has_exactly_its_pre_issue_form_and_hash(event_type: str, route: str) -> None:
    index, build, arguments = _pinned(event_type)
    model = PAYLOAD_TYPES[event_type]
    # The empty values given explicitly, as a caller that passes them through does.
    empty = {name: model.model_fields[name].default for name in _LATER[event_type]}
    payload = JsonPayload(build, **arguments, **empty) if route == "builders" else model(**build(**arguments), **empty)

    event = _seal(event_type, payload, index)

    record = event.to_record()
    assert not set(record["payload"]) & set(_LATER[event_type])
    assert event.hash == compute_hash(record) == _HASHES[index]


@pytest.mark.parametrize(("event_type", "fields"), [("ExecutionStarted", _tools), ("AttemptSucceeded", _tool_calls)])
def test_with_tools_the_fields_are_stored_and_both_routes_agree(event_type: str, fields: Any) -> None:
    index, build, arguments = _pinned(event_type)
    extra = fields()
    if event_type == "ExecutionStarted":
        extra["tool_choice"] = "auto"
    by_builder = _seal(event_type, JsonPayload(build, **arguments, **extra), index)
    by_model = _seal(event_type, PAYLOAD_TYPES[event_type].model_validate(build(**arguments, **extra)), index)

    assert by_builder.to_record() == by_model.to_record()
    assert by_builder.hash == by_model.hash == compute_hash(by_builder.to_record()) != _HASHES[index]
    stored = by_builder.to_record()["payload"]
    assert {name: stored[name] for name in extra} == extra
    # The model's own dump (field order included) is what the builder gave.
    reread = parse_event(orjson.dumps(by_builder.to_record()))
    assert reread.payload.model_dump(mode="json") == build(**arguments, **extra)


def test_a_stored_record_without_the_fields_reads_with_their_defaults() -> None:
    index, build, arguments = _pinned("ExecutionStarted")
    record = _seal("ExecutionStarted", JsonPayload(build, **arguments), index).to_record()
    assert "tools" not in record["payload"]

    event = parse_event(orjson.dumps(record))

    assert isinstance(event.payload, ExecutionStartedPayload)
    assert event.payload.tools == () and event.payload.tool_choice is None
    assert event.to_record() == record and compute_hash(event.to_record()) == _HASHES[index]
    succeeded = _pinned("AttemptSucceeded")
    payload = AttemptSucceededPayload.model_validate(succeeded[1](**succeeded[2]))
    assert payload.tool_calls == ()


def test_only_an_empty_value_is_left_out() -> None:
    """``tool_choice="none"`` says something (no tool may be called): it is kept, like any non-empty value."""
    _, build, arguments = _pinned("ExecutionStarted")
    values = build(**arguments, tool_choice="none")
    assert values["tool_choice"] == "none" and "tools" not in values
    assert ExecutionStartedPayload.model_validate(values).model_dump(mode="json") == values


def test_a_later_field_is_left_out_only_while_empty() -> None:
    class Sample(OmitsUnusedLaterFields):
        kept: int
        later: Annotated[tuple[int, ...], AddedLater()] = ()

    assert Sample(kept=1).model_dump() == {"kept": 1}
    assert Sample(kept=1, later=(0,)).model_dump() == {"kept": 1, "later": (0,)}
    assert Sample(kept=0).model_dump(mode="json") == {"kept": 0}


def test_an_offered_tool_s_digest_is_checked_as_the_model_checks_it() -> None:
    with pytest.raises(ValueError, match="lowercase hex SHA-256"):
        builders.offered_tool_values([("lookup", "AB" * 32)])
    with pytest.raises(ValidationError):
        ExecutionStartedPayload.model_validate(
            {
                **_pinned("ExecutionStarted")[1](**_pinned("ExecutionStarted")[2]),
                "tools": [{"name": "x", "sha256": "A"}],
            }
        )


def test_a_tool_call_s_provider_supplied_id_and_name_are_made_storable() -> None:
    values = builders.tool_call_values("call\x00" + "y" * MAX_FIELD_CHARS, "look\ud800up", "{}", "hash", _scrubber)
    assert values["id"].startswith("call\ufffd") and values["id"].endswith(TRUNCATED)
    assert len(values["id"]) == MAX_FIELD_CHARS and values["name"] == "look\ufffdup"
    assert values["arguments"] == builders.output_values("{}", "hash", _scrubber)


# --- the input digest with tool fields ----------------------------------------------------------------------

_CALLS = [{"id": "call_1", "name": "lookup_order", "arguments": '{"order": 42, "token": "sk-secretsecretsecret1"}'}]
_CONVERSATION: list[tuple[str, str] | tuple[str, str, dict[str, Any]]] = [
    ("user", "Where is my order 42?"),
    ("assistant", "", {"tool_calls": _CALLS}),
    ("tool", "shipped", {"tool_call_id": "call_1", "name": "lookup_order"}),
]


def test_a_message_without_tool_fields_is_digested_as_before_tools_existed() -> None:
    plain = builders.input_values([("user", "hello")], "hash", _scrubber)
    assert plain["sha256"] == sha256_hex(canonical_json([{"content": "hello", "role": "user"}]))
    assert builders.input_values([("user", "hello", {})], "hash", _scrubber) == plain


def test_the_digest_covers_the_tool_fields_and_an_auditor_recomputes_it() -> None:
    values = builders.input_values(_CONVERSATION, "hash", _scrubber)

    expected = [
        {"content": "Where is my order 42?", "role": "user"},
        {"content": "", "role": "assistant", "tool_calls": _CALLS},
        {"content": "shipped", "role": "tool", "tool_call_id": "call_1", "name": "lookup_order"},
    ]
    assert values["sha256"] == sha256_hex(canonical_json(expected))
    without_calls = builders.input_values(
        [*_CONVERSATION[:1], ("assistant", ""), *_CONVERSATION[2:]], "hash", _scrubber
    )
    assert without_calls["sha256"] != values["sha256"]
    arguments = _CALLS[0]["arguments"]
    assert values["chars"] == len("Where is my order 42?") + len("shipped") + len(arguments)
    assert values["bytes"] == values["chars"] and values["message_count"] == 3 and values["messages"] is None


def test_capture_full_keeps_the_tool_fields_scrubbed_and_the_model_reads_them() -> None:
    values = builders.input_values(_CONVERSATION, "full", Scrubber(["sk-secretsecretsecret1"]))

    user, assistant, tool = values["messages"]
    assert user == {"role": "user", "content": "Where is my order 42?"}
    assert assistant["tool_calls"][0]["arguments"] == '{"order": 42, "token": "[REDACTED]"}'
    assert tool == {"role": "tool", "content": "shipped", "tool_call_id": "call_1", "name": "lookup_order"}
    record = InputRecord.model_validate(values)
    assert record.model_dump(mode="json") == values
    assert record.messages is not None and record.messages[1].tool_calls[0].name == "lookup_order"
    # The digest is over the text sent, before scrubbing (what the provider received).
    assert values["sha256"] == builders.input_values(_CONVERSATION, "hash", _scrubber)["sha256"]


# --- a tool execution's stream ------------------------------------------------------------------------------

_TOOL_HEADER = StreamHeader(
    stream_id=UUID("01890a5d-ac96-774b-bcce-b302099a8099"),
    tenant_id="t1",
    agent_id="a",
    session_id="s",
    turn_id="u",
    step="p",
)
_EXECUTION = UUID("01890a5d-ac96-774b-bcce-b302099a8057")
_TOOL_STREAM: list[tuple[str, Any, dict[str, Any]]] = [
    ("ToolCallStarted", builders.tool_call_started, {
        "tool_name": "lookup_order", "tool_call_id": "call_1", "execution_id": _EXECUTION,
        "arguments": builders.output_values('{"order": 42}', "full", _scrubber), "capture": "full",
    }),
    ("ToolCallFailed", builders.tool_call_failed, {
        "tool_name": "lookup_order", "latency_ms": 12.25, "error_type": "tool_error", "error_class": "KeyError",
        "message": "no order 42",
    }),
]  # fmt: skip


_TOOL_HASHES = [
    "de8bce8e5f54468b01e669c4cd87fc4ca2db9d5416846a049379fa8bc017a148",
    "5912a7b1616f671869d3ff89ea6e5ec2f6864020b6ec5784d785de672a9cea20",
]
"""Written down when the tool events were first stored (issue 13): a change to their canonical form would
make the tool executions stored since fail ``audit verify``."""


def _tool_stream(route: str) -> list[Any]:
    sealer = StreamSealer(_TOOL_HEADER)
    events = []
    for index, (event_type, build, arguments) in enumerate(_TOOL_STREAM):
        payload = (
            JsonPayload(build, **arguments)
            if route == "builders"
            else PAYLOAD_TYPES[event_type].model_validate(build(**arguments))
        )
        events.append(
            sealer.draft(
                event_type,
                payload,
                occurred_at=datetime(2026, 12, 2, 12, 0, 0, index * 1000, tzinfo=UTC),
                event_id=UUID(int=100 + index),
            ).event
        )
    return events


def test_a_tool_stream_seals_the_same_by_either_route_and_reads_back() -> None:
    by_builders, by_models = _tool_stream("builders"), _tool_stream("models")

    assert [e.to_record() for e in by_builders] == [e.to_record() for e in by_models]
    assert [e.hash for e in by_builders] == _TOOL_HASHES
    started, failed = (parse_event(orjson.dumps(e.to_record())) for e in by_builders)
    assert failed.prev_hash == started.hash and compute_hash(failed.to_record()) == failed.hash
    assert started.payload.execution_id == _EXECUTION  # type: ignore[union-attr]
    assert started.to_record()["payload"]["execution_id"] == str(_EXECUTION)


# --- a failed tool's exception text (``error_text``) --------------------------------------------------------


@pytest.mark.parametrize("route", ["builders", "models"])
def test_a_tool_failure_without_error_text_keeps_its_pinned_form_and_hash(route: str) -> None:
    """A ``ToolCallFailed`` stored before ``error_text`` existed (its text in ``message``) reads back and
    hashes as it was stored; the empty value given explicitly changes nothing."""
    sealer = StreamSealer(_TOOL_HEADER)
    for index, (event_type, build, arguments) in enumerate(_TOOL_STREAM):
        given = {**arguments, "error_text": None} if event_type == "ToolCallFailed" else arguments
        payload = (
            JsonPayload(build, **given)
            if route == "builders"
            else PAYLOAD_TYPES[event_type].model_validate({**build(**arguments), **given})
        )
        event = sealer.draft(
            event_type,
            payload,
            occurred_at=datetime(2026, 12, 2, 12, 0, 0, index * 1000, tzinfo=UTC),
            event_id=UUID(int=100 + index),
        ).event
        assert event.hash == _TOOL_HASHES[index]
    record = event.to_record()
    assert "error_text" not in record["payload"] and record["payload"]["message"] == "no order 42"
    reread = parse_event(orjson.dumps(record))
    assert reread.payload.error_text is None and compute_hash(reread.to_record()) == _TOOL_HASHES[1]  # type: ignore[union-attr]


@pytest.mark.parametrize("capture", ["none", "hash", "full"])
def test_a_tool_failure_keeps_its_exception_text_as_the_arguments_are_kept(capture: Any) -> None:
    """``error_text`` is ``output_values`` of the text, under the policy of the arguments: both routes agree,
    and the stored values read back whole."""
    text = "no order 42 for jane@example.com"
    scrubber = Scrubber(["jane@example.com"])
    error_text = builders.output_values(text, capture, scrubber)
    values = builders.tool_call_failed(
        tool_name="lookup_order",
        latency_ms=3.5,
        error_type="tool_error",
        error_class="KeyError",
        message="the tool raised KeyError",
        error_text=error_text,
    )
    by_model = PAYLOAD_TYPES["ToolCallFailed"].model_validate(values)
    assert by_model.model_dump(mode="json") == values
    # What the policy keeps, written out: sizes always, a digest of the text as raised (before scrubbing)
    # unless ``none``, the scrubbed text under ``full`` only.
    assert values["error_text"] == {
        "chars": len(text),
        "bytes": len(text.encode()),
        "sha256": None if capture == "none" else sha256_hex(text.encode()),
        "text": "no order 42 for [REDACTED]" if capture == "full" else None,
    }
