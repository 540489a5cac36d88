"""The demo's Agno Agent: the sales agents answer their tool turns as an Agno ``Agent`` on
``AuditedModel``, whose every round trip is one execution of the pipeline's generation step (its chain
resolved per tenant and agent from the same pipeline file), and whose tools, reading the tenant from
Agno's ``RunContext``, are recorded by the Agent's tool hooks."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from agno.agent import Agent
from agno.run.base import RunContext, RunStatus
from agno.utils import log as agno_log

from llm_ledger.agno import AuditedModel
from llm_ledger.demo import tools
from llm_ledger.demo.plan import SessionPlan, TurnPlan
from llm_ledger.demo.tools import ORDER_SERVICE_DOWN, OrderServiceDown, order_service_is_down
from llm_ledger.executor import ClientFactory, Clock, PipelineConfig, RetryPolicy, system_clock


# Named as the executor's tools are (the ledger counts tools by name); Agno passes the run's RunContext.
def lookup_order(run_context: RunContext, order_id: str) -> str:
    """The status and carrier of one of the customer's orders."""
    state = run_context.session_state or {}
    if state.get("order_service_down"):
        raise OrderServiceDown(ORDER_SERVICE_DOWN)
    return json.dumps({**tools.lookup_order(order_id), "tenant": state.get("tenant_id")})


def check_policy(run_context: RunContext, topic: str) -> str:
    """The tenant's policy on a topic: refunds, delivery, billing or accounts."""
    tenant = (run_context.session_state or {}).get("tenant_id")
    return f"{tenant}: {tools.check_policy(topic)}"


def build_sales_agent(
    config: PipelineConfig,
    retry_policy: RetryPolicy | None = None,
    *,
    clock: Clock = system_clock,
    client_factory: ClientFactory | None = None,
) -> Agent:
    """An Agent for any tenant: the models are chosen per call, from the run's tenant and agent. ``clock``
    and ``client_factory`` are its executor's (``LLMExecutor``)."""
    model = AuditedModel.from_config(
        config, step_name="generation", retry_policy=retry_policy, clock=clock, client_factory=client_factory
    )
    return Agent(
        name="sales-assistant",
        model=model,
        tools=[lookup_order, check_policy],
        instructions="You are a sales assistant. Look up orders and policies before you answer.",
        telemetry=False,
    )


async def answer_as_agent(agent: Agent, session: SessionPlan, turn: TurnPlan, prompt: str) -> str:
    """The turn's reply from the Agent (the execution context set by the caller names the tenant too)."""
    output = await agent.arun(
        prompt,
        session_id=session.session_id,
        session_state={
            "tenant_id": session.tenant_id,
            "agent_id": session.agent_id,
            "turn_id": turn.turn_id,
            "order_service_down": order_service_is_down(turn),
        },
    )
    if output.status != RunStatus.completed:
        # Agno turns a failed run into text; the ledger holds the executions and why they failed.
        return "(no reply: the agent's run failed)"
    return str(output.content or "")


@contextlib.contextmanager
def agno_quiet() -> Iterator[None]:
    """Agno prints the traceback of every tool that raises, and a warning per failed run, on stdout: the
    ledger records both (a failed tool execution, a failed execution), so the demo's output stays the
    summary. ``disabled`` rather than a level, which Agno resets at every run."""
    loggers = (agno_log.agent_logger, agno_log.team_logger, agno_log.workflow_logger)
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled
