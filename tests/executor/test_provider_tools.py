"""Tool calls on each provider, through the real Agno classes and SDKs against the fake servers.

First the client (``AgnoModelClient``: one attempt, what reaches the wire and what comes back), then
the executor (``generate``/``generate_stream`` with tools: events, fallbacks, the requests the server
saw).
"""

from __future__ import annotations

import copy
import json
import uuid
import warnings
from typing import Any

import pytest

from llm_ledger import (
    InMemorySink,
    LLMExecutor,
    LLMResponse,
    StreamInterruptedError,
    execution_context,
    verify_chain,
)
from llm_ledger.events import AttemptSucceededPayload
from llm_ledger.executor import ProviderSettings, RetryPolicy
from llm_ledger.executor.agno_client import AgnoModelClient
from llm_ledger.executor.client import CallParams, Completion
from llm_ledger.executor.errors import InvalidOutputError, ProviderConnectionError
from llm_ledger.executor.routing import parse_model_string, resolve_settings
from llm_ledger.executor.tools import RequestedToolCall, ToolCall, ToolSpec
from llm_ledger.executor.types import LLMMessage
from tests.executor.ledger import Ledger
from tests.fakes import FakeProviderServer, RateLimited, Reply, ToolCalls
from tests.fakes.providers import RecordedRequest
from tests.revealed import made_here, revealed_event

PROVIDERS = ["openai", "openrouter", "groq", "anthropic"]
OPENAI_STYLE = ["openai", "openrouter", "groq"]

LOOKUP = ToolSpec(
    name="lookup_order",
    description="Find an order by its id.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "The order's id."}},
        "required": ["order_id"],
    },
)
REFUND = ToolSpec(
    name="refund",
    description="Refund an order.",
    parameters={
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "description": "The order's id."},
            "amount": {"type": "number", "description": "How much."},
            # a nested object: Claude's formatter adds additionalProperties to it, on its own copy
            "reason": {"type": "object", "properties": {"code": {"type": "string"}}},
        },
        "required": ["order_id"],
    },
)
TOOLS = (LOOKUP, REFUND)
ASK = [LLMMessage(role="system", content="You help with orders."), LLMMessage(role="user", content="Where is A1?")]
TWO_CALLS = ToolCalls(
    [("lookup_order", {"order_id": "A1"}), ("refund", {"order_id": "A1", "amount": 12.5})],
    text="Let me check.",
    argument_chunks=4,
)


def _client(provider: str, providers: dict[str, ProviderSettings], model_id: str = "m-1") -> AgnoModelClient:
    route = parse_model_string(f"{provider}/{model_id}")
    return AgnoModelClient(route, resolve_settings(route.provider, providers))


def _params(tools: tuple[ToolSpec, ...] = TOOLS, tool_choice: str | None = None) -> CallParams:
    return CallParams(timeout=30.0, tools=tools, tool_choice=tool_choice)


async def _stream(
    client: AgnoModelClient, messages: list[LLMMessage], params: CallParams
) -> tuple[list[str], Completion]:
    result = Completion()
    chunks = [chunk async for chunk in client.stream(messages, params, result)]
    return chunks, result


def _arguments(calls: list[RequestedToolCall]) -> list[tuple[str, dict[str, Any]]]:
    return [(call.name, json.loads(call.arguments)) for call in calls]


def _only_request(server: FakeProviderServer, model: str = "m-1") -> RecordedRequest:
    (request,) = server.requests_for(model)
    assert request.rejected is None, request.rejected
    return request


# --------------------------------------------------------------------------------------------------------
# the client: what reaches the wire
# --------------------------------------------------------------------------------------------------------

WIRE_CHOICE: dict[str, dict[str | None, Any]] = {
    "openai-style": {
        None: None,
        "auto": "auto",
        "none": "none",
        "required": "required",
        "refund": {"type": "function", "function": {"name": "refund"}},
    },
    "anthropic": {
        None: None,
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
        "refund": {"type": "tool", "name": "refund"},
    },
}


@pytest.mark.parametrize("choice", [None, "auto", "none", "required", "refund"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tools_and_tool_choice_reach_each_provider_in_its_own_form(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str, choice: str | None
) -> None:
    server.script("m-1", Reply(text="no tool needed"))
    completion = await _client(provider, providers).complete(ASK, _params(tool_choice=choice))
    assert completion.text == "no tool needed" and completion.tool_calls == []

    request = _only_request(server)
    assert request.tool_names == ["lookup_order", "refund"]
    dialect = "anthropic" if provider == "anthropic" else "openai-style"
    assert request.tool_choice == WIRE_CHOICE[dialect][choice]
    first = request.body["tools"][0]
    if provider == "anthropic":
        assert first["description"] == "Find an order by its id."
        assert first["input_schema"]["properties"]["order_id"] == {"type": "string", "description": "The order's id."}
        assert first["input_schema"]["required"] == ["order_id"]
    else:
        assert first == {"type": "function", "function": LOOKUP.model_dump()}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_call_without_tools_sends_no_tools(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str
) -> None:
    completion = await _client(provider, providers).complete(ASK, CallParams(timeout=30.0))
    assert completion.tool_calls == []
    request = _only_request(server)
    assert "tools" not in request.body and "tool_choice" not in request.body


async def test_claude_formatting_leaves_the_tool_spec_as_it_was(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    before = copy.deepcopy(REFUND.parameters)
    client = _client("anthropic", providers)
    await client.complete(ASK, _params())
    await client.complete(ASK, _params())
    assert REFUND.parameters == before
    sent = [r.body["tools"][1]["input_schema"] for r in server.requests_for("m-1")]
    assert sent[0] == sent[1]  # the second call is formatted from the same, untouched schema
    assert sent[0]["properties"]["reason"]["additionalProperties"] is False  # Claude's own formatting


# --------------------------------------------------------------------------------------------------------
# the client: what comes back
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_complete_returns_parallel_calls_as_the_provider_wrote_them(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str
) -> None:
    server.script("m-1", TWO_CALLS)
    completion = await _client(provider, providers).complete(ASK, _params())

    assert completion.text == "Let me check."
    assert _arguments(completion.tool_calls) == [
        ("lookup_order", {"order_id": "A1"}),
        ("refund", {"order_id": "A1", "amount": 12.5}),
    ]
    prefix = "toolu_01" if provider == "anthropic" else "call_"
    assert all(call.id.startswith(prefix) for call in completion.tool_calls)
    assert len({call.id for call in completion.tool_calls}) == 2
    # the provider's own word is kept (the executor reports "tool_calls" whatever it is)
    assert completion.finish_reason == ("tool_use" if provider == "anthropic" else "tool_calls")
    assert completion.request_id is not None and completion.request_id.startswith("req_")
    assert completion.usage is not None and completion.usage.prompt_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_yields_text_as_it_arrives_and_the_calls_at_the_end(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str
) -> None:
    server.script("m-1", TWO_CALLS)
    client = _client(provider, providers)
    result = Completion()
    chunks: list[str] = []
    async for chunk in client.stream(ASK, _params(), result):
        chunks.append(chunk)
        assert result.tool_calls == [], "the calls are there once the stream has ended, not before"

    assert chunks == ["Let me ", "check."]  # each text chunk once, as it arrived
    assert result.text == "Let me check."
    assert _arguments(result.tool_calls) == [
        ("lookup_order", {"order_id": "A1"}),
        ("refund", {"order_id": "A1", "amount": 12.5}),
    ]
    assert all(call.id for call in result.tool_calls)
    assert result.usage is not None
    assert _only_request(server).stream is True


@pytest.mark.parametrize("provider", OPENAI_STYLE)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_malformed_arguments_come_back_as_the_model_wrote_them(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str, stream: bool
) -> None:
    # Checking them is the executor's job (checked_tool_calls): the client reports what it received.
    server.script("m-1", ToolCalls([("lookup_order", {"order_id": "A1"})], malformed=True))
    client = _client(provider, providers)
    calls = (
        (await _stream(client, ASK, _params()))[1].tool_calls
        if stream
        else (await client.complete(ASK, _params())).tool_calls
    )
    assert [(c.name, c.arguments) for c in calls] == [("lookup_order", '{order_id":"A1"}')]


async def test_malformed_arguments_in_a_claude_stream_are_an_invalid_output(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    # The anthropic SDK parses a tool_use block's input as it streams and raises on text that cannot
    # become JSON: the answer is at fault, not the provider, so it follows the invalid-output policy.
    server.script("m-1", ToolCalls([("lookup_order", {"order_id": "A1"})], malformed=True))
    with pytest.raises(InvalidOutputError) as raised:
        await _stream(_client("anthropic", providers), ASK, _params())
    assert "not valid JSON" in raised.value.message
    assert "order_id" not in str(raised.value), "the arguments are kept out of the error message"
    assert raised.value.__cause__ is None, "and out of its chain (the SDK's message quotes them)"
    assert raised.value.provider == "anthropic" and raised.value.model == "anthropic/m-1"


async def test_a_claude_answer_whose_input_is_not_an_object_comes_back_as_json_text(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    server.script("m-1", ToolCalls([("lookup_order", {"order_id": "A1"})], malformed=True))
    with pytest.warns(UserWarning):  # pydantic, as Agno dumps a tool_use block whose input is a string
        completion = await _client("anthropic", providers).complete(ASK, _params())
    ((call),) = completion.tool_calls
    assert json.loads(call.arguments) == '{order_id":"A1"}'  # JSON, but not an object: the executor refuses it


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_broken_stream_has_no_calls(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str
) -> None:
    from tests.fakes import BrokenStream

    server.script("m-1", BrokenStream(after_chunks=1, text="partial answer here"))
    result = Completion()
    with pytest.raises(ProviderConnectionError):
        async for _ in _client(provider, providers).stream(ASK, _params(), result):
            pass
    assert result.tool_calls == []


# --------------------------------------------------------------------------------------------------------
# the client: a conversation with tool results, in each provider's form and across the formats
# --------------------------------------------------------------------------------------------------------


def _conversation(first_id: str, second_id: str) -> list[LLMMessage]:
    """After one round trip: the assistant's two calls, then one result per call."""
    calls = (
        ToolCall(id=first_id, name="lookup_order", arguments={"order_id": "A1"}, arguments_json='{"order_id": "A1"}'),
        # written by hand: only the parsed arguments are set, the text is left at its default
        ToolCall(id=second_id, name="refund", arguments={"order_id": "A1", "amount": 12.5}),
    )
    return [
        *ASK,
        LLMMessage(role="assistant", content="Let me check.", tool_calls=calls),
        LLMMessage(role="tool", tool_call_id=first_id, name="lookup_order", content='{"status": "shipped"}'),
        LLMMessage(role="tool", tool_call_id=second_id, name="refund", content="refunded"),
    ]


@pytest.mark.parametrize(
    "ids", [("call_abc123", "call_def456"), ("toolu_01abc", "toolu_01def")], ids=["openai-ids", "anthropic-ids"]
)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tool_conversation_is_sent_in_each_providers_form(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], provider: str, ids: tuple[str, str]
) -> None:
    # Calls made by one provider's model, sent to any provider: what a fallback across the formats does.
    server.script("m-1", Reply(text="A1 shipped; refunded."))
    completion = await _client(provider, providers).complete(_conversation(*ids), _params())
    assert completion.text == "A1 shipped; refunded."

    request = _only_request(server)  # not refused: the API would take it
    sent = request.tool_calls_sent
    assert [(c.name, c.arguments) for c in sent] == [
        ("lookup_order", {"order_id": "A1"}),
        ("refund", {"order_id": "A1", "amount": 12.5}),
    ]
    results = request.tool_results
    assert [r.content for r in results] == ['{"status": "shipped"}', "refunded"]
    assert [r.tool_call_id for r in results] == [c.id for c in sent], "each result answers its own call"
    if provider == "anthropic":
        assert request.body["system"] == [{"type": "text", "text": "You help with orders."}]
        _user, assistant, results_message = request.messages
        assert [b["type"] for b in assistant["content"]] == ["text", "tool_use", "tool_use"]
        assert results_message["role"] == "user"
        assert [b["type"] for b in results_message["content"]] == ["tool_result", "tool_result"]
        assert [c.id for c in sent] == list(ids)
    else:
        system_role = "developer" if provider == "openai" else "system"  # OpenAIChat's own role map
        assert [m["role"] for m in request.messages] == [system_role, "user", "assistant", "tool", "tool"]
        assistant = request.messages[2]
        assert assistant["content"] == "Let me check."
        assert all(set(m) == {"role", "content", "tool_call_id"} for m in request.messages[3:])
        if provider == "groq" or ids[0].startswith("call_"):
            assert [c.id for c in sent] == list(ids)
        else:  # OpenAIChat (and OpenRouter, its subclass) renumber ids that are not OpenAI's own
            assert all(c.id.startswith("call_") for c in sent) and len({c.id for c in sent}) == 2


async def test_an_assistant_message_with_calls_and_no_text(
    server: FakeProviderServer, providers: dict[str, ProviderSettings]
) -> None:
    call = ToolCall(id="call_1", name="lookup_order", arguments={"order_id": "A1"}, arguments_json='{"order_id":"A1"}')
    messages = [
        *ASK,
        LLMMessage(role="assistant", tool_calls=(call,)),
        LLMMessage(role="tool", tool_call_id="call_1", name="lookup_order", content="shipped"),
    ]
    for provider in ("openai", "anthropic"):
        await _client(provider, providers).complete(messages, _params())
    openai_request, anthropic_request = server.requests_for("m-1")
    assert openai_request.rejected is None and anthropic_request.rejected is None
    assert [b["type"] for b in anthropic_request.messages[1]["content"]] == ["tool_use"]  # no empty text block
    assert openai_request.messages[2]["content"] in ("", None)


# --------------------------------------------------------------------------------------------------------
# the executor: tool calls on each provider, in the events, and what the server saw
# --------------------------------------------------------------------------------------------------------


def _payloads(sink: InMemorySink, event_type: str) -> list[Any]:
    """The payloads of ``event_type``, their captured texts decrypted (this process made the keys)."""
    return [revealed_event(e, made_here).payload for e in sink.events if e.event_type == event_type]


def assert_the_server_saw_what_the_events_say(server: FakeProviderServer, sink: InMemorySink) -> None:
    """One request per recorded attempt, in order, to the attempt's model, and nothing else (no hidden
    retry); each attempt's request id, where the event has one, is the one the server answered with."""
    attempts: list[tuple[Any, Any]] = []  # (AttemptStarted, its AttemptSucceeded/AttemptFailed)
    for event in sink.events:
        if event.event_type == "AttemptStarted":
            ended = [
                e.payload
                for e in sink.events
                if e.stream_id == event.stream_id
                and e.event_type in ("AttemptSucceeded", "AttemptFailed")
                and e.payload.attempt == event.payload.attempt
            ]
            assert len(ended) == 1
            attempts.append((event.payload, ended[0]))
    requests = server.requests
    assert [r.model for r in requests] == [started.model.split("/", 1)[1] for started, _ in attempts]
    assert all(r.rejected is None for r in requests), [r.rejected for r in requests]
    for request, (_, ended) in zip(requests, attempts, strict=True):
        if ended.request_id is not None:
            assert ended.request_id == request.request_id


async def _generate(
    executor: LLMExecutor, messages: list[LLMMessage], stream: bool, **options: Any
) -> tuple[LLMResponse, list[str]]:
    with execution_context(tenant_id="acme", agent_id="support", session_id="s-1"):
        if not stream:
            return await executor.generate(messages, tools=TOOLS, **options), []
        answer = executor.generate_stream(messages, tools=TOOLS, **options)
        chunks = [chunk async for chunk in answer]
    assert answer.response is not None
    assert answer.tool_calls == answer.response.tool_calls
    return answer.response, chunks


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_tool_calls_on_each_provider(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    provider: str,
    stream: bool,
) -> None:
    server.script("m-1", TWO_CALLS)
    executor = LLMExecutor(f"{provider}/m-1", max_retries=0, sink=sink, providers=providers, capture="full")
    response, chunks = await _generate(executor, ASK, stream, tool_choice="auto")

    assert response.content == "Let me check."
    if stream:
        assert chunks == ["Let me ", "check."]
    assert response.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("lookup_order", {"order_id": "A1"}),
        ("refund", {"order_id": "A1", "amount": 12.5}),
    ]
    assert all(c.execution_id == response.execution_id for c in response.tool_calls)
    assert [json.loads(c.arguments_json) for c in response.tool_calls] == [c.arguments for c in response.tool_calls]

    (started,) = _payloads(sink, "ExecutionStarted")
    assert [(t.name, t.sha256) for t in started.tools] == [(t.name, t.digest()) for t in TOOLS]
    assert started.tool_choice == "auto"
    (succeeded,) = _payloads(sink, "AttemptSucceeded")
    assert [(c.id, c.name) for c in succeeded.tool_calls] == [(c.id, c.name) for c in response.tool_calls]
    assert [c.arguments.text for c in succeeded.tool_calls] == [c.arguments_json for c in response.tool_calls]
    if not stream:  # the provider's own word, as the response told it
        assert succeeded.finish_reason == ("tool_use" if provider == "anthropic" else "tool_calls")
    assert verify_chain(sink.events).ok
    (request,) = server.requests
    assert (request.tool_names, request.stream) == (["lookup_order", "refund"], stream)
    assert_the_server_saw_what_the_events_say(server, sink)


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tool_round_trip_sends_the_results_in_the_providers_form(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    provider: str,
    stream: bool,
) -> None:
    server.script("m-1", TWO_CALLS, Reply(text="A1 is shipped; refunded."))
    executor = LLMExecutor(f"{provider}/m-1", max_retries=0, sink=sink, providers=providers)
    asked, _ = await _generate(executor, ASK, stream)
    results = {"lookup_order": '{"status":"shipped"}', "refund": "refunded"}
    conversation = [
        *ASK,
        LLMMessage(role="assistant", content=asked.content, tool_calls=asked.tool_calls),
        *(LLMMessage(role="tool", tool_call_id=c.id, name=c.name, content=results[c.name]) for c in asked.tool_calls),
    ]
    answered, _ = await _generate(executor, conversation, stream)

    assert answered.content == "A1 is shipped; refunded." and answered.tool_calls == ()
    second = server.requests[1]
    assert [(r.tool_call_id, r.content) for r in second.tool_results] == [
        (c.id, results[c.name]) for c in asked.tool_calls
    ]
    if provider == "anthropic":
        assert second.messages[-2]["role"] == "assistant"
        assert [b["type"] for b in second.messages[-2]["content"]] == ["text", "tool_use", "tool_use"]
        assert second.messages[-1]["role"] == "user"
        assert [b["type"] for b in second.messages[-1]["content"]] == ["tool_result", "tool_result"]
    else:
        assert [m["role"] for m in second.messages[-3:]] == ["assistant", "tool", "tool"]
        assert [c["id"] for c in second.messages[-3]["tool_calls"]] == [c.id for c in asked.tool_calls]
    assert_the_server_saw_what_the_events_say(server, sink)


MALFORMED = {
    "not json": ToolCalls([("lookup_order", {"order_id": "A1"})], malformed=True),
    "schema mismatch": ToolCalls([("lookup_order", {"order_id": 7})]),
    "unknown tool": ToolCalls([("delete_everything", {})]),
}


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
@pytest.mark.parametrize(("primary", "fallback"), [("openai", "anthropic"), ("anthropic", "groq")])
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_invalid_tool_calls_fall_back_as_invalid_output(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    fast_retries: RetryPolicy,
    primary: str,
    fallback: str,
    case: str,
    stream: bool,
) -> None:
    server.script("a", MALFORMED[case])
    server.script("b", ToolCalls([("lookup_order", {"order_id": "A1"})]))
    executor = LLMExecutor(
        f"{primary}/a",
        fallback_models=[f"{fallback}/b"],
        max_retries=0,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    with warnings.catch_warnings():
        # pydantic warns when Agno dumps a Claude tool_use block whose input is not an object
        warnings.simplefilter("ignore", UserWarning)
        response, _ = await _generate(executor, ASK, stream)

    assert response.model == f"{fallback}/b"
    assert [(c.name, c.arguments) for c in response.tool_calls] == [("lookup_order", {"order_id": "A1"})]
    assert [e.event_type for e in sink.events] == [
        "ExecutionStarted",
        "AttemptStarted",
        "AttemptFailed",
        "FallbackTriggered",
        "AttemptStarted",
        "AttemptSucceeded",
        "ExecutionSucceeded",
    ]
    (failed,) = _payloads(sink, "AttemptFailed")
    assert (failed.error_type, failed.next_action, failed.model) == ("invalid_output", "fall_back", f"{primary}/a")
    assert verify_chain(sink.events).ok
    assert_the_server_saw_what_the_events_say(server, sink)


async def test_a_fallback_across_the_formats_in_the_middle_of_a_tool_conversation(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    """Round 1: OpenAI asks for a call (a ``call_`` id). Round 2: OpenAI is rate limited, Anthropic gets
    the conversation (OpenAI's call as a tool_use block, its result as a tool_result) and asks for another
    (a ``toolu_`` id). Round 3: OpenAI answers the whole conversation, Anthropic's call included. Every
    request is one the real API would accept, and every result answers its own call."""
    server.script(
        "a", ToolCalls([("lookup_order", {"order_id": "A1"})]), RateLimited(retry_after=0), Reply(text="done")
    )
    server.script("b", ToolCalls([("refund", {"order_id": "A1", "amount": 12.5})]))
    executor = LLMExecutor(
        "openai/a",
        fallback_models=["anthropic/b"],
        max_retries=0,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    conversation = list(ASK)
    answers: list[LLMResponse] = []
    for round_trip in range(3):
        response, _ = await _generate(executor, conversation, stream=round_trip == 1)
        answers.append(response)
        conversation.append(LLMMessage(role="assistant", content=response.content, tool_calls=response.tool_calls))
        conversation.extend(
            LLMMessage(role="tool", tool_call_id=c.id, name=c.name, content=f"result of {c.name}")
            for c in response.tool_calls
        )

    assert [a.model for a in answers] == ["openai/a", "anthropic/b", "openai/a"]
    assert answers[2].content == "done"
    openai_id = answers[0].tool_calls[0].id
    anthropic_id = answers[1].tool_calls[0].id
    assert openai_id.startswith("call_") and anthropic_id.startswith("toolu_")

    first, limited, to_anthropic, back_to_openai = server.requests
    assert first.tool_results == []
    assert [r.tool_call_id for r in limited.tool_results] == [openai_id]  # the same round, refused with a 429
    # Anthropic: OpenAI's call became a tool_use block, its result a tool_result in the next user message
    assert [(c.id, c.name) for c in to_anthropic.tool_calls_sent] == [(openai_id, "lookup_order")]
    assert [(r.tool_call_id, r.content) for r in to_anthropic.tool_results] == [(openai_id, "result of lookup_order")]
    # back on OpenAI: both calls, each answered; OpenAIChat renumbered Anthropic's id, consistently
    sent = back_to_openai.tool_calls_sent
    assert [c.name for c in sent] == ["lookup_order", "refund"]
    assert sent[0].id == openai_id and sent[1].id.startswith("call_")
    assert [r.tool_call_id for r in back_to_openai.tool_results] == [c.id for c in sent]
    assert [r.content for r in back_to_openai.tool_results] == ["result of lookup_order", "result of refund"]
    assert [p.error_type for p in _payloads(sink, "AttemptFailed")] == ["rate_limit"]
    assert verify_chain(sink.events).ok
    assert_the_server_saw_what_the_events_say(server, sink)


@pytest.mark.parametrize("primary", ["openai", "anthropic"])
async def test_an_invalid_call_after_text_reached_the_caller_does_not_fall_back(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    fast_retries: RetryPolicy,
    primary: str,
) -> None:
    # Text went out as it arrived; the calls are checked when the stream ends, too late to fall back
    # without the caller seeing two answers.
    server.script("a", ToolCalls([("lookup_order", {"order_id": "A1"})], text="Let me check.", malformed=True))
    executor = LLMExecutor(
        f"{primary}/a",
        fallback_models=["groq/b"],
        max_retries=0,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    received: list[str] = []
    with execution_context(tenant_id="acme"), pytest.raises(StreamInterruptedError) as raised:
        async for chunk in executor.generate_stream(ASK, tools=TOOLS):
            received.append(chunk)

    assert received == ["Let me ", "check."]
    assert raised.value.cause.error_type == "invalid_output"
    assert server.requests_for("b") == []
    (failed,) = _payloads(sink, "AttemptFailed")
    assert (failed.error_type, failed.next_action, failed.chunks_delivered) == ("invalid_output", "fail", 2)
    assert_the_server_saw_what_the_events_say(server, sink)


def _delta(index: int | None, call_id: str | None = None, name: str | None = None, arguments: str = "") -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(index=index, id=call_id, function=SimpleNamespace(name=name, arguments=arguments))


@pytest.mark.parametrize(
    "numbering",
    [lambda i: i, lambda i: 0, lambda i: None],
    ids=["by index", "every call index 0", "no index"],
)
def test_stream_deltas_are_merged_however_the_server_numbers_the_calls(numbering: Any) -> None:
    # The fake numbers calls as OpenAI does; some OpenAI-compatible servers number every call 0 or send no
    # index at all: a new id then starts a new call, a fragment continues the call in progress.
    from llm_ledger.executor.agno_client import _StreamedToolCalls

    assembled = _StreamedToolCalls()
    for i, (call_id, name, fragments) in enumerate(
        [("c1", "lookup_order", ['{"order', '_id":"A1"}']), ("c2", "refund", ["{}"])]
    ):
        assembled.add([_delta(numbering(i), call_id, name)])
        assembled.add([_delta(numbering(i), arguments=fragment) for fragment in fragments])
    assert assembled.calls() == [
        RequestedToolCall("c1", "lookup_order", '{"order_id":"A1"}'),
        RequestedToolCall("c2", "refund", "{}"),
    ]


async def test_a_tool_conversation_across_the_formats_is_stored_whole_and_verifies(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], ledger: Ledger, fast_retries: RetryPolicy
) -> None:
    # The same conversation as above, into a real store: every execution sealed, the calls on its
    # AttemptSucceeded, and `audit verify` clean for the tenant.
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    server.script("a", ToolCalls([("lookup_order", {"order_id": "A1"})]), RateLimited(retry_after=0))
    server.script("b", Reply(text="A1 is shipped."))
    executor = LLMExecutor(
        "openai/a",
        fallback_models=["anthropic/b"],
        max_retries=0,
        sink=ledger.writer,
        providers=providers,
        retry_policy=fast_retries,
        capture="full",
    )
    with execution_context(tenant_id=tenant, agent_id="support", session_id="s-1"):
        asked = await executor.generate(ASK, tools=TOOLS)
        (call,) = asked.tool_calls
        conversation = [
            *ASK,
            LLMMessage(role="assistant", tool_calls=asked.tool_calls),
            LLMMessage(role="tool", tool_call_id=call.id, name=call.name, content="shipped"),
        ]
        answered = await executor.generate(conversation, tools=TOOLS)

    assert answered.model == "anthropic/b" and answered.content == "A1 is shipped."
    stats = ledger.settle()
    assert stats.rejected == 0 and ledger.rejected() == "", ledger.rejected()
    first = ledger.stream(asked.execution_id)
    (succeeded,) = [revealed_event(e, made_here).payload for e in first if e.event_type == "AttemptSucceeded"]
    assert isinstance(succeeded, AttemptSucceededPayload)
    assert [(c.id, c.name, c.arguments.text) for c in succeeded.tool_calls] == [
        (call.id, "lookup_order", call.arguments_json)
    ]
    second = ledger.stream(answered.execution_id)
    assert [e.event_type for e in second] == [
        "ExecutionStarted",
        "AttemptStarted",
        "AttemptFailed",
        "FallbackTriggered",
        "AttemptStarted",
        "AttemptSucceeded",
        "ExecutionSucceeded",
    ]
    report = ledger.verify(tenant)
    assert report.ok, [str(f) for f in report.findings]
    assert [r.provider for r in server.requests] == ["openai", "openai", "anthropic"]
    assert server.requests[2].tool_results[0].tool_call_id == call.id
