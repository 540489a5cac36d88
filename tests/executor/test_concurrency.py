"""200 concurrent executions under different contexts and parameters never mix either."""

from __future__ import annotations

import asyncio
import gc
import weakref
from concurrent.futures import ThreadPoolExecutor

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


def test_a_finished_event_loop_and_its_clients_are_let_go(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    """A long-lived executor used by one short loop after another (a worker running ``asyncio.run`` per
    job) keeps no finished loop alive but the last one (whose pooled connections refer to it), which goes
    when the next loop calls: loops, their clients and their sockets do not pile up."""
    server.default(None, Reply.echo())
    executor = LLMExecutor("openai/echo", max_retries=0, sink=sink, providers=providers)
    finished: list[weakref.ReferenceType[asyncio.AbstractEventLoop]] = []

    async def ask() -> None:
        finished.append(weakref.ref(asyncio.get_running_loop()))
        await executor.generate([LLMMessage(role="user", content="hi")])

    for _ in range(4):
        asyncio.run(ask())
    gc.collect()
    assert [loop() is None for loop in finished] == [True, True, True, False]


def test_threads_on_loops_of_their_own_share_one_executor(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    """Four threads, each with its own loop, calling one executor at once: each call uses its own loop's
    SDK client (a client of another loop fails with "attached to a different loop" or hangs)."""
    server.default(None, Reply.echo(delay=0.005))
    executor = LLMExecutor("openai/echo", max_retries=0, sink=sink, providers=providers)

    async def ask(thread: int) -> list[str]:
        answers = []
        for number in range(10):
            response = await executor.generate([LLMMessage(role="user", content=f"{thread}-{number}")])
            answers.append(parse_echo(response.content)["last_user"])
        return answers

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda thread: asyncio.run(ask(thread)), range(4)))

    assert results == [[f"{thread}-{number}" for number in range(10)] for thread in range(4)]
    failed = [event for event in sink.events if event.event_type == "AttemptFailed"]
    assert failed == [], [event.payload for event in failed]
