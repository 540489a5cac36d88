"""Who an execution runs for, carried in a ``contextvars`` variable so concurrent tasks never mix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

DEFAULT_TENANT = "default"
"""The tenant of what is recorded without any context (an execution's or a tool execution's events)."""


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """The tenant, agent, session, turn and pipeline step of the current work, and, when the application
    knows whom it is about, the subject: content captured in full is encrypted under a key of the tenant,
    subject and session, so that ``llm-ledger erase --subject`` erases every session of that person (the
    session alone is the subject otherwise). Not stored in the events: only the key table names it."""

    tenant_id: str
    agent_id: str | None = None
    session_id: str | None = None
    turn_id: str | None = None
    step: str | None = None
    subject_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not self.tenant_id:
            raise ValueError("ExecutionContext.tenant_id must be a non-empty string")
        if self.subject_id is not None and (not isinstance(self.subject_id, str) or not self.subject_id):
            raise ValueError("ExecutionContext.subject_id must be a non-empty string or None")

    def with_step(self, step: str | None) -> ExecutionContext:
        """This context for a pipeline step (the same object when it already is)."""
        if step is None or step == self.step:
            return self
        return ExecutionContext(self.tenant_id, self.agent_id, self.session_id, self.turn_id, step, self.subject_id)

    def as_metadata(self) -> dict[str, str | None]:
        return {
            "tenant_id": self.tenant_id,
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "step": self.step,
        }


_current: ContextVar[ExecutionContext | None] = ContextVar("llm_ledger_execution_context", default=None)


def set_execution_context(
    context: ExecutionContext | None = None,
    /,
    *,
    tenant_id: str | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    turn_id: str | None = None,
    step: str | None = None,
    subject_id: str | None = None,
) -> Token[ExecutionContext | None]:
    """Set the context of the current task (and of tasks it starts); returns a token for ``reset``."""
    if context is None:
        if tenant_id is None:
            raise ValueError("set_execution_context needs an ExecutionContext or a tenant_id")
        context = ExecutionContext(tenant_id, agent_id, session_id, turn_id, step, subject_id)
    elif any(v is not None for v in (tenant_id, agent_id, session_id, turn_id, step, subject_id)):
        raise ValueError("pass either an ExecutionContext or keyword fields, not both")
    return _current.set(context)


def get_execution_context() -> ExecutionContext | None:
    """The context of the current task, or None when none was set."""
    return _current.get()


def clear_execution_context(token: Token[ExecutionContext | None] | None = None) -> None:
    """Restore the context before ``token`` was set, or clear it when no token is given."""
    if token is not None:
        _current.reset(token)
    else:
        _current.set(None)


@contextmanager
def execution_context(
    context: ExecutionContext | None = None,
    /,
    *,
    tenant_id: str | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    turn_id: str | None = None,
    step: str | None = None,
    subject_id: str | None = None,
) -> Iterator[ExecutionContext]:
    """Run a block under a context, restoring the previous one afterwards (also on error)."""
    token = set_execution_context(
        context,
        tenant_id=tenant_id,
        agent_id=agent_id,
        session_id=session_id,
        turn_id=turn_id,
        step=step,
        subject_id=subject_id,
    )
    try:
        current = _current.get()
        assert current is not None
        yield current
    finally:
        _current.reset(token)
