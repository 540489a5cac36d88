"""One span per Focal turn: ``turn_span`` makes the executions of every step of a turn one trace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace

from llm_ledger.executor.context import DEFAULT_TENANT, ExecutionContext, execution_context, get_execution_context
from llm_ledger.executor.errors import ProviderError
from llm_ledger.executor.tracing import ExecutionTracer, get_default_tracer

DEFAULT_TURN_NAME = "turn"


@contextmanager
def turn_span(
    turn_id: str | None = None, *, name: str = DEFAULT_TURN_NAME, tracer: ExecutionTracer | None = None
) -> Iterator[ExecutionContext]:
    """Run a turn under one span (``invoke_workflow {name}``), the parent of every execution, agent run and
    tool execution started in it, so that the whole turn is one trace.

    The turn is the current execution context's (``turn_id`` given: that context with this turn id, set
    for the block). ``tracer`` is the one the executors use, when they were given their own. An error
    leaving the block marks the span failed and is raised on: a ``ProviderError`` with its type and its
    message (scrubbed of secrets), anything else with its class name only (its text may hold anything)."""
    if turn_id is not None and (not isinstance(turn_id, str) or not turn_id):
        raise ValueError(f"turn_span's turn_id must be a non-empty string, not {turn_id!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"turn_span's name must be a non-empty string, not {name!r}")
    context, scope = _turn_context(turn_id)
    with scope:
        trace = (tracer or get_default_tracer()).turn(name, context)
        try:
            yield context
        except ProviderError as error:
            trace.failed(error.error_type, error.message)
            raise
        except BaseException as error:
            trace.failed(type(error).__qualname__, type(error).__qualname__)
            raise
        trace.succeeded()


def _turn_context(turn_id: str | None) -> tuple[ExecutionContext, AbstractContextManager[ExecutionContext]]:
    """The turn's context, and what sets it for the block: the current one as it is (without one, the
    executions still warn that it is missing), or that one with ``turn_id``."""
    current = get_execution_context()
    if turn_id is None:
        context = current or ExecutionContext(DEFAULT_TENANT)
        return context, nullcontext(context)
    context = replace(current, turn_id=turn_id) if current else ExecutionContext(DEFAULT_TENANT, turn_id=turn_id)
    return context, execution_context(context)
