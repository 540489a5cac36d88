"""mock/ models: scripted, seeded, and failing the way real providers do."""

from __future__ import annotations

import pytest

from llm_ledger import (
    AllModelsFailedError,
    ConfigurationError,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    MockBehaviour,
    execution_context,
    register_mock,
)
from llm_ledger.executor import RetryPolicy

MESSAGES = [LLMMessage(role="user", content="hi")]


async def _outcomes(model: str, calls: int) -> list[str]:
    executor = LLMExecutor(model, max_retries=0, sink=InMemorySink())
    outcomes = []
    with execution_context(tenant_id="t"):
        for _ in range(calls):
            try:
                await executor.generate(MESSAGES)
                outcomes.append("ok")
            except AllModelsFailedError as exc:
                outcomes.append(exc.errors[0].error_type)
    return outcomes


async def test_failure_rates_are_seeded_and_follow_their_classes() -> None:
    model = "mock/flaky?p50_ms=0&rate_limit=0.3&server_error=0.2&seed=11"
    first = await _outcomes(model, 300)
    assert first == await _outcomes(model, 300), "the same seed gives the same run"
    assert set(first) == {"ok", "rate_limit", "server_error"}
    assert 60 <= first.count("rate_limit") <= 120 and 30 <= first.count("server_error") <= 90


async def test_registered_behaviours_and_token_counts() -> None:
    register_mock("fixed", MockBehaviour(p50_ms=0, input_tokens=10, output_tokens=3, reply="fixed answer"))
    executor = LLMExecutor("mock/fixed", sink=InMemorySink())
    with execution_context(tenant_id="t"):
        response = await executor.generate(MESSAGES)
    assert response.content == "fixed answer"
    assert response.usage is not None and response.usage.total_tokens == 13


async def test_a_mock_stream_that_breaks_after_the_first_chunk() -> None:
    executor = LLMExecutor(
        "mock/s?p50_ms=0&stream_break=1&chunks=4", sink=InMemorySink(), retry_policy=RetryPolicy(base_delay=0)
    )
    with execution_context(tenant_id="t"):
        received = []
        with pytest.raises(Exception, match="chunk"):
            async for chunk in executor.generate_stream(MESSAGES):
                received.append(chunk)
    assert len(received) == 1


def test_bad_mock_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown mock option 'rate'"):
        LLMExecutor("mock/x?rate=0.1")._client("mock/x?rate=0.1")
    with pytest.raises(ConfigurationError, match="probability"):
        MockBehaviour(rate_limit=1.5)
