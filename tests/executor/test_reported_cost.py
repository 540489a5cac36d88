"""A cost OpenRouter reports that is no bill (an integer no float holds, more than a million dollars for one
call) is an unknown cost: the execution succeeds with its tokens, and no sum of costs reaches infinity."""

from __future__ import annotations

import pytest

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, TokenUsage, execution_context
from llm_ledger.executor import ProviderSettings
from tests.fakes import FakeProviderServer, Reply

HELLO = [LLMMessage(role="user", content="hello")]
MODEL = "anthropic/claude-3.5-haiku"


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "generate_stream"])
@pytest.mark.parametrize("cost", [10**400, 1e7], ids=["beyond-a-float", "beyond-a-million-dollars"])
async def test_an_absurd_reported_cost_is_unknown_and_the_call_succeeds(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], stream: bool, cost: float
) -> None:
    server.default(MODEL, Reply(input_tokens=5_000, output_tokens=300, cost=cost))
    sink = InMemorySink()
    executor = LLMExecutor(f"openrouter/{MODEL}", sink=sink, providers=providers)
    with execution_context(tenant_id="tenant-costs"):
        if stream:
            [chunk async for chunk in executor.generate_stream(HELLO)]
        else:
            await executor.generate(HELLO)

    (answered,) = (event for event in sink.events if event.event_type == "AttemptSucceeded")
    usage = answered.payload.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5_000, 300)
    assert usage.cost_usd is None
    assert [event.event_type for event in sink.events][-1] == "ExecutionSucceeded"


def test_a_sum_with_an_unknown_cost_is_unknown() -> None:
    known, unknown = TokenUsage(prompt_tokens=1, cost_usd=0.5), TokenUsage(prompt_tokens=2)

    assert (known + unknown).cost_usd is None and (unknown + known).cost_usd is None
    assert (known + known).cost_usd == 1.0 and (unknown + unknown).cost_usd is None
