"""The demo workload: Focal-like sessions, run concurrently, each through its own ``LLMExecutor`` per
pipeline step (on its own simulated clock and mock models), recording to the process-wide default writer
exactly as an application's calls do."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib import resources

from agno.agent import Agent
from pydantic import BaseModel, Field

from llm_ledger.demo.agno_agent import agno_quiet, answer_as_agent, build_sales_agent
from llm_ledger.demo.plan import AGNO_AGENTS, STEPS, SessionPlan, TurnPlan, WorkloadPlan, plan_workload
from llm_ledger.demo.providers import SessionModels
from llm_ledger.demo.summary import WorkloadSummary, summarize
from llm_ledger.demo.timeline import SimulatedClock
from llm_ledger.demo.tools import TOOL_SPECS, execute_tool_calls, order_service_is_down
from llm_ledger.environment import LLM_LEDGER_DATABASE_URL
from llm_ledger.executor import (
    ClientFactory,
    Clock,
    LLMExecutor,
    LLMMessage,
    PipelineConfig,
    ProviderError,
    RetryPolicy,
    default_digest_secret,
    execution_context,
    get_default_sink,
    system_clock,
)
from llm_ledger.lifecycle import aclose
from llm_ledger.store import EventStore, StoreSettings, migrate
from llm_ledger.store.settings import directory_error

PIPELINE_RESOURCE = "focal_pipeline.toml"
DEFAULT_CONCURRENCY = 50
"""Sessions in flight at once. Spread over days, they rarely overlap on their own clocks: this sets only
how long the run takes (its calls wait on the mock models' latencies, not on the CPU)."""

Progress = Callable[[int], None]


class AgentReply(BaseModel):
    """The structured answer of a generation step."""

    answer: str
    escalate_to_human: bool
    confidence: float = Field(ge=0.0, le=1.0)


def load_demo_pipeline() -> PipelineConfig:
    """The bundled example pipeline (``llm_ledger/demo/focal_pipeline.toml``)."""
    text = resources.files("llm_ledger.demo").joinpath(PIPELINE_RESOURCE).read_text(encoding="utf-8")
    return PipelineConfig.from_toml(text, source=f"llm_ledger/demo/{PIPELINE_RESOURCE}")


def run_workload(
    database_url: str | None = None,
    *,
    sessions: int,
    seed: int = 7,
    progress: Progress | None = None,
    latency_scale: float = 1.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    history: timedelta = timedelta(0),
    anchor: datetime | None = None,
) -> WorkloadSummary:
    """Run the demo workload into a ledger and return what it recorded; see ``arun_workload``.

    Synchronous (it runs its own event loop): call ``arun_workload`` from async code.
    """
    return asyncio.run(
        arun_workload(
            database_url,
            sessions=sessions,
            seed=seed,
            progress=progress,
            latency_scale=latency_scale,
            concurrency=concurrency,
            history=history,
            anchor=anchor,
        )
    )


async def arun_workload(
    database_url: str | None = None,
    *,
    sessions: int,
    seed: int = 7,
    progress: Progress | None = None,
    latency_scale: float = 1.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    history: timedelta = timedelta(0),
    anchor: datetime | None = None,
) -> WorkloadSummary:
    """Run ``sessions`` Focal-like sessions into the ledger at ``database_url`` (default: the configured
    one, ``LLM_LEDGER_DATABASE_URL`` or the embedded SQLite file), migrating it to the newest schema
    first, and return the summary of the events it holds afterwards.

    With ``history`` above 0 the sessions happen in the past (``plan_workload``: over ``history`` before
    ``anchor``, this hour by default, each on its own simulated clock), with an incident hour in which
    one provider is rate-limited; with 0 they happen now. The same ``sessions``, ``seed`` and ``anchor``
    give the same tenants, agents, turns, start times and outcomes, whatever the database and however the
    concurrent sessions interleave (``SessionModels``). ``progress`` is called with 1 after each step of
    a turn. ``latency_scale`` multiplies the mock models' latencies (tests make them short). Events
    recorded earlier in this process by executors without ``sink=`` are flushed to their own ledger
    first, since the default writer is rebound here.
    Raises ``StoreUnavailableError`` when the ledger cannot be reached.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if latency_scale < 0:
        raise ValueError(f"latency_scale must not be negative, got {latency_scale}")
    plan = plan_workload(sessions, seed, history=history, anchor=anchor)
    url = database_url or StoreSettings.from_env().database_url
    await asyncio.to_thread(_prepare_ledger, url)
    with _configured_ledger(database_url):
        # Before any event is written: a PostgreSQL ledger's writers need LLM_LEDGER_DIGEST_KEY, and the
        # demo's executors, built per session, must not be the first to find it missing.
        default_digest_secret.get()
    setup = _Setup(plan, load_demo_pipeline(), latency_scale)
    await aclose()
    with _configured_ledger(database_url):
        get_default_sink()  # made now, while the URL is the demo's
    started = time.monotonic()
    limit = asyncio.Semaphore(concurrency)
    try:
        with agno_quiet():
            await asyncio.gather(
                *(_run_session(setup, number, session, limit, progress) for number, session in enumerate(plan.sessions))
            )
    finally:
        duration = time.monotonic() - started
        await aclose()  # the events stored, the traces exported
    return await asyncio.to_thread(summarize, url, plan, duration)


class _Steps:
    """What answers a session's steps: one executor per step, and the Agno Agent of the sales agents' tool turns."""

    def __init__(self, executors: dict[str, LLMExecutor], agent: Agent) -> None:
        self.executors = executors
        self.agent = agent


class _Setup:
    """What every session of a run is built from."""

    def __init__(self, plan: WorkloadPlan, pipeline: PipelineConfig, latency_scale: float) -> None:
        self.plan = plan
        self.pipeline = pipeline
        self.latency_scale = latency_scale

    def steps_for(self, number: int, session: SessionPlan) -> _Steps:
        """The session's executors: on its clock, its own mock models and its own retry jitter, so that
        what it meets depends on the seed and its place in the plan only."""
        seed, incident = self.plan.seed, self.plan.incident
        clock: Clock = system_clock if session.starts_at is None else SimulatedClock(session.starts_at)
        rate_limited = (
            incident.provider if incident and session.starts_at and incident.covers(session.starts_at) else None
        )
        models = SessionModels(
            seed=seed, session_number=number, latency_scale=self.latency_scale, rate_limited=rate_limited
        )
        scale = self.latency_scale
        retry_policy = RetryPolicy(
            base_delay=0.25 * scale, max_delay=2.0 * scale, rng=random.Random(f"retries:{seed}:{number}")
        )
        executors = build_step_executors(self.pipeline, retry_policy, clock=clock, client_factory=models.factory)
        # The Agent's models draw apart from the generation executor's, as another executor's would.
        agent_models = models.factory("generation (Agno Agent)")
        agent = build_sales_agent(self.pipeline, retry_policy, clock=clock, client_factory=agent_models)
        return _Steps(executors, agent)


def build_step_executors(
    config: PipelineConfig,
    retry_policy: RetryPolicy | None = None,
    *,
    clock: Clock = system_clock,
    client_factory: Callable[[str], ClientFactory] | None = None,
) -> dict[str, LLMExecutor]:
    """One executor per pipeline step, as Focal builds them at start-up; each resolves its chain per
    call from the execution context (tenant+agent override, then agent, then step). ``clock`` stamps
    their events; ``client_factory``, given a step, gives the factory of that step's model clients."""
    return {
        step: LLMExecutor.from_config(
            config,
            step,
            retry_policy=retry_policy,
            clock=clock,
            client_factory=client_factory(step) if client_factory else None,
        )
        for step in STEPS
    }


def _prepare_ledger(url: str) -> None:
    try:
        store = EventStore(url)
    except OSError as exc:
        raise directory_error(url, exc) from None
    try:
        store.ping()  # an unreachable ledger fails here, with StoreUnavailableError, not in the writer's spool
    finally:
        store.close()
    migrate.upgrade(url)


@contextlib.contextmanager
def _configured_ledger(database_url: str | None) -> Iterator[None]:
    """The default writer reads its URL from the environment when it is made: point it at ours."""
    if database_url is None:
        yield
        return
    with LLM_LEDGER_DATABASE_URL.overridden(database_url):
        yield


async def _run_session(
    setup: _Setup, number: int, session: SessionPlan, limit: asyncio.Semaphore, progress: Progress | None
) -> None:
    async with limit:
        steps = setup.steps_for(number, session)  # in the slot: its clock starts when it runs
        for turn in session.turns:
            # Set inside the task: concurrent sessions each see only their own context.
            with execution_context(
                tenant_id=session.tenant_id,
                agent_id=session.agent_id,
                session_id=session.session_id,
                turn_id=turn.turn_id,
            ):
                await _run_turn(steps, session, turn, progress)


async def _run_turn(steps: _Steps, session: SessionPlan, turn: TurnPlan, progress: Progress | None) -> None:
    def done() -> None:
        if progress is not None:
            progress(1)

    executors = steps.executors
    customer = LLMMessage(role="user", content=turn.customer_message)
    context = await _answer(
        executors["context_extraction"],
        [LLMMessage(role="system", content="Extract the customer's intent, order ids and sentiment."), customer],
    )
    done()
    rules = await _answer(
        executors["rule_filtering"],
        [
            LLMMessage(role="system", content=f"Which of {session.agent_id}'s policies apply? Context: {context}"),
            customer,
        ],
    )
    done()
    if turn.generation == "tools" and session.agent_id in AGNO_AGENTS:
        prompt = f"{turn.customer_message}\n\n(Context: {context}. Rules: {rules})"
        reply = await answer_as_agent(steps.agent, session, turn, prompt)
    else:
        reply = await _generate(executors["generation"], turn, session, context, rules, customer)
    done()
    await _answer(
        executors["enforcement"],
        [
            LLMMessage(role="system", content=f"Check this reply against the rules: {rules}"),
            LLMMessage(role="assistant", content=reply),
        ],
    )
    done()


async def _answer(executor: LLMExecutor, messages: list[LLMMessage]) -> str:
    """The step's answer, or a placeholder when every model failed: Focal's turn goes on without it."""
    try:
        response = await executor.generate(messages)
    except ProviderError as exc:
        return f"(no answer: {exc.error_type})"
    return response.content


async def _generate(
    executor: LLMExecutor, turn: TurnPlan, session: SessionPlan, context: str, rules: str, customer: LLMMessage
) -> str:
    who = f"{session.tenant_id}'s {session.agent_id} agent"
    system = LLMMessage(role="system", content=f"You are {who}. Context: {context}. Rules: {rules}")
    try:
        if turn.generation == "stream":
            return "".join([chunk async for chunk in executor.generate_stream([system, customer])])
        if turn.generation == "structured":
            parsed, _ = await executor.generate_structured([system, customer], AgentReply)
            return parsed.answer
        if turn.generation == "tools":
            return await _generate_with_tools(executor, turn, [system, customer])
        return (await executor.generate([system, customer])).content
    except ProviderError as exc:
        return f"(no reply: {exc.error_type})"


async def _generate_with_tools(executor: LLMExecutor, turn: TurnPlan, messages: list[LLMMessage]) -> str:
    """Offer the tools; when the answer asks for them, run them and ask again with their results (a
    second execution), as Focal's generation step does with its ToolExecutor."""
    first = await executor.generate(messages, tools=TOOL_SPECS)
    if not first.tool_calls:
        return first.content
    results = await execute_tool_calls(first.tool_calls, outage=order_service_is_down(turn))
    asked = LLMMessage(role="assistant", content=first.content, tool_calls=first.tool_calls)
    return (await executor.generate([*messages, asked, *results], tools=TOOL_SPECS)).content
