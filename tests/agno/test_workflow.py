"""One Agno Workflow for every tenant (a turn as two agent steps), each agent on its own
``AuditedModel.from_config``: the models are chosen per step, agent and tenant from one pipeline file,
against the real provider classes and the fake servers; 50 runs at once under 50 tenants mix nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from agno.agent import Agent
from agno.run.base import RunStatus
from agno.workflow import Step, Workflow

from llm_ledger.agno import AuditedModel
from llm_ledger.events import Event
from llm_ledger.executor import InMemorySink, ProviderSettings
from tests.agno.test_audited_model import executions, payload, tool_executions
from tests.fakes import FakeProviderServer, Reply, ToolCalls

TENANTS = [f"tenant-{number:02d}" for number in range(50)]


def _pipeline(path: Path) -> Path:
    """The research step on OpenAI, the writing step on Anthropic, and for each tenant's researcher a
    model of its own (so the fake server's script for it can be told apart, and checked)."""
    lines = [
        "[pipeline.research]",
        'model = "openai/research-default"',
        "[pipeline.write]",
        'model = "anthropic/write-default"',
    ]
    for tenant in TENANTS:
        lines += [f"[tenants.{tenant}.agents.researcher.pipeline.research]", f'model = "openai/research-{tenant}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def lookup_order(order_id: str) -> str:
    """The status of an order."""
    return f"{order_id}: shipped"


def _workflow(pipeline: Path, providers: dict[str, ProviderSettings], sink: InMemorySink) -> Workflow:
    researcher = Agent(
        id="researcher",
        name="researcher",
        model=AuditedModel.from_config(pipeline, step_name="research", providers=providers, sink=sink),
        tools=[lookup_order],
        telemetry=False,
    )
    writer = Agent(
        id="writer",
        name="writer",
        model=AuditedModel.from_config(pipeline, step_name="write", providers=providers, sink=sink),
        telemetry=False,
    )
    return Workflow(
        name="turn",
        steps=[Step(name="research", agent=researcher), Step(name="write", agent=writer)],
        telemetry=False,
    )


def _by_tenant(streams: list[list[Event]]) -> dict[str, list[list[Event]]]:
    grouped: dict[str, list[list[Event]]] = {}
    for stream in streams:
        assert len({event.tenant_id for event in stream}) == 1
        grouped.setdefault(stream[0].tenant_id, []).append(stream)
    return grouped


async def test_one_workflow_for_every_tenant_chooses_models_per_step_agent_and_tenant_and_mixes_nothing(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], tmp_path: Path
) -> None:
    for tenant in TENANTS:
        server.script(f"research-{tenant}", ToolCalls([("lookup_order", {"order_id": tenant})]))
        server.script(f"research-{tenant}", Reply(text=f"notes for {tenant}"))
    server.default("write-default", Reply.echo())
    sink = InMemorySink()
    workflow = _workflow(_pipeline(tmp_path / "pipeline.toml"), providers, sink)

    async def one_turn(tenant: str) -> str:
        output = await workflow.arun(
            f"Where is order {tenant}?", session_id=f"session-{tenant}", session_state={"tenant_id": tenant}
        )
        assert output.status == RunStatus.completed, output.content
        return str(output.content)

    answers = await asyncio.gather(*(one_turn(tenant) for tenant in TENANTS))

    assert len(answers) == len(TENANTS)
    runs = _by_tenant(executions(sink))
    tools = _by_tenant(tool_executions(sink))
    assert sorted(runs) == sorted(tools) == TENANTS
    for tenant in TENANTS:
        # Two round trips of the researcher (on the tenant's own model), one of the writer (the step's).
        models = Counter((getattr(s[-1].payload, "model", None), s[0].agent_id, s[0].step) for s in runs[tenant])
        assert models == {
            (f"openai/research-{tenant}", "researcher", "research"): 2,
            ("anthropic/write-default", "writer", "write"): 1,
        }, tenant
        assert {s[0].session_id for s in runs[tenant] + tools[tenant]} == {f"session-{tenant}"}
        (tool_run,) = tools[tenant]
        assert [e.event_type for e in tool_run] == ["ToolCallStarted", "ToolCallSucceeded"]
        asking = {s[0].stream_id for s in runs[tenant]}
        assert payload(tool_run[0], "execution_id") in asking
        assert (tool_run[0].agent_id, tool_run[0].step) == ("researcher", "research")
    # Each tenant's researcher model was asked exactly twice: no request went to another tenant's model.
    assert Counter(r.model for r in server.requests if r.model.startswith("research-")) == {
        f"research-{tenant}": 2 for tenant in TENANTS
    }
    assert all(r.rejected is None for r in server.requests)
