"""200 concurrent executions under different contexts and parameters never mix either."""

from __future__ import annotations

import asyncio

from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, LLMResponse, execution_context
from llm_ledger.executor import ProviderSettings
from tests.fakes import FakeProviderServer, Reply, parse_echo


async def test_200_concurrent_executions_keep_their_own_context_and_parameters(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.default(None, Reply.echo(delay=0.01))
    executors = {
        provider: LLMExecutor(f"{provider}/echo", step_name="generation", sink=sink, providers=providers)
        for provider in ("openai", "openrouter", "groq", "anthropic")
    }
    providers_in_turn = list(executors)

    async def one_call(i: int) -> tuple[int, LLMResponse]:
        executor = executors[providers_in_turn[i % 4]]
        with execution_context(tenant_id=f"tenant-{i % 7}", agent_id=f"agent-{i}", session_id=f"session-{i}"):
            await asyncio.sleep((i % 5) / 1000)  # interleave the calls
            response = await executor.generate(
                [LLMMessage(role="user", content=f"question {i}")],
                temperature=round(i / 200, 3),
                max_tokens=100 + i,
            )
        return i, response

    results = await asyncio.gather(*(one_call(i) for i in range(200)))

    assert len(server.requests) == 200
    for i, response in results:
        echoed = parse_echo(response.content)
        assert echoed["last_user"] == f"question {i}"
        assert echoed["temperature"] == round(i / 200, 3)
        assert echoed["max_tokens"] == 100 + i
        assert response.metadata["tenant_id"] == f"tenant-{i % 7}"
        assert response.metadata["session_id"] == f"session-{i}"
        events = sink.stream(response.execution_id)
        assert {(e.tenant_id, e.agent_id, e.session_id) for e in events} == {
            (f"tenant-{i % 7}", f"agent-{i}", f"session-{i}")
        }
        started = events[0].payload
        assert started.parameters.temperature == round(i / 200, 3)  # type: ignore[union-attr]
        assert started.parameters.max_tokens == 100 + i  # type: ignore[union-attr]
    assert len(sink.stream_ids()) == 200


def test_one_executor_serves_one_event_loop_after_another(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    """A script calling ``asyncio.run`` twice, or a worker thread with its own loop: an SDK's pooled
    client belongs to the loop it was made on, so each loop gets its own, and no attempt fails."""
    server.default(None, Reply.echo())
    executors = [
        LLMExecutor(f"{provider}/echo", max_retries=0, sink=sink, providers=providers)
        for provider in ("openai", "openrouter", "groq", "anthropic")
    ]

    async def ask_each(round_number: int) -> list[str]:
        responses = [
            await executor.generate([LLMMessage(role="user", content=f"round {round_number}")])
            for executor in executors
        ]
        return [parse_echo(response.content)["last_user"] for response in responses]

    for round_number in range(3):
        assert asyncio.run(ask_each(round_number)) == [f"round {round_number}"] * 4
    failed = [event for event in sink.events if event.event_type == "AttemptFailed"]
    assert failed == [], [event.payload for event in failed]
    assert len(server.requests) == 12
