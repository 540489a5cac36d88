"""Who drives a model loop: the Agno Agent (or Team) whose run called ``Model.aresponse``, its
``RunContext``, and the fallback configuration Agno's fallback wrapper was given.

``Model.aresponse`` receives neither the agent nor its ``RunContext``, and Agno has no hook that runs
when a model is attached to an agent. The call stack has both: every agent and team run calls the model
through ``agno.models.fallback.(a)call_model(_stream)_with_fallback(model, fallback_config, ...)``, from
a run function whose locals are ``agent`` (or ``team``) and ``run_context``. ``find_run_owner`` reads
those locals from the few Agno frames above the model call, once per run (not per round trip), and
reads no frame outside the ``agno`` package. Tested against Agno 3.1 (tests/agno/test_refusals.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import FrameType
from typing import Any

from agno.run.base import RunContext

_FALLBACK_WRAPPERS = frozenset(
    {
        "call_model_with_fallback",
        "acall_model_with_fallback",
        "call_model_stream_with_fallback",
        "acall_model_stream_with_fallback",
        "_try_fallback_models",
        "_atry_fallback_models",
        "_try_fallback_models_stream",
        "_atry_fallback_models_stream",
    }
)
_MAX_FRAMES = 40
"""How far up to look: the run function is a handful of frames above the model call."""


@dataclass(frozen=True, slots=True)
class RunOwner:
    """What the stack says about the run: the agent or team (None when the model is called directly),
    its ``RunContext``, the fallback configuration the model call was wrapped in (only that one: an
    ``AuditedModel`` serving as an agent's ``output_model`` is not called through the agent's
    fallbacks), and whether the model is being called as someone else's fallback."""

    component: Any = None
    run_context: RunContext | None = None
    fallback_config: Any = None


def find_run_owner(frame: FrameType | None) -> RunOwner:
    from agno.agent import Agent
    from agno.team import Team

    component: Any = None
    run_context: RunContext | None = None
    fallback_config: Any = None
    depth = 0
    while frame is not None and depth < _MAX_FRAMES:
        module = frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith("agno."):
            local = frame.f_locals
            if module == "agno.models.fallback" and frame.f_code.co_name in _FALLBACK_WRAPPERS:
                fallback_config = local.get("fallback_config", fallback_config)
            candidate = local.get("agent") if isinstance(local.get("agent"), Agent) else local.get("team")
            if isinstance(candidate, (Agent, Team)):
                component = candidate
                context = local.get("run_context")
                run_context = context if isinstance(context, RunContext) else None
                break
        frame = frame.f_back
        depth += 1
    return RunOwner(component, run_context, fallback_config)
