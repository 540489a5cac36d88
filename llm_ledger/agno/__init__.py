"""Agno Agents and Workflows on the audited chain: ``AuditedModel``, an Agno ``Model`` whose every round
trip is one execution of ``LLMExecutor``, and the tool hooks that record the tools an Agent runs.
See docs/ARCHITECTURE.md."""

from llm_ledger.agno.model import AuditedModel

__all__ = ["AuditedModel"]
