"""The fakes' tool calls, checked against the real SDKs and Agno classes.

Two layers: the raw wire format (each answer parsed with the openai / groq / anthropic SDKs' own
pydantic types, strictly, so a field the SDK does not know or a wrong type fails here), then what Agno's
own classes make of it through ``ainvoke`` / ``ainvoke_stream`` (the calls the executor makes: never
``aresponse``, which would run Agno's tool loop). Last, the tool-conversation rules the fake enforces
like the real APIs, and the dialect-independent views of a recorded request.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anthropic
import groq
import httpx
import openai
import pydantic
import pytest
import pytest_asyncio
from agno.exceptions import ModelProviderError
from agno.models.anthropic import Claude
from agno.models.base import Model
from agno.models.groq import Groq
from agno.models.message import Message
from agno.models.openai import OpenAIChat
from agno.models.openrouter import OpenRouter
from agno.models.response import ModelResponse

from tests.fakes import FakeProviderServer, Reply, ToolCalls, ToolRoundTrip
from tests.fakes.providers import RecordedRequest

os.environ.setdefault("AGNO_TELEMETRY", "false")

Kind = Literal["openai", "openrouter", "groq", "claude"]
KINDS: tuple[Kind, ...] = ("openai", "openrouter", "groq", "claude")
API_KEY = "sk-test-tools"
TWO_CALLS = ToolCalls(
    [("lookup_order", {"order_id": "A1"}), ("refund", {"order_id": "A1", "amount": 12.5})],
    text="Let me check.",
    argument_chunks=4,
)
LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Find an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}
REFUND_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "refund",
        "description": "Refund an order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["order_id"],
        },
    },
}
AGNO_TOOLS = [LOOKUP_TOOL, REFUND_TOOL]
ANTHROPIC_TOOLS = [
    {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in (LOOKUP_TOOL, REFUND_TOOL)
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(server: FakeProviderServer) -> None:
    server.reset()


# --------------------------------------------------------------------------------------------------------
# the wire format, parsed with the SDKs' own types
# --------------------------------------------------------------------------------------------------------

Dialect = Literal["openai", "openrouter", "groq", "anthropic"]


def _post(server: FakeProviderServer, dialect: Dialect, stream: bool, **body: Any) -> httpx.Response:
    path = {
        "openai": f"{server.openai_base_url}/chat/completions",
        "openrouter": f"{server.openrouter_base_url}/chat/completions",
        "groq": f"{server.groq_base_url}/openai/v1/chat/completions",
        "anthropic": f"{server.anthropic_base_url}/v1/messages",
    }[dialect]
    tools = ANTHROPIC_TOOLS if dialect == "anthropic" else AGNO_TOOLS
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "stream": stream}
    payload.update(body)
    return httpx.post(path, json=payload, headers={"authorization": f"Bearer {API_KEY}"})


def _sse_data(response: httpx.Response) -> list[dict[str, Any]]:
    frames = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(frame) for frame in frames if frame != "[DONE]"]


_ANTHROPIC_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


@pytest.mark.parametrize("dialect", ["openai", "openrouter", "groq"])
def test_openai_style_json_tool_calls_parse_with_the_sdk_types(server: FakeProviderServer, dialect: Dialect) -> None:
    server.script("m", TWO_CALLS)
    body = _post(server, dialect, stream=False).json()
    sdk_type = groq.types.chat.ChatCompletion if dialect == "groq" else openai.types.chat.ChatCompletion
    completion = sdk_type.model_validate(body, strict=True)

    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("function", "lookup_order", '{"order_id":"A1"}'),
        ("function", "refund", '{"order_id":"A1","amount":12.5}'),
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2


@pytest.mark.parametrize("dialect", ["openai", "openrouter", "groq"])
def test_openai_style_streamed_tool_calls_parse_with_the_sdk_types(
    server: FakeProviderServer, dialect: Dialect
) -> None:
    server.script("m", TWO_CALLS)
    frames = _sse_data(_post(server, dialect, stream=True, stream_options={"include_usage": True}))
    sdk_type = groq.types.chat.ChatCompletionChunk if dialect == "groq" else openai.types.chat.ChatCompletionChunk
    chunks = [sdk_type.model_validate(frame, strict=True) for frame in frames]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == "Let me check."
    assert finishes == ["tool_calls"]
    # The first delta of each call names it; the others carry only the index and an arguments fragment.
    openings = [d for d in deltas if d.id is not None]
    assert [(d.index, d.type, d.function.name, d.function.arguments) for d in openings] == [  # type: ignore[union-attr]
        (0, "function", "lookup_order", ""),
        (1, "function", "refund", ""),
    ]
    fragments = [d for d in deltas if d.id is None]
    assert all(d.function is not None and d.function.name is None for d in fragments)
    assert len([d for d in fragments if d.index == 0]) > 1, "arguments split across several chunks"
    assembled = {
        i: "".join(d.function.arguments or "" for d in fragments if d.index == i and d.function) for i in (0, 1)
    }
    assert assembled == {0: '{"order_id":"A1"}', 1: '{"order_id":"A1","amount":12.5}'}
    # the calls come after the text, and nothing follows the finish but the usage chunk
    first_call = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.tool_calls)
    last_text = max(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert last_text < first_call


def test_anthropic_json_tool_use_parses_with_the_sdk_type(server: FakeProviderServer) -> None:
    server.script("m", TWO_CALLS)
    message = anthropic.types.Message.model_validate(_post(server, "anthropic", stream=False).json(), strict=True)

    assert message.stop_reason == "tool_use"
    text, *tool_uses = message.content
    assert isinstance(text, anthropic.types.TextBlock) and text.text == "Let me check."
    assert [(b.type, b.name, b.input) for b in tool_uses] == [  # type: ignore[union-attr]
        ("tool_use", "lookup_order", {"order_id": "A1"}),
        ("tool_use", "refund", {"order_id": "A1", "amount": 12.5}),
    ]
    assert all(b.id.startswith("toolu_01") for b in tool_uses)  # type: ignore[union-attr]


def test_anthropic_streamed_tool_use_parses_with_the_sdk_types(server: FakeProviderServer) -> None:
    server.script("m", TWO_CALLS)
    frames = _sse_data(_post(server, "anthropic", stream=True))
    # ping is a keep-alive the SDK skips, not one of the message stream's events
    events = [_ANTHROPIC_EVENT.validate_python(frame) for frame in frames if frame["type"] != "ping"]

    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "tool_use"
    starts = [e for e in events if e.type == "content_block_start"]
    assert [(e.index, e.content_block.type) for e in starts] == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    assert [e.content_block.name for e in starts[1:]] == ["lookup_order", "refund"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert stops == [0, 1, 2]
    # each block is closed before the next opens
    order = [(e.type, getattr(e, "index", None)) for e in events if e.type.startswith("content_block_s")]
    assert order == [(t, i) for i in (0, 1, 2) for t in ("content_block_start", "content_block_stop")]
    partial = {
        i: "".join(
            e.delta.partial_json
            for e in events
            if e.type == "content_block_delta" and e.index == i and e.delta.type == "input_json_delta"
        )
        for i in (1, 2)
    }
    assert partial == {1: '{"order_id":"A1"}', 2: '{"order_id":"A1","amount":12.5}'}
    assert len([e for e in events if e.type == "content_block_delta" and e.index == 1]) > 2


def test_anthropic_sdk_stream_accumulates_the_tool_use_blocks(server: FakeProviderServer) -> None:
    server.script("m", TWO_CALLS)
    client = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=API_KEY, max_retries=0)
    with client.messages.stream(
        model="m",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        tools=ANTHROPIC_TOOLS,  # type: ignore[arg-type]
    ) as stream:
        final = stream.get_final_message()
    client.close()
    assert [b.input for b in final.content if b.type == "tool_use"] == [
        {"order_id": "A1"},
        {"order_id": "A1", "amount": 12.5},
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_malformed_arguments_are_not_json(server: FakeProviderServer, dialect: Dialect, stream: bool) -> None:
    server.script("m", ToolCalls([("lookup_order", {"order_id": "A1"})], malformed=True))
    response = _post(server, dialect, stream=stream)
    if dialect == "anthropic" and not stream:
        (block,) = response.json()["content"]
        assert block["input"] == '{order_id":"A1"}'  # an object on the wire is always JSON: the text instead
        return
    if dialect == "anthropic":
        text = "".join(
            f["delta"]["partial_json"]
            for f in _sse_data(response)
            if f.get("delta", {}).get("type") == "input_json_delta"
        )
    elif stream:
        text = "".join(
            call["function"].get("arguments") or ""
            for f in _sse_data(response)
            for choice in f["choices"]
            for call in choice["delta"].get("tool_calls") or []
        )
    else:
        text = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert text == '{order_id":"A1"}'
    with pytest.raises(ValueError):
        json.loads(text)


def test_arguments_given_as_text_go_out_verbatim_and_ids_can_be_fixed(server: FakeProviderServer) -> None:
    server.script("m", ToolCalls([("lookup_order", "not json at all"), ("refund", {})], ids=["call_a", "call_b"]))
    message = _post(server, "openai", stream=False).json()["choices"][0]["message"]
    assert message["content"] is None  # no text: content null beside the calls, as OpenAI sends it
    assert [(c["id"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        ("call_a", "not json at all"),
        ("call_b", "{}"),
    ]


def test_tool_calls_needs_a_call_and_one_id_per_call() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ToolCalls([])
    with pytest.raises(ValueError, match="1 ids for 2 calls"):
        ToolCalls([("a", {}), ("b", {})], ids=["x"])


# --------------------------------------------------------------------------------------------------------
# Agno's own classes through ainvoke / ainvoke_stream
# --------------------------------------------------------------------------------------------------------


def _model(kind: Kind, server: FakeProviderServer, model_id: str) -> Model:
    if kind == "claude":
        params = {"base_url": server.anthropic_base_url, "max_retries": 0}
        return Claude(id=model_id, api_key=API_KEY, retries=0, client_params=params)
    if kind == "groq":
        return Groq(id=model_id, api_key=API_KEY, base_url=server.groq_base_url, max_retries=0, retries=0)
    cls = OpenRouter if kind == "openrouter" else OpenAIChat
    base_url = server.openrouter_base_url if kind == "openrouter" else server.openai_base_url
    return cls(id=model_id, api_key=API_KEY, base_url=base_url, max_retries=0, retries=0)


@pytest_asyncio.fixture
async def models(server: FakeProviderServer) -> AsyncIterator[dict[Kind, Model]]:
    built = {kind: _model(kind, server, f"{kind}-tools") for kind in KINDS}
    yield built
    for model in built.values():
        client = getattr(model, "async_client", None)
        if client is not None:
            await client.close()


def _model_id(kind: Kind) -> str:
    return f"{kind}-tools"


def _agno_calls(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


async def _stream(model: Model, messages: list[Message]) -> list[ModelResponse]:
    items: list[ModelResponse] = []
    async for item in model.ainvoke_stream(
        messages=messages, assistant_message=Message(role="assistant"), tools=AGNO_TOOLS
    ):
        assert isinstance(item, ModelResponse)
        items.append(item)
    return items


def _assembled(kind: Kind, items: list[ModelResponse]) -> list[dict[str, Any]]:
    """What a client must do with Agno's raw stream items: OpenAI-style classes yield the SDK's delta
    objects (fragments to merge by index), Claude yields each call complete at its block's stop."""
    if kind == "claude":
        return [call for item in items for call in item.tool_calls or []]
    deltas: list[Any] = [delta for item in items for delta in item.tool_calls or []]  # ChoiceDeltaToolCall
    return OpenAIChat.parse_tool_calls(deltas)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_agno_ainvoke_returns_parallel_calls_and_text(
    server: FakeProviderServer, models: dict[Kind, Model], kind: Kind
) -> None:
    server.script(_model_id(kind), TWO_CALLS)
    response = await models[kind].ainvoke(
        messages=[Message(role="user", content="hi")], assistant_message=Message(role="assistant"), tools=AGNO_TOOLS
    )
    assert response.content == "Let me check."
    calls = _agno_calls(response.tool_calls)
    if kind == "claude":  # Claude re-serialises the parsed input with json.dumps (spaces after separators)
        assert calls == [("lookup_order", '{"order_id": "A1"}'), ("refund", '{"order_id": "A1", "amount": 12.5}')]
    else:
        assert calls == [("lookup_order", '{"order_id":"A1"}'), ("refund", '{"order_id":"A1","amount":12.5}')]
    (request,) = server.requests_for(_model_id(kind))
    assert request.tool_names == ["lookup_order", "refund"]
    assert request.rejected is None


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_agno_ainvoke_stream_yields_text_then_call_deltas(
    server: FakeProviderServer, models: dict[Kind, Model], kind: Kind
) -> None:
    server.script(_model_id(kind), TWO_CALLS)
    items = await _stream(models[kind], [Message(role="user", content="hi")])

    assert "".join(item.content for item in items if isinstance(item.content, str)) == "Let me check."
    calls = _assembled(kind, items)
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"order_id": "A1"},
        {"order_id": "A1", "amount": 12.5},
    ]
    assert [c["function"]["name"] for c in calls] == ["lookup_order", "refund"]
    assert all(c["id"] for c in calls)
    if kind != "claude":
        assert sum(1 for item in items if item.tool_calls) > 2, "OpenAI-style streams carry fragments"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_agno_passes_malformed_arguments_through_except_claude_streams(
    server: FakeProviderServer, models: dict[Kind, Model], kind: Kind
) -> None:
    model_id = _model_id(kind)
    server.script(model_id, ToolCalls(malformed=True), ToolCalls(malformed=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = await models[kind].ainvoke(
            messages=[Message(role="user", content="hi")],
            assistant_message=Message(role="assistant"),
            tools=AGNO_TOOLS,
        )
    ((name, arguments),) = _agno_calls(response.tool_calls)
    assert name == "lookup_order"
    if kind == "claude":
        # Claude's non-streamed input arrives as a string, which Agno re-encodes: JSON, but not an object
        # (and pydantic warns that a tool_use block's input is not a dict when Agno dumps the blocks).
        assert json.loads(arguments) == '{order_id":"A1"}'
        assert any("input" in str(w.message) for w in caught)
    else:
        assert arguments == '{order_id":"A1"}'

    if kind == "claude":
        # The anthropic SDK parses partial_json as it accumulates and raises mid-stream; Agno wraps it.
        with pytest.raises(ModelProviderError) as info:
            await _stream(models[kind], [Message(role="user", content="hi")])
        assert "Unable to parse tool parameter JSON" in str(info.value)
    else:
        ((call),) = _assembled(kind, await _stream(models[kind], [Message(role="user", content="hi")]))
        assert call["function"]["arguments"] == '{order_id":"A1"}'


def _tool_conversation(call_ids: tuple[str, str]) -> list[Message]:
    """A conversation as Agno holds it after one tool round trip: the assistant's calls, then one tool
    result per call."""
    first, second = call_ids
    return [
        Message(role="system", content="You help with orders."),
        Message(role="user", content="Where is A1? Refund it."),
        Message(
            role="assistant",
            content="Let me check.",
            tool_calls=[
                {
                    "id": first,
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id":"A1"}'},
                },
                {"id": second, "type": "function", "function": {"name": "refund", "arguments": '{"order_id":"A1"}'}},
            ],
        ),
        Message(role="tool", tool_call_id=first, tool_name="lookup_order", content='{"status":"shipped"}'),
        Message(role="tool", tool_call_id=second, tool_name="refund", content="refunded"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("ids", [("call_1", "call_2"), ("toolu_01a", "toolu_01b")], ids=["openai-ids", "claude-ids"])
@pytest.mark.parametrize("kind", KINDS)
async def test_each_class_sends_a_tool_conversation_its_api_accepts(
    server: FakeProviderServer, models: dict[Kind, Model], kind: Kind, ids: tuple[str, str]
) -> None:
    server.script(_model_id(kind), Reply(text="A1 is shipped and refunded."))
    response = await models[kind].ainvoke(
        messages=_tool_conversation(ids), assistant_message=Message(role="assistant"), tools=AGNO_TOOLS
    )
    assert response.content == "A1 is shipped and refunded."
    (request,) = server.requests_for(_model_id(kind))
    assert request.rejected is None
    sent = request.tool_calls_sent
    results = request.tool_results
    assert [(c.name, c.arguments) for c in sent] == [
        ("lookup_order", {"order_id": "A1"}),
        ("refund", {"order_id": "A1"}),
    ]
    assert [r.content for r in results] == ['{"status":"shipped"}', "refunded"]
    assert [r.tool_call_id for r in results] == [c.id for c in sent]  # each result answers its call
    if kind == "claude":
        # tool_use blocks in the assistant message, tool_result blocks in the user message after it
        assistant, tool_user = request.messages[-2:]
        assert [b["type"] for b in assistant["content"]] == ["text", "tool_use", "tool_use"]
        assert tool_user["role"] == "user"
        assert [b["type"] for b in tool_user["content"]] == ["tool_result", "tool_result"]
        assert [c.id for c in sent] == list(ids)
    else:
        assert [m["role"] for m in request.messages[-3:]] == ["assistant", "tool", "tool"]
        if kind == "openai" or kind == "openrouter":
            # OpenAIChat re-numbers ids that are not OpenAI's own (call_...), consistently
            assert all(c.id.startswith("call_") for c in sent)
        else:
            assert [c.id for c in sent] == list(ids)


# --------------------------------------------------------------------------------------------------------
# the rules the real APIs enforce, and the views of a recorded request
# --------------------------------------------------------------------------------------------------------


def test_a_tool_message_sent_to_anthropic_is_refused(server: FakeProviderServer) -> None:
    server.script("m", Reply(text="never sent"))
    response = _post(
        server,
        "anthropic",
        stream=False,
        messages=[{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "r"}],
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "messages.1.role: Input should be 'user' or 'assistant'"
    (request,) = server.requests
    assert request.rejected == "messages.1.role: Input should be 'user' or 'assistant'"
    assert server.pending("m") == 1  # the scripted behaviour is still queued for the next request


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}]},
                {"role": "user", "content": "what now"},
            ],
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1.",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "r"}]},
            ],
            "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9.",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call.1", "name": "x", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call.1", "content": "r"}]},
            ],
            "messages.1.content.0.tool_use.id: String should match pattern",
        ),
    ],
    ids=["unanswered", "orphan-result", "bad-id"],
)
def test_anthropic_tool_conversation_rules(
    server: FakeProviderServer, messages: list[dict[str, Any]], error: str
) -> None:
    response = _post(server, "anthropic", stream=False, messages=messages)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(error)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "x", "arguments": "{}"}}],
                    },
                    {"role": "user", "content": "what now"},
                ]
            },
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            "'tool_call_id'. The following tool_call_ids did not have response messages: c1",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c9", "content": "r"}]},
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
            "'tool_calls'.",
        ),
        (
            {"tools": None, "tool_choice": "auto"},
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ),
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "Invalid value for 'tool_choice': no function named 'nope' was specified in 'tools'.",
        ),
    ],
    ids=["unanswered", "orphan-result", "choice-without-tools", "unknown-named-choice"],
)
@pytest.mark.parametrize("dialect", ["openai", "openrouter", "groq"])
def test_openai_style_tool_conversation_rules(
    server: FakeProviderServer, dialect: Dialect, body: dict[str, Any], error: str
) -> None:
    payload = dict(body)
    if payload.get("tools", "") is None:
        payload.pop("tools")
        response = httpx.post(
            {
                "openai": f"{server.openai_base_url}/chat/completions",
                "openrouter": f"{server.openrouter_base_url}/chat/completions",
                "groq": f"{server.groq_base_url}/openai/v1/chat/completions",
            }[dialect],
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], **payload},
        )
    else:
        response = _post(server, dialect, stream=False, **payload)
    assert response.status_code == 400
    assert error in json.dumps(response.json()) or error in response.json()["error"]["message"]


def test_the_views_of_a_recorded_request_read_both_dialects(server: FakeProviderServer) -> None:
    _post(
        server,
        "openai",
        stream=False,
        tool_choice="required",
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        ],
    )
    _post(
        server,
        "anthropic",
        stream=False,
        tool_choice={"type": "any"},
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "refund", "input": {"a": 1}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "r2"}]}],
            },
        ],
    )
    openai_request, anthropic_request = server.requests
    assert isinstance(openai_request, RecordedRequest)
    assert (openai_request.tool_names, openai_request.tool_choice) == (["lookup_order", "refund"], "required")
    assert [(c.id, c.name, c.arguments) for c in openai_request.tool_calls_sent] == [("c1", "lookup_order", {})]
    assert [(r.tool_call_id, r.content) for r in openai_request.tool_results] == [("c1", "r1")]
    assert anthropic_request.tool_choice == {"type": "any"}
    assert anthropic_request.tool_names == ["lookup_order", "refund"]
    assert [(c.id, c.name, c.arguments) for c in anthropic_request.tool_calls_sent] == [("t1", "refund", {"a": 1})]
    assert [(r.tool_call_id, r.content) for r in anthropic_request.tool_results] == [("t1", "r2")]
    assert openai_request.rejected is None and anthropic_request.rejected is None


def test_a_recorded_request_knows_the_request_id_it_was_answered_with(server: FakeProviderServer) -> None:
    from tests.fakes import RateLimited, Stall

    server.script("m", Reply(request_id="req_fixed"), RateLimited(retry_after=0), Reply(), Reply(), Stall(0.01))
    answers = [_post(server, "openai", stream=False) for _ in range(3)]
    anthropic_answer = _post(server, "anthropic", stream=True)
    with pytest.raises(httpx.HTTPError):
        _post(server, "openai", stream=False)
    recorded = [r.request_id for r in server.requests]
    assert recorded[:4] == [
        *(answer.headers["x-request-id"] for answer in answers),
        anthropic_answer.headers["request-id"],
    ]
    assert recorded[0] == "req_fixed"
    assert recorded[4] is None  # a stalled request got no answer, so no id


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_tool_round_trip_asks_until_it_is_sent_the_result_then_answers(
    server: FakeProviderServer, dialect: Dialect
) -> None:
    server.default("m", ToolRoundTrip(calls=(("lookup_order", {"order_id": "A1"}),), text="A1 is shipped."))
    first = _post(server, dialect, False).json()
    asked: dict[str, Any]
    if dialect == "anthropic":
        (block,) = first["content"]
        call_id = block["id"]
        asked = {"role": "assistant", "content": [block]}
        answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "shipped"}]}
    else:
        (call,) = first["choices"][0]["message"]["tool_calls"]
        call_id = call["id"]
        asked = {"role": "assistant", "content": None, "tool_calls": [call]}
        answer = {"role": "tool", "tool_call_id": call_id, "content": "shipped"}
    again = _post(server, dialect, False).json()  # another conversation, not sent a result: asks again
    messages = [{"role": "user", "content": "hi"}, asked, answer]
    second = _post(server, dialect, False, messages=messages).json()
    assert ("tool_use" if dialect == "anthropic" else "tool_calls") in str(again)
    text = second["content"][0]["text"] if dialect == "anthropic" else second["choices"][0]["message"]["content"]
    assert text == "A1 is shipped."
    assert [r.rejected for r in server.requests] == [None, None, None]
