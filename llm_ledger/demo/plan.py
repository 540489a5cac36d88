"""What the demo workload will do, drawn from its seed before anything runs: which tenant and agent
each session belongs to, when it starts, how many turns it has, and how each turn's generation step is
called."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from llm_ledger.demo.timeline import Incident, Timeline, anchor_at, lay_out

STEPS = ("context_extraction", "rule_filtering", "generation", "enforcement")
TENANT_AGENTS: dict[str, tuple[str, ...]] = {
    "acme": ("support", "sales"),
    "globex": ("support",),
    "initech": ("support", "sales"),
}
TURNS_PER_SESSION = (2, 5)

GenerationMode = Literal["generate", "stream", "structured", "tools"]
"""``tools``: the step offers the demo's tools; a support agent runs the calls its model asks for with
the demo's tool executor and asks again with their results, a sales agent answers as an Agno Agent on
``AuditedModel`` (demo/agno_agent.py)."""
AGNO_AGENTS = frozenset({"sales"})
"""The agents whose tool turns run as an Agno Agent."""


@dataclass(frozen=True, slots=True)
class TurnPlan:
    turn_id: str
    customer_message: str
    generation: GenerationMode


@dataclass(frozen=True, slots=True)
class SessionPlan:
    tenant_id: str
    agent_id: str
    session_id: str
    turns: tuple[TurnPlan, ...]
    starts_at: datetime | None = None
    """When the session starts on its simulated clock; None: now, on the system's."""


@dataclass(frozen=True, slots=True)
class WorkloadPlan:
    seed: int
    sessions: tuple[SessionPlan, ...]
    timeline: Timeline | None = None
    """Where the sessions lie in the past; None for a demo of today only (``history`` 0)."""

    @property
    def incident(self) -> Incident | None:
        return self.timeline.incident if self.timeline else None

    @property
    def turns(self) -> int:
        return sum(len(session.turns) for session in self.sessions)

    @property
    def step_calls(self) -> int:
        """One call of each step per turn (a failed step does not stop its turn). A step that calls tools
        makes a second execution with their results, so a run holds at least this many executions."""
        return self.turns * len(STEPS)

    @property
    def agent_turns(self) -> int:
        """The turns answered by the Agno Agent."""
        return sum(
            1
            for session in self.sessions
            if session.agent_id in AGNO_AGENTS
            for turn in session.turns
            if turn.generation == "tools"
        )


_MESSAGES = {
    "support": (
        "My order arrived broken, I want a refund.",
        "Where is my parcel? The tracking page has not changed in four days.",
        "I was charged twice for the same subscription this month.",
        "How do I reset the password of my account?",
        "The app crashes every time I open the settings page.",
        "Can I change the delivery address of an order I placed yesterday?",
    ),
    "sales": (
        "Do you have a discount for a team of twenty?",
        "What is the difference between the Pro and the Business plan?",
        "Can I pay yearly by bank transfer?",
        "We would like a trial for our whole department.",
        "Is there an education price for universities?",
    ),
}


def plan_workload(
    sessions: int, seed: int = 7, *, history: timedelta = timedelta(0), anchor: datetime | None = None
) -> WorkloadPlan:
    """The sessions of a run, in the order they start. The same ``sessions`` and ``seed`` give the same
    tenants, agents, turns and calls, and with the same ``anchor`` the same start times, spread over
    ``history`` before it (``timeline.lay_out``; ``anchor`` defaults to this hour, ``timeline.anchor_at``);
    with ``history`` 0 every session runs now. Session ids are new each time, so that runs on the same
    ledger never share a session."""
    if sessions < 1:
        raise ValueError(f"the demo needs at least one session, got {sessions}")
    if history < timedelta(0):
        raise ValueError(f"history must not be negative, got {history}")
    rng = random.Random(seed)
    pairs = [(tenant, agent) for tenant, agents in TENANT_AGENTS.items() for agent in agents]
    planned = []
    for index in range(sessions):
        # Every tenant and agent gets a session before any gets a second one.
        tenant, agent = pairs[index % len(pairs)] if index < len(pairs) else rng.choice(pairs)
        turns = tuple(
            TurnPlan(
                turn_id=f"turn-{number}",
                customer_message=rng.choice(_MESSAGES[agent]),
                generation=rng.choices(("stream", "structured", "generate", "tools"), weights=(3, 3, 1, 3))[0],
            )
            for number in range(1, rng.randint(*TURNS_PER_SESSION) + 1)
        )
        planned.append(SessionPlan(tenant, agent, f"session-{uuid.uuid4().hex[:12]}", turns))
    if not history:
        return WorkloadPlan(seed, tuple(planned))
    timeline = lay_out(sessions, seed=seed, history=history, anchor=anchor or anchor_at(datetime.now(UTC)))
    timed = (replace(session, starts_at=start) for session, start in zip(planned, timeline.starts, strict=True))
    return WorkloadPlan(seed, tuple(timed), timeline)
