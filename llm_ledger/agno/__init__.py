"""Agno Agents and Workflows on the audited chain: ``AuditedModel``, an Agno ``Model`` whose every round
trip is one execution of ``LLMExecutor``, and the tool hooks that record the tools an Agent runs.
See docs/ARCHITECTURE.md."""

from llm_ledger.environment import AGNO_TELEMETRY

# Nothing phones home: Agno reads the variable when an Agent or Team is built and when a Workflow runs, and
# an application imports this package before it builds an Agent on AuditedModel (the executor's clients
# set it too, but only once the first one is made, which is after the Agent).
AGNO_TELEMETRY.setdefault("false")

from llm_ledger.agno.model import AuditedModel  # noqa: E402 - after the variable, as Agno may read it on import

__all__ = ["AuditedModel"]
