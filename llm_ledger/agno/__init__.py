"""Agno Agents and Workflows on the audited chain: ``AuditedModel``, an Agno ``Model`` whose every round
trip is one execution of ``LLMExecutor``, and the tool hooks that record the tools an Agent runs.
See docs/ARCHITECTURE.md."""

from llm_ledger.agno.model import AuditedModel
from llm_ledger.environment import AGNO_TELEMETRY as _AGNO_TELEMETRY

# Nothing phones home: Agno reads the variable when an Agent's or Team's run starts, a Workflow's too, and
# before it sends anything. The executor's provider clients set it as well, but a run on mock models
# makes none, so an application that puts its Agents on AuditedModel has it set by this import.
_AGNO_TELEMETRY.setdefault("false")

__all__ = ["AuditedModel"]
