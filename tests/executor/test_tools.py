"""Tools as the executor takes them: ``ToolSpec`` built from functions and models, its digest, the check of
a model's requested calls, and the door that refuses tools, tool choices and tool messages no provider or
event could take."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from llm_ledger import (
    ConfigurationError,
    InMemorySink,
    InvalidInputError,
    InvalidOutputError,
    LLMExecutor,
    LLMMessage,
    ToolCall,
    ToolSpec,
    execution_context,
)
from llm_ledger.events import canonical_json, sha256_hex
from llm_ledger.executor import parse_model_string
from llm_ledger.executor.tools import RequestedToolCall, checked_tool_calls

ROUTE = parse_model_string("mock/m")


def get_weather(city: str, units: Literal["c", "f"] = "c", days: int = 1, exact: bool = False) -> str:
    """Today's weather in a city.

    A second paragraph, not part of the description."""
    return city


class Order(BaseModel):
    """Find an order by its id."""

    order_id: str
    include_items: bool = False


# --- ToolSpec builders ---------------------------------------------------------------------------------


def test_a_tool_from_a_typed_function_takes_its_name_first_paragraph_and_parameters() -> None:
    spec = ToolSpec.from_function(get_weather)
    assert spec.name == "get_weather"
    assert spec.description == "Today's weather in a city."
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "units": {"enum": ["c", "f"], "type": "string", "default": "c"},
            "days": {"type": "integer", "default": 1},
            "exact": {"type": "boolean", "default": False},
        },
        "required": ["city"],
    }


def test_a_function_tool_keeps_field_descriptions_and_accepts_a_name_and_description() -> None:
    def lookup(query: Annotated[str, Field(description="what to look for")], limit: int | None = None) -> None:
        pass

    spec = ToolSpec.from_function(lookup, name="search", description="Search the knowledge base.")
    assert (spec.name, spec.description) == ("search", "Search the knowledge base.")
    assert spec.parameters["properties"]["query"] == {"type": "string", "description": "what to look for"}
    assert spec.parameters["required"] == ["query"]
    assert "limit" in spec.parameters["properties"]


def test_a_function_without_parameters_or_docstring_is_an_empty_object_schema() -> None:
    def ping() -> str:
        return "pong"

    spec = ToolSpec.from_function(ping)
    assert spec.description == ""
    assert spec.parameters == {"type": "object", "properties": {}}


def _variadic(*values: int) -> None:
    pass


def _keywords(**options: str) -> None:
    pass


def _unannotated(city, days: int = 1) -> None:  # type: ignore[no-untyped-def]
    pass


def _positional(city: str, /) -> None:
    pass


def _private(_city: str) -> None:
    pass


class _Opaque:
    pass


def _opaque(thing: _Opaque) -> None:
    pass


def _unresolved(thing: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
    pass


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (_variadic, r"parameter 'values' is \*values"),
        (_keywords, r"parameter 'options' is \*\*options"),
        (_unannotated, r"parameter 'city' has no type annotation"),
        (_positional, r"parameter 'city' is positional-only"),
        (lambda city: city, r"would be named '<lambda>'"),
        (_private, r"parameter '_city' starts with '_'"),
        (_opaque, r"tool '_opaque': its parameters make no schema: Unable to generate pydantic-core schema"),
        (_unresolved, r"cannot read the parameters of .*name 'Missing' is not defined"),
    ],
)
def test_a_function_whose_parameters_make_no_schema_is_refused_naming_the_parameter(
    function: object, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        ToolSpec.from_function(function)  # type: ignore[arg-type]


def test_a_tool_from_a_callable_object_or_a_partial_reads_the_annotations_where_they_are() -> None:
    class Forecast:
        """Forecast the weather."""

        def __call__(self, city: str, days: int = 3) -> str:
            return city

    spec = ToolSpec.from_function(Forecast(), name="forecast")
    assert (spec.description, spec.parameters["required"]) == ("Forecast the weather.", ["city"])
    partial = ToolSpec.from_function(functools.partial(get_weather, days=5), name="five_days")
    assert partial.description == "Today's weather in a city."
    assert partial.parameters["properties"]["days"] == {"type": "integer", "default": 5}


def test_a_tool_from_a_pydantic_model_takes_its_docstring_and_schema() -> None:
    spec = ToolSpec.from_model(Order, name="find_order")
    assert spec.name == "find_order"
    assert spec.description == "Find an order by its id."
    assert spec.parameters["required"] == ["order_id"]
    assert set(spec.parameters["properties"]) == {"order_id", "include_items"}
    assert "title" not in spec.parameters and "description" not in spec.parameters


def test_a_model_without_a_docstring_does_not_borrow_base_models() -> None:
    class Bare(BaseModel):
        x: int

    assert ToolSpec.from_model(Bare).description == ""
    with pytest.raises(ConfigurationError, match="pydantic model class"):
        ToolSpec.from_model(get_weather)  # type: ignore[arg-type]


def test_the_digest_is_the_sha256_of_the_canonical_json_of_name_description_and_parameters() -> None:
    spec = ToolSpec.from_function(get_weather)
    expected = sha256_hex(
        canonical_json({"name": spec.name, "description": spec.description, "parameters": spec.parameters})
    )
    assert spec.digest() == expected
    assert ToolSpec.from_function(get_weather).digest() == expected, "the same definition, the same digest"
    assert ToolSpec.from_function(get_weather, description="other").digest() != expected
    reordered = ToolSpec(
        name=spec.name, description=spec.description, parameters=dict(reversed(spec.parameters.items()))
    )
    assert reordered.digest() == expected, "canonical: key order does not matter"


# --- checked_tool_calls --------------------------------------------------------------------------------


TOOLS = {"get_weather": ToolSpec.from_function(get_weather)}


def test_a_valid_call_is_parsed_and_keeps_its_raw_text_and_execution() -> None:
    execution_id = uuid.uuid4()
    raw = '{"city": "Paris",  "days": 3}'
    (call,) = checked_tool_calls([RequestedToolCall("c1", "get_weather", raw)], TOOLS, ROUTE, execution_id)
    assert call == ToolCall(
        id="c1",
        name="get_weather",
        arguments={"city": "Paris", "days": 3},
        arguments_json=raw,
        execution_id=execution_id,
    )


def test_empty_arguments_are_no_arguments() -> None:
    tools = {"ping": ToolSpec(name="ping")}
    (call,) = checked_tool_calls([RequestedToolCall("c1", "ping", "")], tools, ROUTE, uuid.uuid4())
    assert call.arguments == {}


SCHEMA_VIOLATION = "tool call 'c9' to 'get_weather': the arguments do not match the tool's schema: "
"""How a schema violation's message starts: the call, the tool (not the problems twice), what is wrong."""


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        (
            "get_time",
            "{}",
            r"tool call 'c9' to a tool name of 8 characters: no such tool was offered \(offered: 'get_weather'\)",
        ),
        ("get_weather", '{"city": ', r"tool call 'c9' to 'get_weather': the arguments are not valid JSON"),
        ("get_weather", '["Paris"]', r"the arguments are a JSON array, not an object"),
        ("get_weather", "{}", rf"{SCHEMA_VIOLATION}<arguments>: breaks 'required' \(\['city'\]\)$"),
        ("get_weather", '{"city": "x", "days": "3"}', rf"{SCHEMA_VIOLATION}days: breaks 'type' \('integer'\)$"),
        ("get_weather", '{"city": "x", "units": "k"}', rf"{SCHEMA_VIOLATION}units: breaks 'enum' \(\['c', 'f'\]\)$"),
    ],
)
def test_an_invalid_call_is_an_invalid_output_naming_the_call_and_the_problem(
    name: str, arguments: str, expected: str
) -> None:
    with pytest.raises(InvalidOutputError, match=expected) as raised:
        checked_tool_calls([RequestedToolCall("c9", name, arguments)], TOOLS, ROUTE, uuid.uuid4())
    assert raised.value.error_type == "invalid_output"
    assert (raised.value.model, raised.value.provider) == ("mock/m", "mock")


@pytest.mark.parametrize(
    "arguments", ['{"city": "secret-value-1", "days": "secret-value-2"}', '{"city": "secret-value-1", ']
)
def test_an_invalid_calls_message_never_quotes_the_arguments(arguments: str) -> None:
    """The message is stored in AttemptFailed whatever the capture policy keeps of the arguments."""
    with pytest.raises(InvalidOutputError) as raised:
        checked_tool_calls([RequestedToolCall("c9", "get_weather", arguments)], TOOLS, ROUTE, uuid.uuid4())
    assert "secret-value" not in raised.value.message


@pytest.mark.parametrize(
    ("call", "tools"),
    [
        (RequestedToolCall("c9", "secret-value-in-a-tool-name", "{}"), TOOLS),
        (RequestedToolCall("c9", "get_weather: secret-value", "{}"), TOOLS),
        (RequestedToolCall("secret-value in an id", "get_weather", "{}"), TOOLS),
        (
            RequestedToolCall("c9", "tag", '{"labels": {"secret-value": 3}}'),
            {
                "tag": ToolSpec(
                    name="tag",
                    parameters={
                        "type": "object",
                        "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}}},
                    },
                )
            },
        ),
    ],
)
def test_an_invalid_calls_message_quotes_no_name_id_or_key_the_model_made_up(
    call: RequestedToolCall, tools: dict[str, ToolSpec]
) -> None:
    """Only an offered tool's name, an id that looks like one, and keys the schema declares are quoted."""
    with pytest.raises(InvalidOutputError) as raised:
        checked_tool_calls([call], tools, ROUTE, uuid.uuid4())
    assert "secret-value" not in raised.value.message
    assert "characters" in raised.value.message or "<undeclared key>" in raised.value.message


def test_a_violation_under_an_undeclared_key_names_the_declared_path_around_it() -> None:
    tool = ToolSpec(
        name="tag",
        parameters={
            "type": "object",
            "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}}},
        },
    )
    with pytest.raises(InvalidOutputError, match=r"labels\.<undeclared key>: breaks 'type' \('string'\)"):
        checked_tool_calls([RequestedToolCall("c1", "tag", '{"labels": {"x": 3}}')], {"tag": tool}, ROUTE, uuid.uuid4())


def test_two_calls_with_one_id_are_an_invalid_output() -> None:
    calls = [
        RequestedToolCall("c1", "get_weather", '{"city": "a"}'),
        RequestedToolCall("c1", "get_weather", '{"city": "b"}'),
    ]
    with pytest.raises(InvalidOutputError, match="tool call 'c1': the answer uses this id for more than one call"):
        checked_tool_calls(calls, TOOLS, ROUTE, uuid.uuid4())


def test_a_hand_written_tool_call_derives_one_form_of_its_arguments_from_the_other() -> None:
    assert ToolCall(id="c", name="t", arguments={"a": 1}).arguments_json == '{"a":1}'
    assert ToolCall(id="c", name="t", arguments_json='{"a": 1}').arguments == {"a": 1}
    both = ToolCall(id="c", name="t", arguments={"a": 2}, arguments_json='{"a": 1}')
    assert (both.arguments, both.arguments_json) == ({"a": 2}, '{"a": 1}'), "both given: kept as given"


# --- admission -----------------------------------------------------------------------------------------


MESSAGES = [LLMMessage(role="user", content="weather?")]
WEATHER = ToolSpec.from_function(get_weather)


@pytest.mark.parametrize(
    ("tools", "tool_choice", "field", "expected"),
    [
        ([ToolSpec(name="has space")], None, "tools[0].name", "is not a tool name"),
        ([ToolSpec(name="x" * 65)], None, "tools[0].name", "is not a tool name"),
        ([ToolSpec(name="get_weather\n")], None, "tools[0].name", "is not a tool name"),
        ([ToolSpec(name="t", description="\ud800")], None, "tools[0]", "has no canonical JSON form"),
        ([WEATHER, WEATHER], None, "tools[1].name", r"offered twice \(also tools\[0\]\)"),
        ([ToolSpec(name="t", parameters={"type": "string"})], None, "tools[0].parameters", "must be an object schema"),
        (
            [ToolSpec(name="t", parameters={"type": "object", "properties": 3})],
            None,
            "tools[0].parameters",
            "is not a valid JSON schema",
        ),
        ([WEATHER], "sometimes", "tool_choice", "must be 'auto', 'none', 'required' or the name of an offered tool"),
        ([WEATHER], "get_time", "tool_choice", r"\('get_weather'\), not 'get_time'"),
        ([], "auto", "tool_choice", "no tools are offered"),
        (None, "", "tool_choice", "no tools are offered"),
        (
            [ToolSpec(name="t", parameters={"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}})],
            None,
            "tools[0].parameters",
            r"the \$ref '#/\$defs/A' resolves to nothing in the schema",
        ),
        (
            [ToolSpec(name="t", parameters={"type": "object", "properties": {"a": {"$ref": "https://example.com/a"}}})],
            None,
            "tools[0].parameters",
            "resolves to nothing",
        ),
        ("get_weather", None, "tools", "must be a list of ToolSpec"),
        ([{"name": "t"}], None, "tools[0]", "must be a ToolSpec, not dict"),
    ],
)
async def test_bad_tools_and_tool_choices_are_refused_before_any_event(
    tools: object, tool_choice: str | None, field: str, expected: str
) -> None:
    sink = InMemorySink()
    executor = LLMExecutor("mock/m", sink=sink)
    with execution_context(tenant_id="t"), pytest.raises(InvalidInputError, match=expected) as raised:
        await executor.generate(MESSAGES, tools=tools, tool_choice=tool_choice)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert len(sink) == 0


CALL = ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})


@pytest.mark.parametrize(
    ("message", "field", "expected"),
    [
        (
            LLMMessage(role="user", content="x", tool_calls=(CALL,)),
            "messages[1].tool_calls",
            "not by a message of role 'user'",
        ),
        (
            LLMMessage(role="assistant", tool_call_id="c1"),
            "messages[1].tool_call_id",
            "not by a message of role 'assistant'",
        ),
        (LLMMessage(role="tool", content="r", tool_call_id="c\x00"), "messages[1].tool_call_id", "NUL"),
        (LLMMessage(role="tool", content="r", tool_call_id="c1"), "messages[1].tool_call_id", "answers no tool call"),
        (LLMMessage(role="assistant", tool_calls=(CALL, CALL)), "messages[1].tool_calls", "'c1' more than once"),
        (
            LLMMessage(role="assistant", tool_calls=(ToolCall(id="c1", name="get\ud800"),)),
            "messages[1].tool_calls[0].name",
            "surrogate",
        ),
    ],
)
async def test_tool_fields_on_the_wrong_message_unstorable_or_answering_nothing_are_refused_naming_the_field(
    message: LLMMessage, field: str, expected: str
) -> None:
    sink = InMemorySink()
    executor = LLMExecutor("mock/m", sink=sink)
    with execution_context(tenant_id="t"), pytest.raises(InvalidInputError, match=expected) as raised:
        await executor.generate([*MESSAGES, message], tools=[WEATHER])
    assert raised.value.field == field
    assert len(sink) == 0


async def test_a_tool_result_answering_an_earlier_call_is_accepted_and_a_role_tool_message_without_id_still_is() -> (
    None
):
    executor = LLMExecutor("mock/m?p50_ms=0", sink=InMemorySink())
    conversation = [
        *MESSAGES,
        LLMMessage(role="assistant", tool_calls=(CALL,)),
        LLMMessage(role="tool", content="sunny", tool_call_id="c1", name="get_weather"),
        LLMMessage(role="tool", content="a tool message of before tools, with no id"),
    ]
    with execution_context(tenant_id="t"):
        response = await executor.generate(conversation, tools=[WEATHER])
    assert response.tool_calls == ()
