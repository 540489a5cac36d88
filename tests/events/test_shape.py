"""An event's shape is declared once (``events.model``): the registry, the fast payload builders of
``values.py`` and the sealing's hand-assembled canonical form are held to that declaration here."""

from __future__ import annotations

import inspect
import math
import re
import types
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import orjson
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from llm_ledger.events import (
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    PAYLOAD_TYPES,
    STREAM_KIND_OF_START,
    STREAM_KINDS,
    TERMINAL_EVENT_TYPES,
    EventEnvelope,
    InputRecord,
    OutputRecord,
    RequestParameters,
    Scrubber,
    StreamHeader,
    StreamSealer,
    TokenUsage,
    parse_event,
    uuid7,
)
from llm_ledger.events import values as builders
from llm_ledger.events.chain import PayloadJson
from llm_ledger.events.later import AddedLater
from llm_ledger.events.model import EventPayload, OfferedTool, ProviderSupplied, ToolCallRecord
from llm_ledger.events.storable import MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, MAX_RETRY_AFTER_SECONDS, TRUNCATED
from llm_ledger.events.values import JsonPayload, plain_floats

_scrubber = Scrubber([])


def _builder_name(event_type: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def _optional_inner(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, ``(X, False)`` for ``X``, without ``Annotated``'s metadata."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(get_args(annotation)) == 2:
            annotation, optional = members[0], True
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, optional


def _sample(annotation: Any) -> Any:
    """An argument a builder takes for a field of this type (capture records as their JSON values, as the
    executor gives them)."""
    inner, _ = _optional_inner(annotation)
    if get_origin(inner) is Literal:
        return get_args(inner)[0]
    if get_origin(inner) is tuple:
        item, *rest = get_args(inner)
        assert rest == [Ellipsis], f"{annotation}: a payload's tuples are homogeneous"
        return ("openai/gpt-4.1", "groq/llama") if item is str else (_sample(item), _sample(item))
    samples: dict[Any, Any] = {
        str: "some text",
        int: 2,
        float: 12.5,
        bool: True,
        UUID: uuid7(),
        RequestParameters: RequestParameters(temperature=0.5, stop_sequences=("\n",)),
        TokenUsage: TokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
        InputRecord: builders.input_values(
            [("user", "hello"), ("assistant", "", {"tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}]})],
            "full",
            _scrubber,
        ),
        OutputRecord: builders.output_values("hi there", "full", _scrubber),
        OfferedTool: builders.offered_tool_values([("lookup", "ab" * 32)])[0],
        ToolCallRecord: builders.tool_call_values("call_1", "lookup", '{"q": 1}', "full", _scrubber),
    }
    assert inner in samples, f"no example value of {inner} for a builder: add one here"
    return samples[inner]


def _arguments(model: type[BaseModel]) -> dict[str, Any]:
    return {name: _sample(field.annotation) for name, field in model.model_fields.items()}


def _added_later(field: FieldInfo) -> bool:
    return any(isinstance(mark, AddedLater) for mark in field.metadata)


def _mark(field: FieldInfo) -> str | None:
    marks = [m.kind for m in field.metadata if isinstance(m, ProviderSupplied)]
    return marks[0] if marks else None


_EVENT_TYPE_NAMES = sorted(EVENT_TYPES)


# --- the registry --------------------------------------------------------------------------------


def test_each_event_type_is_one_class_named_after_it_with_its_payload_model() -> None:
    for name, cls in EVENT_TYPES.items():
        assert cls.__name__ == name
        assert PAYLOAD_TYPES[name].__name__ == f"{name}Payload"
        assert issubclass(PAYLOAD_TYPES[name], EventPayload)


def test_the_terminal_event_types_are_the_ones_declared_terminal() -> None:
    assert sorted(TERMINAL_EVENT_TYPES) == [
        "ExecutionFailed",
        "ExecutionSucceeded",
        "ToolCallFailed",
        "ToolCallSucceeded",
    ]
    assert not EventEnvelope.terminal


def test_each_event_type_belongs_to_one_kind_of_stream_which_one_type_starts() -> None:
    assert sorted(STREAM_KINDS) == ["execution", "tool_call"]
    kinds = list(STREAM_KINDS.values())
    assert sorted(t for kind in kinds for t in kind.event_types) == sorted(EVENT_TYPES)
    assert set().union(*(kind.terminals for kind in kinds)) == TERMINAL_EVENT_TYPES
    for kind in kinds:
        assert kind.terminals < kind.event_types and kind.start in kind.event_types - kind.terminals
        assert STREAM_KIND_OF_START[kind.start] is kind
    assert STREAM_KINDS["tool_call"].start == "ToolCallStarted"


@pytest.mark.parametrize("event_type", _EVENT_TYPE_NAMES)
def test_parse_event_gives_each_registered_type_its_class(event_type: str) -> None:
    sealer = StreamSealer(StreamHeader(stream_id=uuid7(), tenant_id="t1"))
    payload = PAYLOAD_TYPES[event_type].model_validate(_values(event_type))
    event = sealer.seal(event_type, payload, occurred_at=datetime.now(UTC))
    assert type(parse_event(event.to_record())) is EVENT_TYPES[event_type]


# --- the fast builders (values.py) ----------------------------------------------------------------


def _values(event_type: str, **changes: Any) -> dict[str, Any]:
    build = getattr(builders, _builder_name(event_type))
    values, _ = plain_floats(JsonPayload(build, **{**_arguments(PAYLOAD_TYPES[event_type]), **changes}))
    return values


@pytest.mark.parametrize("event_type", _EVENT_TYPE_NAMES)
def test_every_event_type_has_a_builder_taking_exactly_its_payload_fields(event_type: str) -> None:
    """Every argument required (mypy checks the executor's calls field by field), but an ``AddedLater``
    field's: the callers written before it existed leave it out, with the model's empty default."""
    build = getattr(builders, _builder_name(event_type), None)
    assert build is not None, f"values.{_builder_name(event_type)} builds {event_type}'s payload values"
    parameters = inspect.signature(build).parameters.values()
    fields = PAYLOAD_TYPES[event_type].model_fields
    assert [p.name for p in parameters] == list(fields)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    for p in parameters:
        field = fields[p.name]
        assert p.default == field.default if _added_later(field) else p.default is p.empty, p


@pytest.mark.parametrize("event_type", _EVENT_TYPE_NAMES)
def test_every_builder_gives_exactly_its_models_json_values(event_type: str) -> None:
    model = PAYLOAD_TYPES[event_type]
    values = _values(event_type)
    assert list(values) == list(model.model_fields)
    assert values == model.model_validate(values).model_dump(mode="json")


def _provider_fields(kind: str) -> list[tuple[str, str]]:
    return [
        (event_type, name)
        for event_type, model in sorted(PAYLOAD_TYPES.items())
        for name, field in model.model_fields.items()
        if _mark(field) == kind
    ]


def _plain_fields(*kinds: Any) -> list[tuple[str, str]]:
    return [
        (event_type, name)
        for event_type, model in sorted(PAYLOAD_TYPES.items())
        for name, field in model.model_fields.items()
        if _mark(field) is None and _optional_inner(field.annotation)[0] in kinds
    ]


@pytest.mark.parametrize(("event_type", "field"), _provider_fields("text") + _provider_fields("message"))
def test_a_provider_supplied_text_is_made_storable(event_type: str, field: str) -> None:
    limit = MAX_MESSAGE_CHARS if _mark(PAYLOAD_TYPES[event_type].model_fields[field]) == "message" else MAX_FIELD_CHARS
    assert _values(event_type, **{field: "a\x00b\ud800"})[field] == "a\ufffdb\ufffd"
    cut = _values(event_type, **{field: "y" * (limit + 1)})[field]
    assert len(cut) == limit and cut.endswith(TRUNCATED)


@pytest.mark.parametrize(("event_type", "field"), _provider_fields("seconds"))
def test_a_provider_supplied_duration_is_clamped(event_type: str, field: str) -> None:
    assert _values(event_type, **{field: math.inf})[field] == MAX_RETRY_AFTER_SECONDS
    assert _values(event_type, **{field: -1.0})[field] == 0


@pytest.mark.parametrize(("event_type", "field"), _provider_fields("usage"))
def test_a_provider_supplied_usage_beyond_exact_integers_is_unknown(event_type: str, field: str) -> None:
    usage = TokenUsage(prompt_tokens=2**60, completion_tokens=1, total_tokens=2**60 + 1)
    assert _values(event_type, **{field: usage})[field] is None


@pytest.mark.parametrize(("event_type", "field"), _plain_fields(str))
def test_a_text_the_caller_supplied_is_kept_as_given(event_type: str, field: str) -> None:
    """Checked at the door (``executor.admission``), not rewritten: a NUL here is the store's to refuse."""
    assert _values(event_type, **{field: "a\x00b"})[field] == "a\x00b"


@pytest.mark.parametrize(("event_type", "field"), _plain_fields(float))
def test_a_number_the_caller_supplied_must_be_finite(event_type: str, field: str) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        _values(event_type, **{field: math.inf})


def test_the_marks_cover_what_a_provider_supplies() -> None:
    assert len(_provider_fields("text")) == 7
    assert len(_provider_fields("message")) == 3
    assert len(_provider_fields("seconds")) == 1
    assert len(_provider_fields("usage")) == 2


# --- the envelope as the sealing assembles it -------------------------------------------------------


def _sealed() -> tuple[dict[str, Any], bytes]:
    header = StreamHeader(stream_id=uuid7(), tenant_id="t1", agent_id="a", session_id="s", turn_id="u", step="p")
    sealer = StreamSealer(header)
    build = JsonPayload(builders.fallback_triggered, **_arguments(PAYLOAD_TYPES["FallbackTriggered"]))
    return sealer.draft("FallbackTriggered", build, occurred_at=datetime.now(UTC)).stored_form()


def test_the_sealed_fields_are_the_envelope_fields_in_order() -> None:
    fields, _ = _sealed()
    assert list(fields) == list(ENVELOPE_FIELDS)
    assert type(fields["payload"]) is PayloadJson


def test_the_canonical_form_holds_every_envelope_field_but_the_hash_in_sorted_order() -> None:
    _, canonical = _sealed()
    assert list(orjson.loads(canonical)) == sorted(set(ENVELOPE_FIELDS) - {"hash"})


def test_a_stream_header_holds_envelope_fields_only() -> None:
    # ``content`` says how the stream's content is encrypted: not stored, not compared.
    assert set(StreamHeader.__dataclass_fields__) - {"content"} <= set(ENVELOPE_FIELDS)
    assert not StreamHeader.__dataclass_fields__["content"].compare
