"""How a Focal pipeline step calls an LLM through llm-ledger: one turn through the four steps.

- one ``LLMExecutor`` per step, built once from the pipeline's TOML (``pipeline.toml``, next to this
  file); each call resolves its model chain from the current tenant and agent;
- the turn's context (tenant, agent, session, turn) set once around the turn: every event and span of
  every call inside carries it, and concurrent turns never mix theirs;
- every attempt, retry and fallback recorded in the ledger: the embedded SQLite file
  (``~/.llm-ledger/ledger.db``) or ``LLM_LEDGER_DATABASE_URL``.

Run it as is (mock models, no keys, no network):  python examples/focal_pipeline.py
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from pydantic import BaseModel

import llm_ledger
from llm_ledger import (
    LLMExecutor,
    LLMMessage,
    LLMResponse,
    MockBehaviour,
    PipelineConfig,
    execution_context,
    register_mock,
)

PIPELINE = PipelineConfig.load(Path(__file__).with_name("pipeline.toml"))
STEPS = ("context_extraction", "rule_filtering", "generation", "enforcement")
EXECUTORS = {step: LLMExecutor.from_config(PIPELINE, step) for step in STEPS}


class Verdict(BaseModel):
    """What the enforcement step decides about a reply."""

    compliant: bool
    reason: str


def show(step: str, response: LLMResponse) -> None:
    fallback = " (fell back)" if response.fallback_used else ""
    print(f"{step:<19} {response.model:<34} {len(response.attempts)} attempt(s){fallback}  {response.execution_id}")


async def run_turn(tenant: str, agent: str, session: str, turn: str, message: str) -> str:
    with execution_context(tenant_id=tenant, agent_id=agent, session_id=session, turn_id=turn):
        customer = LLMMessage(role="user", content=message)

        context = await EXECUTORS["context_extraction"].generate(
            [LLMMessage(role="system", content="Extract the customer's intent and any order ids."), customer]
        )
        show("context_extraction", context)

        rules = await EXECUTORS["rule_filtering"].generate(
            [LLMMessage(role="system", content=f"List the policies that apply. Context: {context.content}"), customer]
        )
        show("rule_filtering", rules)

        # Streamed to the customer as it comes; the executor falls back only before the first chunk.
        stream = EXECUTORS["generation"].generate_stream(
            [LLMMessage(role="system", content=f"Answer within these rules: {rules.content}"), customer]
        )
        reply = "".join([chunk async for chunk in stream])
        print(f"{'generation':<19} streamed {len(reply)} characters")

        verdict, checked = await EXECUTORS["enforcement"].generate_structured(
            f"Reply to check: {reply}", Verdict, system_prompt=f"Check the reply against: {rules.content}"
        )
        show("enforcement", checked)
        print(f"verdict: compliant={verdict.compliant}")
    return reply


async def main() -> None:
    # A throttled OpenRouter, to see a retry and a fallback in rule_filtering (remove with real models).
    register_mock("openrouter-claude-3-haiku", MockBehaviour(p50_ms=80, rate_limit=1.0, retry_after=0.05))
    session = f"session-{uuid.uuid4().hex[:8]}"
    try:
        await run_turn("acme", "support", session, "turn-1", "My order #4417 arrived broken. I want a refund.")
    finally:
        await llm_ledger.aclose()  # write the recorded events before the process exits
    print(f"\nrecorded in the ledger as session {session}: llm-ledger dashboard, or")
    print(f"  SELECT step, event_type FROM llm_ledger_events WHERE session_id = '{session}' ORDER BY global_position;")


if __name__ == "__main__":
    asyncio.run(main())
