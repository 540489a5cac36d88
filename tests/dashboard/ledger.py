"""A small ledger with known figures, made by the real executor on mock models and then moved back in
time (each stream sealed again with earlier timestamps), so that the executions spread over the last
hours as they would in production."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

from llm_ledger import (
    AllModelsFailedError,
    LLMExecutor,
    LLMMessage,
    RetryPolicy,
    ToolSpec,
    execution_context,
    run_tool_call,
)
from llm_ledger.events import STREAM_KINDS, Event, StreamHeader, StreamSealer
from llm_ledger.executor import InMemorySink
from llm_ledger.projections import Price, PriceTable
from llm_ledger.projections.queries import Window

FAST = "mock/fast?p50_ms=40&p99_ms=120&seed=1"
LIMITED = "mock/limited?rate_limit=1&p50_ms=15&seed=2"
BACKUP = "mock/backup?p50_ms=70&p99_ms=200&seed=3"
PRICES = PriceTable(exact={FAST: Price(input_per_million=150.0, output_per_million=600.0)})
"""The operator's price of one mock model (no catalogue knows a mock model): the others' cost stays unknown."""
BROKEN = "mock/broken?server_error=1&p50_ms=25&seed=4"
OTHER_TENANTS_MODEL = "mock/globex-private-model?p50_ms=5"
TOOL_USER = "mock/tool-user?p50_ms=10&tool_use=1&seed=5"
"""Asks for each tool it is offered."""
EXECUTION_ENDS = STREAM_KINDS["execution"].terminals


def answered_by(event: Event) -> str:
    """The model an execution's figures count under: the one that answered, or the last one tried."""
    payload = event.payload
    return str(payload.model if event.event_type == "ExecutionSucceeded" else payload.last_model)  # type: ignore[union-attr]


def lookup_order(order_id: str) -> str:
    """The status of an order."""
    return f"{order_id}: shipped"


def check_policy(topic: str) -> str:
    """The policy on a topic."""
    raise ConnectionError("the policy service did not answer")


TOOLS = {"lookup_order": lookup_order, "check_policy": check_policy}


def run(
    count: int,
    *,
    tenant: str,
    session: str | None,
    chain: Sequence[str],
    step: str,
    agent: str = "support-agent",
    stream: bool = False,
) -> list[Event]:
    """``count`` executions of one step, each with no retries (a failure falls back or fails at once), in
    ``session`` (``None``: of no session); streamed when ``stream``."""
    sink = InMemorySink()
    executor = LLMExecutor(
        chain[0],
        fallback_models=list(chain[1:]),
        step_name=step,
        max_retries=0,
        sink=sink,
        retry_policy=RetryPolicy(base_delay=0),
    )

    async def all_of_them() -> None:
        async def one(i: int) -> None:
            context = execution_context(tenant_id=tenant, agent_id=agent, session_id=session, turn_id=f"turn-{i}")
            # Failed executions are part of the fixture.
            messages = [LLMMessage(role="user", content=f"question {i}")]
            with context, contextlib.suppress(AllModelsFailedError):
                if stream:
                    [chunk async for chunk in executor.generate_stream(messages)]
                else:
                    await executor.generate(messages)

        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(all_of_them())
    return sink.events


def tool_conversation(
    *, tenant: str, session: str, step: str, agent: str = "support-agent", tools_session: str | None = None
) -> list[Event]:
    """One execution whose answer asks for both tools, and the two tool executions (one fails); with
    ``tools_session``, the tools run under a context of their own, of that session and another turn."""
    sink = InMemorySink()
    executor = LLMExecutor(TOOL_USER, step_name=step, max_retries=0, sink=sink)
    specs = [ToolSpec.from_function(function) for function in TOOLS.values()]

    async def converse() -> None:
        with execution_context(tenant_id=tenant, agent_id=agent, session_id=session, turn_id="turn-tools"):
            asked = await executor.generate([LLMMessage(role="user", content="where is my order?")], tools=specs)
        own, turn = (session, "turn-tools") if tools_session is None else (tools_session, "turn-elsewhere")
        with execution_context(tenant_id=tenant, agent_id=agent, session_id=own, turn_id=turn):
            for call in asked.tool_calls:
                with contextlib.suppress(ConnectionError):
                    await run_tool_call(call, TOOLS[call.name])

    asyncio.run(converse())
    return sink.events


def moved_back(events: Sequence[Event], by: timedelta, *, traced: bool = False) -> list[Event]:
    """The same streams sealed again ``by`` earlier (and, when ``traced``, each with a trace id)."""
    return resealed(events, by=by, traced=traced)


def resealed(
    events: Sequence[Event],
    *,
    by: timedelta = timedelta(0),
    traced: bool = False,
    agent: str | None = None,
    step: str | None = None,
) -> list[Event]:
    """The same streams sealed again: ``by`` earlier, as ``agent``'s and ``step``'s when given (else their
    own), and, when ``traced``, each with a trace id."""
    streams: dict[str, list[Event]] = {}
    for event in events:
        streams.setdefault(str(event.stream_id), []).append(event)
    moved: list[Event] = []
    for stream in streams.values():
        first = min(stream, key=lambda e: e.stream_position)
        sealer = StreamSealer(
            StreamHeader(
                first.stream_id,
                first.tenant_id,
                first.agent_id if agent is None else agent,
                first.session_id,
                first.turn_id,
                first.step if step is None else step,
            )
        )
        trace_id = secrets.token_hex(16) if traced else None
        for event in sorted(stream, key=lambda e: e.stream_position):
            sealed = sealer.seal(
                event.event_type,
                event.payload,
                occurred_at=event.occurred_at - by,
                trace_id=trace_id or event.trace_id,
                span_id=secrets.token_hex(8) if traced else event.span_id,
            )
            # sealing builds the concrete event class; it is typed as the EventEnvelope base
            moved.append(cast(Event, sealed))
    return moved


@dataclass(frozen=True, slots=True)
class RawFigures:
    """Figures counted straight from the events, to hold the dashboard to."""

    executions: int
    failed: int
    fell_back: int

    @property
    def error_rate_text(self) -> str:
        return f"{100 * self.failed / self.executions:.1f}%"

    @property
    def fallback_rate_text(self) -> str:
        return f"{100 * self.fell_back / self.executions:.1f}%"


@dataclass(slots=True)
class KnownLedger:
    """Two tenants' events: ``tenant`` with executions in the last hour and the hour before,
    ``other_tenant`` with a model, a session and an agent nobody else has."""

    tenant: str = "acme"
    other_tenant: str = "globex"
    traced_session: str = "acme-session-1"
    tools_session: str = "acme-session-tools"
    other_session: str = "globex-private-session"
    events: list[Event] = field(default_factory=list)

    def build(self) -> KnownLedger:
        minutes = timedelta(minutes=1)
        acme, one, two, earlier = self.tenant, self.traced_session, "acme-session-2", "acme-session-0"
        self.events = [
            *moved_back(run(5, tenant=acme, session=earlier, chain=[FAST], step="classify"), 80 * minutes),
            *moved_back(run(1, tenant=acme, session=earlier, chain=[BROKEN], step="answer"), 75 * minutes),
            *moved_back(run(4, tenant=acme, session=one, chain=[FAST], step="classify"), 50 * minutes, traced=True),
            *moved_back(
                run(3, tenant=acme, session=one, chain=[LIMITED, BACKUP], step="answer"), 35 * minutes, traced=True
            ),
            *moved_back(run(2, tenant=acme, session=two, chain=[BROKEN], step="answer"), 20 * minutes),
            *moved_back(
                run(3, tenant=acme, session="acme-session-streamed", chain=[FAST], step="summarize", stream=True),
                70 * minutes,
            ),
            *moved_back(run(4, tenant=acme, session=two, chain=[FAST, BACKUP], step="classify"), 5 * minutes),
            *moved_back(tool_conversation(tenant=acme, session=self.tools_session, step="answer"), 15 * minutes),
            *moved_back(
                run(
                    3,
                    tenant=self.other_tenant,
                    session=self.other_session,
                    chain=[OTHER_TENANTS_MODEL],
                    step="globex-private-step",
                    agent="globex-private-agent",
                ),
                10 * minutes,
            ),
        ]
        return self

    def figures(self, tenant: str, window: Window) -> RawFigures:
        def inside(event: Event) -> bool:
            return event.tenant_id == tenant and window.start <= event.occurred_at < window.end

        ended = [e for e in self.events if inside(e) and e.event_type in EXECUTION_ENDS]
        fell_back = {str(e.stream_id) for e in self.events if e.event_type == "FallbackTriggered"}
        return RawFigures(
            executions=len(ended),
            failed=sum(e.event_type == "ExecutionFailed" for e in ended),
            fell_back=sum(str(e.stream_id) in fell_back for e in ended),
        )

    def trace_ids(self, session: str) -> set[str]:
        return {e.trace_id for e in self.events if e.session_id == session and e.trace_id}

    def last_hour(self) -> Window:
        return Window.last(timedelta(hours=1), datetime.now(UTC))
