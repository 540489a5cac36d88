"""Tool calls through the executor, on mock models and a scripted client: the calls in ``LLMResponse`` and in
the events (offered tools, requested calls under each capture policy, scrubbed), invalid calls failing
the attempt and falling back, streams that end with calls, a conversation with tool results sent back,
and text-only calls recorded exactly as before tools existed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from llm_ledger import (
    AllModelsFailedError,
    ConfigurationError,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    LLMStream,
    MockBehaviour,
    StreamInterruptedError,
    ToolCall,
    ToolSpec,
    execution_context,
    register_mock,
    verify_chain,
)
from llm_ledger.events import Event, canonical_json, sha256_hex
from llm_ledger.executor import RetryPolicy, parse_model_string
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.routing import ModelRoute
from llm_ledger.executor.tools import RequestedToolCall
from tests.digests import keyed
from tests.revealed import made_here, revealed_event

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"


def get_weather(city: str, days: int = 1) -> str:
    """Today's weather in a city."""
    return f"sunny in {city} for {days} day(s)"


def get_time(zone: str) -> str:
    """The time in a time zone."""
    return f"noon in {zone}"


WEATHER = ToolSpec.from_function(get_weather)
TIME = ToolSpec.from_function(get_time)
TOOLS = [WEATHER, TIME]
QUESTION = [LLMMessage(role="user", content="weather in Paris?")]
FAST = RetryPolicy(base_delay=0, max_delay=0)


def _types(events: Sequence[Event]) -> list[str]:
    return [e.event_type for e in events]


def _payload(events: Sequence[Event], event_type: str) -> Any:
    """The payload of the first ``event_type``, its captured texts decrypted (this process made the keys)."""
    return next(revealed_event(e, made_here).payload for e in events if e.event_type == event_type)


# --- a scripted client: answers as a provider would, text and tool calls --------------------------------


@dataclass
class Answer:
    text: str = ""
    calls: list[RequestedToolCall] = field(default_factory=list)
    finish_reason: str = "tool_use"
    chunks: int = 2


@dataclass
class ScriptedClient:
    """A ``ModelClient`` answering from a script, one answer per call; records what it was sent."""

    route: ModelRoute
    answers: list[Answer]
    sent: list[tuple[list[LLMMessage], CallParams]] = field(default_factory=list)
    server_address: str | None = None
    server_port: int | None = None
    secrets: tuple[str, ...] = ()

    async def complete(self, messages: Sequence[LLMMessage], params: CallParams) -> Completion:
        self.sent.append((list(messages), params))
        answer = self.answers.pop(0)
        return Completion(text=answer.text, finish_reason=answer.finish_reason, tool_calls=list(answer.calls))

    async def stream(
        self, messages: Sequence[LLMMessage], params: CallParams, result: Completion
    ) -> AsyncIterator[str]:
        self.sent.append((list(messages), params))
        answer = self.answers.pop(0)
        size = max(1, -(-len(answer.text) // answer.chunks))
        for start in range(0, len(answer.text), size):
            piece = answer.text[start : start + size]
            result.text += piece
            yield piece
            await asyncio.sleep(0)
        result.finish_reason = answer.finish_reason
        result.tool_calls = list(answer.calls)


def _scripted(
    sink: InMemorySink, scripts: dict[str, list[Answer]], **options: Any
) -> tuple[LLMExecutor, dict[str, ScriptedClient]]:
    clients = {
        model: ScriptedClient(parse_model_string(model), answers, secrets=(SECRET,))
        for model, answers in scripts.items()
    }

    def factory(route: ModelRoute, providers: Any) -> ModelClient:
        return clients[route.model]

    first, *rest = scripts
    executor = LLMExecutor(first, fallback_models=rest, sink=sink, client_factory=factory, retry_policy=FAST, **options)
    return executor, clients


def _call(call_id: str, name: str, arguments: dict[str, Any] | str) -> RequestedToolCall:
    return RequestedToolCall(call_id, name, arguments if isinstance(arguments, str) else json.dumps(arguments))


# --- LLMResponse and the events ------------------------------------------------------------------------


async def test_a_tool_call_answer_gives_checked_calls_and_finish_reason_tool_calls() -> None:
    sink = InMemorySink()
    executor, clients = _scripted(
        sink,
        {
            "openai/a": [
                Answer(calls=[_call("c1", "get_weather", {"city": "Paris"}), _call("c2", "get_time", {"zone": "CET"})])
            ]
        },
    )
    with execution_context(tenant_id="acme", session_id="s1"):
        response = await executor.generate(QUESTION, tools=TOOLS, tool_choice="auto")

    assert response.finish_reason == "tool_calls", "whatever the provider's word"
    assert response.tool_calls == (
        ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"}, arguments_json='{"city": "Paris"}',
                 execution_id=response.execution_id),
        ToolCall(id="c2", name="get_time", arguments={"zone": "CET"}, arguments_json='{"zone": "CET"}',
                 execution_id=response.execution_id),
    )  # fmt: skip
    ((_, params),) = clients["openai/a"].sent
    assert (params.tools, params.tool_choice) == ((WEATHER, TIME), "auto"), "the client is given the tools"

    events = sink.stream(response.execution_id)
    started = _payload(events, "ExecutionStarted")
    assert [(t.name, t.sha256) for t in started.tools] == [
        ("get_weather", WEATHER.digest()),
        ("get_time", TIME.digest()),
    ]
    assert started.tool_choice == "auto"
    succeeded = _payload(events, "AttemptSucceeded")
    assert [(c.id, c.name) for c in succeeded.tool_calls] == [("c1", "get_weather"), ("c2", "get_time")]
    arguments = succeeded.tool_calls[0].arguments
    assert (arguments.sha256, arguments.digest) == (None, keyed("acme", b'{"city": "Paris"}'))
    assert succeeded.finish_reason == "tool_use", "the event keeps the provider's word"
    assert _payload(events, "ExecutionSucceeded").finish_reason == "tool_use"
    assert succeeded.output.chars == 0, "the output record stays the text answer"
    assert verify_chain(events).ok


@pytest.mark.parametrize("capture", ["none", "hash", "full"])
async def test_the_requested_arguments_are_kept_under_the_capture_policy_and_scrubbed(
    capture: Literal["none", "hash", "full"],
) -> None:
    arguments = json.dumps({"city": f"Paris {SECRET}"})
    sink = InMemorySink()
    executor, _ = _scripted(
        sink, {"openai/a": [Answer(calls=[_call("c1", "get_weather", arguments)])]}, capture=capture
    )
    with execution_context(tenant_id="acme"):
        response = await executor.generate(QUESTION, tools=TOOLS)
    assert response.tool_calls[0].arguments == {"city": f"Paris {SECRET}"}, "the caller gets the call as asked"

    record = _payload(sink.events, "AttemptSucceeded").tool_calls[0].arguments
    assert (record.chars, record.bytes) == (len(arguments), len(arguments.encode()))
    assert record.sha256 is None
    assert record.digest == (None if capture == "none" else keyed("acme", arguments.encode()))
    if capture == "full":
        assert record.text == arguments.replace(SECRET, "[REDACTED]")
    else:
        assert record.text is None
    stored = json.dumps([e.to_record() for e in sink.events])
    assert SECRET not in stored


async def test_a_text_only_call_records_exactly_the_payloads_it_did_before_tools() -> None:
    sink = InMemorySink()
    executor = LLMExecutor("mock/plain?p50_ms=0", sink=sink)
    with execution_context(tenant_id="acme"):
        response = await executor.generate(QUESTION)
        await executor.generate(QUESTION, tools=[])
    assert response.tool_calls == () and response.finish_reason == "stop"
    started, _, succeeded, _ = (e.to_record()["payload"] for e in sink.stream(response.execution_id))
    assert set(started) == {
        "operation", "chain", "max_retries", "timeout_seconds", "attempt_timeout_seconds", "parameters", "input",
        "output_schema", "capture",
    }  # fmt: skip
    assert "tool_calls" not in succeeded
    first, second = sink.stream_ids()
    assert [e.to_record()["payload"]["input"] for e in sink.stream(first)[:1]] == [
        e.to_record()["payload"]["input"] for e in sink.stream(second)[:1]
    ], "no tools offered is no tools"
    assert "tools" not in sink.stream(second)[0].to_record()["payload"]


# --- invalid calls -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "problem"),
    [
        ("mock/bad?p50_ms=0&tool_use=1&invalid_tool_arguments=1", "the arguments are not valid JSON"),
        ("mock/bad?p50_ms=0&tool_calls=get_news", "no such tool was offered"),
        (
            'mock/bad?p50_ms=0&tool_calls=[["get_weather",{"city":"Paris","days":"two"}]]',
            "do not match the tool's schema",
        ),
    ],
)
@pytest.mark.parametrize("call", ["generate", "stream"])
async def test_an_invalid_tool_call_fails_the_attempt_as_invalid_output_and_falls_back(
    primary: str, problem: str, call: str
) -> None:
    sink = InMemorySink()
    executor = LLMExecutor(primary, fallback_models=["mock/good?p50_ms=0&tool_use=1"], sink=sink, max_retries=2)
    with execution_context(tenant_id="acme"):
        if call == "generate":
            response = await executor.generate(QUESTION, tools=[WEATHER])
        else:
            stream = executor.generate_stream(QUESTION, tools=[WEATHER])
            assert [chunk async for chunk in stream] == []
            assert stream.response is not None
            response = stream.response

    assert response.model == "mock/good?p50_ms=0&tool_use=1" and response.fallback_used
    assert [c.name for c in response.tool_calls] == ["get_weather"]
    assert _types(sink.events) == [
        "ExecutionStarted", "AttemptStarted", "AttemptFailed", "FallbackTriggered", "AttemptStarted",
        "AttemptSucceeded", "ExecutionSucceeded",
    ]  # fmt: skip
    failed = _payload(sink.events, "AttemptFailed")
    assert (failed.error_type, failed.error_class, failed.next_action) == (
        "invalid_output",
        "InvalidOutputError",
        "fall_back",
    ), "not retried: the same model would answer the same"
    assert problem in failed.message and "tool call 'call_" in failed.message
    assert response.attempts[0].error_type == "invalid_output"


async def test_when_every_model_asks_for_an_invalid_call_the_execution_fails() -> None:
    sink = InMemorySink()
    executor = LLMExecutor(
        "mock/a?p50_ms=0&tool_calls=nope", fallback_models=["mock/b?p50_ms=0&tool_calls=nope"], sink=sink
    )
    with execution_context(tenant_id="acme"), pytest.raises(AllModelsFailedError) as raised:
        await executor.generate(QUESTION, tools=[WEATHER])
    assert [e.error_type for e in raised.value.errors] == ["invalid_output", "invalid_output"]
    assert _payload(sink.events, "ExecutionFailed").error_type == "all_models_failed"


# --- streams -------------------------------------------------------------------------------------------


async def test_a_stream_gives_its_text_once_then_the_calls_at_its_end() -> None:
    sink = InMemorySink()
    answer = Answer(text="Let me look that up.", calls=[_call("c1", "get_weather", {"city": "Paris"})], chunks=4)
    executor, _ = _scripted(sink, {"anthropic/a": [answer]})
    with execution_context(tenant_id="acme"):
        stream = executor.generate_stream(QUESTION, tools=TOOLS)
        assert isinstance(stream, LLMStream) and isinstance(stream, AsyncGenerator)
        chunks = []
        async for chunk in stream:
            assert stream.tool_calls == () and stream.response is None, "calls come with the end"
            chunks.append(chunk)

    assert "".join(chunks) == "Let me look that up." and len(chunks) == 4
    assert stream.response is not None
    assert stream.response.content == "Let me look that up."
    assert stream.response.finish_reason == "tool_calls"
    assert [(c.id, c.arguments) for c in stream.tool_calls] == [("c1", {"city": "Paris"})]
    assert stream.tool_calls[0].execution_id == stream.execution_id == stream.response.execution_id
    assert _payload(sink.events, "AttemptSucceeded").output.chars == len("Let me look that up.")


async def test_an_invalid_call_at_the_end_of_a_stream_that_gave_text_interrupts_it_without_fallback() -> None:
    sink = InMemorySink()
    executor, clients = _scripted(
        sink,
        {
            "openai/a": [Answer(text="Checking the weather", calls=[_call("c1", "get_weather", "{oops")])],
            "anthropic/b": [Answer(text="never asked")],
        },
    )
    received: list[str] = []
    with execution_context(tenant_id="acme"), pytest.raises(StreamInterruptedError) as raised:
        async for chunk in executor.generate_stream(QUESTION, tools=TOOLS):
            received.append(chunk)

    assert "".join(received) == "Checking the weather", "each chunk once, none again from a fallback"
    assert raised.value.cause.error_type == "invalid_output"
    assert clients["anthropic/b"].sent == []
    assert _types(sink.events)[-2:] == ["AttemptFailed", "ExecutionFailed"]
    assert _payload(sink.events, "AttemptFailed").chunks_delivered == 2


async def test_a_stream_left_early_records_the_cancel_and_has_no_response() -> None:
    sink = InMemorySink()
    executor, _ = _scripted(sink, {"openai/a": [Answer(text="one two three four", chunks=4)]})
    with execution_context(tenant_id="acme"):
        stream = executor.generate_stream(QUESTION, tools=TOOLS)
        await anext(stream)
        await stream.aclose()
    assert stream.response is None and stream.tool_calls == ()
    assert _payload(sink.events, "ExecutionFailed").error_type == "cancelled"


# --- a conversation with tool results ------------------------------------------------------------------


def _conversation(calls: tuple[ToolCall, ...]) -> list[LLMMessage]:
    results = [
        LLMMessage(role="tool", content=get_weather(**call.arguments), tool_call_id=call.id, name=call.name)
        for call in calls
    ]
    return [*QUESTION, LLMMessage(role="assistant", tool_calls=calls), *results]


async def test_a_conversation_with_tool_results_is_sent_back_validated_and_digested_with_its_tool_fields() -> None:
    sink = InMemorySink()
    executor = LLMExecutor("mock/agent?p50_ms=0&tool_use=1&seed=3", sink=sink, capture="full")
    with execution_context(tenant_id="acme"):
        asked = await executor.generate(QUESTION, tools=[WEATHER])
        conversation = _conversation(asked.tool_calls)
        answered = await executor.generate(conversation, tools=[WEATHER])

    assert answered.tool_calls == () and answered.finish_reason == "stop", "after a tool result, the mock answers"
    assert "sunny in mock" in answered.content
    record = _payload(sink.stream(answered.execution_id), "ExecutionStarted").input
    (call,) = asked.tool_calls
    asked_for = [{"id": call.id, "name": "get_weather", "arguments": call.arguments_json}]
    form: list[dict[str, Any]] = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": asked_for},
        {"role": "tool", "content": "sunny in mock for 1 day(s)", "tool_call_id": call.id, "name": "get_weather"},
    ]
    assert record.digest == keyed("acme", canonical_json(form)), "the digest covers the tool fields"
    assert record.message_count == 3
    assert record.chars == sum(len(m["content"]) for m in form) + len(call.arguments_json)
    assert record.messages is not None
    assert record.messages[1].tool_calls[0].arguments == call.arguments_json
    assert (record.messages[2].tool_call_id, record.messages[2].name) == (call.id, "get_weather")
    plain = {"role": "tool", "content": "sunny in mock for 1 day(s)"}
    assert record.sha256 != sha256_hex(canonical_json([*form[:2], plain]))


# --- mock models ---------------------------------------------------------------------------------------


async def _calls_of(model: str, tools: list[ToolSpec], tool_choice: str | None = None, runs: int = 1) -> list[Any]:
    executor = LLMExecutor(model, sink=InMemorySink())
    out = []
    with execution_context(tenant_id="t"):
        for _ in range(runs):
            response = await executor.generate(QUESTION, tools=tools, tool_choice=tool_choice)
            out.append([(c.id, c.name, c.arguments) for c in response.tool_calls] or response.content)
    return out


async def test_a_mock_calls_each_offered_tool_at_most_two_with_arguments_from_the_schema() -> None:
    third = ToolSpec(name="third", parameters={"type": "object", "properties": {}})
    rich = ToolSpec(
        name="rich",
        parameters={
            "type": "object",
            "properties": {
                "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"},
                "b": {"type": "boolean"}, "e": {"enum": ["x", "y"]}, "a": {"type": "array"},
                "o": {"type": "object"}, "optional": {"type": "string"},
            },
            "required": ["s", "i", "n", "b", "e", "a", "o"],
        },
    )  # fmt: skip
    ((first, second),) = await _calls_of("mock/m?p50_ms=0&tool_use=1", [rich, WEATHER, third])
    assert first[1:] == ("rich", {"s": "mock", "i": 1, "n": 1.0, "b": True, "e": "x", "a": [], "o": {}})
    assert second[1:] == ("get_weather", {"city": "mock"})


async def test_mock_tool_calls_are_deterministic_under_a_seed() -> None:
    model = "mock/m?p50_ms=0&tool_use=0.5&seed=21"
    runs = await _calls_of(model, TOOLS, runs=40)
    assert runs == await _calls_of(model, TOOLS, runs=40)
    assert any(isinstance(run, str) for run in runs) and any(isinstance(run, list) for run in runs)


async def test_a_mock_follows_tool_choice_and_a_script() -> None:
    assert isinstance((await _calls_of("mock/m?p50_ms=0&tool_use=1", TOOLS, "none"))[0], str)
    assert [c[1] for c in (await _calls_of("mock/m?p50_ms=0", TOOLS, "get_time"))[0]] == ["get_time"]
    assert [c[1] for c in (await _calls_of("mock/m?p50_ms=0", TOOLS, "required"))[0]] == ["get_weather", "get_time"]
    scripted = (await _calls_of('mock/m?p50_ms=0&tool_calls=[["get_time",{"zone":"UTC"}]]', TOOLS))[0]
    assert [c[1:] for c in scripted] == [("get_time", {"zone": "UTC"})]
    register_mock(
        "scripted_tools", MockBehaviour(p50_ms=0, tool_calls=(("get_weather", {"city": "Oslo"}), ("get_time", None)))
    )
    registered = (await _calls_of("mock/scripted_tools", TOOLS))[0]
    assert [c[1:] for c in registered] == [("get_weather", {"city": "Oslo"}), ("get_time", {"zone": "mock"})]
    assert isinstance((await _calls_of("mock/m?p50_ms=0&tool_use=1", []))[0], str), "no tools, no calls"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("mock/m?tool_use=2", "tool_use=2.0 must be a probability"),
        ("mock/m?tool_calls=[1]", "must be a JSON list of \\[name, arguments\\] pairs"),
        ("mock/m?tool_calls=[", "is not JSON"),
    ],
)
async def test_bad_mock_tool_options_are_configuration_errors(model: str, expected: str) -> None:
    executor = LLMExecutor(model, sink=InMemorySink())
    with execution_context(tenant_id="t"), pytest.raises(ConfigurationError, match=expected):
        await executor.generate(QUESTION, tools=TOOLS)
