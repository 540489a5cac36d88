"""Streams fall back only before the first chunk, and never deliver a chunk twice."""

from __future__ import annotations

import pytest

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, StreamInterruptedError, execution_context, verify_chain
from llm_ledger.executor import ProviderSettings, RetryPolicy
from tests.fakes import BrokenStream, FakeProviderServer, RateLimited, Reply, Stall

MESSAGES = [LLMMessage(role="user", content="tell me")]


@pytest.mark.parametrize("primary", ["openai", "anthropic"])
async def test_a_failure_before_the_first_chunk_falls_back(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    fast_retries: RetryPolicy,
    primary: str,
) -> None:
    server.script("a", RateLimited(retry_after=0))
    server.script("b", Reply(text="from the fallback", chunks=3))
    executor = LLMExecutor(
        f"{primary}/a",
        fallback_models=["groq/b"],
        max_retries=0,
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    with execution_context(tenant_id="acme", session_id="s"):
        chunks = [chunk async for chunk in executor.generate_stream(MESSAGES)]

    assert "".join(chunks) == "from the fallback"
    assert [e.event_type for e in sink.events] == [
        "ExecutionStarted",
        "AttemptStarted",
        "AttemptFailed",
        "FallbackTriggered",
        "AttemptStarted",
        "AttemptSucceeded",
        "ExecutionSucceeded",
    ]
    succeeded = sink.events[-2].payload
    assert succeeded.time_to_first_chunk_ms is not None  # type: ignore[union-attr]
    assert sink.events[0].payload.operation == "generate_stream"  # type: ignore[union-attr]


@pytest.mark.parametrize("primary", ["openrouter", "anthropic"])
async def test_a_failure_after_the_first_chunk_ends_the_stream_without_fallback(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    sink: InMemorySink,
    fast_retries: RetryPolicy,
    primary: str,
) -> None:
    server.script("a", BrokenStream(after_chunks=2, text="one two three four five six"))
    executor = LLMExecutor(
        f"{primary}/a", fallback_models=["openai/b"], sink=sink, providers=providers, retry_policy=fast_retries
    )
    received: list[str] = []
    with execution_context(tenant_id="acme"), pytest.raises(StreamInterruptedError) as raised:
        async for chunk in executor.generate_stream(MESSAGES):
            received.append(chunk)

    assert len(received) == 2 and len(set(received)) == 2, "each chunk arrives once"
    assert raised.value.chunks_delivered == 2
    assert server.requests_for("b") == [], "no fallback after a chunk reached the caller"
    assert [e.event_type for e in sink.events] == [
        "ExecutionStarted",
        "AttemptStarted",
        "AttemptFailed",
        "ExecutionFailed",
    ]
    failed = sink.events[2].payload
    assert (failed.error_type, failed.next_action, failed.chunks_delivered) == ("connection", "fail", 2)  # type: ignore[union-attr]
    assert sink.events[-1].payload.error_type == "stream_interrupted"  # type: ignore[union-attr]
    assert verify_chain(sink.events).ok


async def test_a_stalled_stream_times_out_and_falls_back(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.script("a", Stall(seconds=60))
    server.script("b", Reply(text="quick"))
    executor = LLMExecutor(
        "openai/a",
        fallback_models=["anthropic/b"],
        max_retries=0,
        attempt_timeout_seconds=5.0,  # far below the stall, far above a busy machine's answer
        sink=sink,
        providers=providers,
        retry_policy=fast_retries,
    )
    with execution_context(tenant_id="acme"):
        chunks = [chunk async for chunk in executor.generate_stream(MESSAGES)]
    assert "".join(chunks) == "quick"
    assert sink.events[2].payload.error_type == "timeout"  # type: ignore[union-attr]


async def test_a_consumer_that_stops_reading_is_recorded_as_cancelled(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.script("a", Reply(text="a long answer in many small chunks", chunks=6, chunk_delay=0.01))
    executor = LLMExecutor("openai/a", sink=sink, providers=providers)
    with execution_context(tenant_id="acme"):
        stream = executor.generate_stream(MESSAGES)
        first = await anext(stream)
        await stream.aclose()
    assert first
    assert sink.events[-1].event_type == "ExecutionFailed"
    payload = sink.events[-1].payload
    assert (payload.error_type, payload.chunks_delivered) == ("cancelled", 1)
    assert verify_chain(sink.events).ok
