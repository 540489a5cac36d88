"""The exact event stream of an execution: retries, fallbacks, all-failed chains, cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest

from llm_ledger import (
    AllModelsFailedError,
    DeadlineExceededError,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    execution_context,
    verify_chain,
)
from llm_ledger.events import AttemptFailed, Event, FallbackTriggered, compute_hash
from llm_ledger.executor import ProviderSettings, RetryPolicy
from tests.fakes import FakeProviderServer, RateLimited, Reply, Stall
from tests.fakes import ServerError as ServerFails

MESSAGES = [LLMMessage(role="system", content="Classify."), LLMMessage(role="user", content="refund please")]
CONTEXT = {"tenant_id": "acme", "agent_id": "support", "session_id": "s-9", "turn_id": "t-3"}


def _types(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def _attempt(outcome: str) -> list[str]:
    return ["AttemptStarted", outcome]


def _assert_well_formed(events: list[Event], step: str) -> None:
    assert [e.stream_position for e in events] == list(range(len(events)))
    assert len({e.stream_id for e in events}) == 1
    for event in events:
        assert (event.tenant_id, event.agent_id, event.session_id, event.turn_id, event.step) == (
            "acme",
            "support",
            "s-9",
            "t-3",
            step,
        )
    report = verify_chain(events)
    assert report.ok, str(report)


async def test_a_throttled_then_failing_chain_falls_back_to_the_model_that_answers(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.default("a", RateLimited(retry_after=0))
    server.default("b", ServerFails(status=500))
    server.script("c", Reply(text="rule 7 applies"))
    executor = LLMExecutor(
        "openrouter/a",
        fallback_models=["anthropic/b", "openai/c"],
        step_name="rule_filtering",
        max_retries=2,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    with execution_context(**CONTEXT):
        response = await executor.generate(MESSAGES, max_tokens=64, temperature=0.1)

    events = sink.stream(response.execution_id)
    assert _types(events) == [
        "ExecutionStarted",
        *_attempt("AttemptFailed") * 3,
        "FallbackTriggered",
        *_attempt("AttemptFailed") * 3,
        "FallbackTriggered",
        *_attempt("AttemptSucceeded"),
        "ExecutionSucceeded",
    ]
    _assert_well_formed(events, "rule_filtering")
    failed = [e.payload for e in events if e.event_type == "AttemptFailed"]
    assert [(p.model, p.error_type, p.next_action) for p in failed] == [
        ("openrouter/a", "rate_limit", "retry"),
        ("openrouter/a", "rate_limit", "retry"),
        ("openrouter/a", "rate_limit", "fall_back"),
        ("anthropic/b", "server_error", "retry"),
        ("anthropic/b", "server_error", "retry"),
        ("anthropic/b", "server_error", "fall_back"),
    ]
    fallbacks = [e.payload for e in events if e.event_type == "FallbackTriggered"]
    assert [(p.from_model, p.to_model, p.reason) for p in fallbacks] == [
        ("openrouter/a", "anthropic/b", "rate_limit"),
        ("anthropic/b", "openai/c", "server_error"),
    ]
    final = events[-1].payload
    assert (final.model, final.attempts, final.fallback_used) == ("openai/c", 7, True)  # type: ignore[union-attr]
    assert response.model == "openai/c" and response.content == "rule 7 applies" and response.fallback_used
    assert [a.outcome for a in response.attempts] == ["failed"] * 6 + ["succeeded"]
    assert response.metadata == {**CONTEXT, "step": "rule_filtering"}
    assert len(server.requests_for("a")) == 3 and len(server.requests_for("b")) == 3


async def test_changing_any_byte_of_a_stored_event_makes_verify_chain_name_it(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.script("a", RateLimited(retry_after=0))
    executor = LLMExecutor(
        "openai/a", fallback_models=["groq/b"], max_retries=0, sink=sink, providers=providers, retry_policy=fast_retries
    )
    with execution_context(**CONTEXT):
        response = await executor.generate(MESSAGES)
    stored = [json.dumps(e.to_record()) for e in sink.stream(response.execution_id)]
    for index, text in enumerate(stored):
        for offset in range(0, len(text), 7):
            mutated = text[:offset] + ("x" if text[offset] != "x" else "y") + text[offset + 1 :]
            try:
                record = json.loads(mutated)
            except json.JSONDecodeError:
                continue
            records = [json.loads(s) for s in stored]
            records[index] = record
            report = verify_chain(records)
            assert index in {b.index for b in report.breaks}, f"byte {offset} of event {index}"


async def test_a_chain_where_every_model_fails_ends_with_execution_failed(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.default("a", ServerFails(status=503))
    server.default("b", RateLimited(retry_after=0))
    executor = LLMExecutor(
        "openai/a",
        fallback_models=["anthropic/b"],
        step_name="generation",
        max_retries=1,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    with execution_context(**CONTEXT), pytest.raises(AllModelsFailedError) as raised:
        await executor.generate(MESSAGES)

    events = sink.events
    assert _types(events) == [
        "ExecutionStarted",
        *_attempt("AttemptFailed") * 2,
        "FallbackTriggered",
        *_attempt("AttemptFailed") * 2,
        "ExecutionFailed",
    ]
    _assert_well_formed(events, "generation")
    assert [e.error_type for e in raised.value.errors] == ["server_error"] * 2 + ["rate_limit"] * 2
    assert events[-2].payload.next_action == "fail"  # type: ignore[union-attr]
    final = events[-1].payload
    assert (final.error_type, final.attempts, final.last_model) == ("all_models_failed", 4, "anthropic/b")  # type: ignore[union-attr]


async def test_a_retry_that_succeeds_stays_on_the_same_model(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.script("a", ServerFails(status=502), Reply(text="ok"))
    executor = LLMExecutor(
        "groq/a", fallback_models=["openai/b"], sink=sink, providers=providers, retry_policy=fast_retries
    )
    with execution_context(**CONTEXT):
        response = await executor.generate(MESSAGES)
    assert _types(sink.events) == [
        "ExecutionStarted",
        *_attempt("AttemptFailed"),
        *_attempt("AttemptSucceeded"),
        "ExecutionSucceeded",
    ]
    assert response.model == "groq/a" and not response.fallback_used
    assert [a.retry for a in response.attempts] == [0, 1]


async def test_retry_after_is_honoured_as_the_least_wait(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.script("a", RateLimited(retry_after=0.3), Reply(text="ok"))
    executor = LLMExecutor("openai/a", sink=sink, providers=providers, retry_policy=fast_retries)
    with execution_context(**CONTEXT):
        await executor.generate(MESSAGES)
    failed = next(e for e in sink.events if e.event_type == "AttemptFailed").payload
    assert failed.retry_after_seconds == pytest.approx(0.3)
    assert failed.backoff_seconds is not None and failed.backoff_seconds >= 0.3
    first, second = server.requests_for("a")
    assert second.received_at - first.received_at >= 0.3


async def test_a_retry_after_longer_than_the_limit_falls_back_at_once(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("a", RateLimited(retry_after=120))
    executor = LLMExecutor(
        "openai/a",
        fallback_models=["anthropic/b"],
        sink=sink,
        providers=providers,
        retry_policy=RetryPolicy(max_retry_after=30),
    )
    with execution_context(**CONTEXT):
        response = await executor.generate(MESSAGES)
    assert response.model == "anthropic/b"
    assert len(server.requests_for("a")) == 1
    failed = next(e for e in sink.events if e.event_type == "AttemptFailed").payload
    assert failed.next_action == "fall_back"


async def test_the_deadline_bounds_the_whole_execution(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.default("a", Stall(seconds=60))  # far beyond the deadline: only the deadline can end the call early
    server.default("b", Stall(seconds=60))
    executor = LLMExecutor(
        "openai/a",
        fallback_models=["anthropic/b"],
        timeout_seconds=0.7,
        attempt_timeout_seconds=0.4,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with execution_context(**CONTEXT), pytest.raises(DeadlineExceededError):
        await executor.generate(MESSAGES)
    assert loop.time() - started < 30, "the deadline, not the provider, decided when to stop"
    events = sink.events
    assert events[-1].event_type == "ExecutionFailed"
    assert events[-1].payload.error_type == "deadline_exceeded"
    timeouts = [e.payload.timeout_seconds for e in events if e.event_type == "AttemptStarted"]
    assert timeouts[0] == pytest.approx(0.4)
    assert sum(timeouts) <= 0.7 + 1e-6


async def test_a_cancelled_call_ends_its_stream_with_execution_failed_cancelled(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("a", Stall(seconds=60))  # never answers before the cancel
    executor = LLMExecutor("openai/a", sink=sink, providers=providers)

    async def call() -> None:
        with execution_context(**CONTEXT):
            await executor.generate(MESSAGES)

    task = asyncio.create_task(call())
    for _ in range(3000):  # until the provider has the request in hand
        if server.requests_for("a"):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _types(sink.events) == ["ExecutionStarted", *_attempt("AttemptFailed"), "ExecutionFailed"]
    assert sink.events[-2].payload.error_type == "cancelled"  # type: ignore[union-attr]
    assert sink.events[-1].payload.error_type == "cancelled"  # type: ignore[union-attr]
    assert verify_chain(sink.events).ok


async def test_hashes_cover_the_context(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    executor = LLMExecutor("openai/a", sink=sink, providers=providers)
    with execution_context(**CONTEXT):
        await executor.generate(MESSAGES)
    record = sink.events[0].to_record()
    record["tenant_id"] = "someone-else"
    assert compute_hash(record) != sink.events[0].hash


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_each_attempt_failed_to_fall_back_is_followed_by_its_fallback_in_the_stream(stream: bool) -> None:
    # The dashboard finds a fallback as the event after its failed attempt (projections/drilldown.py).
    chain = ["mock/limited?rate_limit=1&p50_ms=0", "mock/broken?server_error=1&p50_ms=0", "mock/answers?p50_ms=0"]
    sink = InMemorySink()
    executor = LLMExecutor(chain[0], fallback_models=chain[1:], max_retries=0, sink=sink)
    with execution_context(**CONTEXT):
        if stream:
            [chunk async for chunk in executor.generate_stream(MESSAGES)]
        else:
            await executor.generate(MESSAGES)

    events = sink.events
    falling_back = [
        (i, e) for i, e in enumerate(events) if isinstance(e, AttemptFailed) and e.payload.next_action == "fall_back"
    ]
    assert len(falling_back) == 2
    for i, failed in falling_back:
        following = events[i + 1]
        assert isinstance(following, FallbackTriggered)
        assert following.stream_position == failed.stream_position + 1
        assert following.payload.from_model == failed.payload.model
    assert events[-1].event_type == "ExecutionSucceeded"
