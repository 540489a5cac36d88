"""One Agent run on an ``AuditedModel``: who it runs for (its ``ExecutionContext``), its
``invoke_agent`` span, and the calls its executions asked for (tool call id -> ``ToolCall``, whose
``execution_id`` links a tool's execution to the round trip that asked for it).

The scope lives in a ``ContextVar`` for the duration of ``Model.aresponse`` (of each step of a streamed
loop, never across a ``yield``: a generator runs in its consumer's context): an Agno model is shared by
every concurrent run of its agent, so nothing of a run can live on the model itself. Agno runs the tools
of a round trip in tasks (``asyncio.gather``) or threads (``asyncio.to_thread``) made inside that call,
and both copy the context, so the tool hooks see their run's scope."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agno.run.base import RunContext

from llm_ledger.executor import ConfigurationError, ExecutionContext, get_execution_context
from llm_ledger.executor.context import DEFAULT_TENANT
from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.tracing import RunTrace, SpanRef

log = logging.getLogger("llm_ledger.agno")

CONTEXT_KEYS = ("tenant_id", "agent_id", "session_id", "turn_id")
"""The keys of a run's ``session_state`` (or ``metadata``) that make its context."""


@dataclass(slots=True)
class RunScope:
    context: ExecutionContext
    trace: RunTrace
    asynchronous: bool
    """Whether Agno runs this loop with ``aresponse`` (async tool hooks where Agno awaits them)."""
    tool_calls: dict[str, ToolCall] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def span(self) -> SpanRef | None:
        trace_id, span_id = self.trace.trace_id, self.trace.span_id
        return SpanRef(trace_id, span_id) if trace_id and span_id else None

    def remember(self, calls: tuple[ToolCall, ...]) -> None:
        with self._lock:
            for call in calls:
                self.tool_calls[call.id] = call

    def call(self, call_id: str | None) -> ToolCall | None:
        with self._lock:
            return self.tool_calls.get(call_id) if call_id else None

    def known_calls(self) -> dict[str, ToolCall]:
        with self._lock:
            return dict(self.tool_calls)


current_scope: ContextVar[RunScope | None] = ContextVar("llm_ledger_agno_run", default=None)

_warned_default_tenant = False


def run_context_of(run_context: RunContext | None, run_response: Any) -> ExecutionContext:
    """The context of a run's executions and tool executions.

    The current ``execution_context`` when one is set (the caller said who the run is for). Else the
    run's own values: ``tenant_id``, ``agent_id``, ``session_id``, ``turn_id`` from its
    ``session_state`` (the live one of its ``RunContext``, else the ``RunOutput``'s), then from its
    ``metadata``; for what they leave out, Agno's own ``user_id`` as the tenant, Agno's ``session_id``,
    and the Agno agent's id as ``agent_id`` (``Agent(id=...)``, or Agno's id derived from its name; a
    Team's id for the Team's own round trips). A
    run with no tenant anywhere is recorded under the executor's default tenant, with one warning."""
    explicit = get_execution_context()
    if explicit is not None:
        return explicit
    sources = [
        getattr(run_context, "session_state", None),
        getattr(run_response, "session_state", None),
        getattr(run_context, "metadata", None),
        getattr(run_response, "metadata", None),
    ]
    values: dict[str, str] = {}
    for key in CONTEXT_KEYS:
        for source in sources:
            if not isinstance(source, dict) or source.get(key) is None:
                continue
            value = source[key]
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"the run's session_state/metadata {key!r} must be a non-empty string, got {value!r}"
                )
            values[key] = value
            break
    tenant = values.get("tenant_id") or _first_str(run_context, run_response, "user_id")
    if tenant is None:
        tenant = DEFAULT_TENANT
        _warn_default_tenant()
    return ExecutionContext(
        tenant_id=tenant,
        # A Team's own round trips: the Team is their agent (its run output names it team_id).
        agent_id=values.get("agent_id")
        or _first_str(run_response, None, "agent_id")
        or _first_str(run_response, None, "team_id"),
        session_id=values.get("session_id") or _first_str(run_context, run_response, "session_id"),
        turn_id=values.get("turn_id"),
    )


def _first_str(first: Any, second: Any, name: str) -> str | None:
    for source in (first, second):
        value = getattr(source, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def _warn_default_tenant() -> None:
    global _warned_default_tenant
    if not _warned_default_tenant:
        _warned_default_tenant = True
        log.warning(
            "llm-ledger: an Agno run on an AuditedModel has no tenant (no execution_context, no tenant_id "
            "in its session_state or metadata, no user_id); its events are recorded under tenant %r",
            DEFAULT_TENANT,
        )
