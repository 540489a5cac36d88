"""One span per Focal turn: ``turn_span`` makes the executions of every step of a turn one trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import Token
from dataclasses import replace

from llm_ledger.executor.context import (
    DEFAULT_TENANT,
    ExecutionContext,
    clear_execution_context,
    get_execution_context,
    set_execution_context,
)
from llm_ledger.executor.errors import CANCELLED, ProviderError
from llm_ledger.executor.tracing import ExecutionTracer, NoTracer, TurnTrace, TurnTracer, get_default_tracer

DEFAULT_TURN_NAME = "turn"
_CANCELLED_MESSAGE = "cancelled by the caller"


@contextmanager
def turn_span(
    turn_id: str | None = None, *, name: str = DEFAULT_TURN_NAME, tracer: ExecutionTracer | None = None
) -> Iterator[ExecutionContext]:
    """Run a turn under one span (``invoke_workflow {name}``), the parent of every execution, agent run and
    tool execution started in it, so that the whole turn is one trace.

    The turn is the current execution context's (``turn_id`` given: that context with this turn id, set
    for the block; without a current context that is an error, as a turn id alone would leave the tenant
    unknown). ``tracer`` is the one the executors use, when they were given their own; one without a
    ``turn`` makes no span for the turn. An error leaving the block marks the span failed and is raised
    on: a ``ProviderError`` with its type and its message (scrubbed of secrets), a cancellation as
    ``cancelled`` (as a cancelled execution is), anything else with its class name only (its text may
    hold anything). A generator holding the block that is closed early (``GeneratorExit``) ends the turn
    as a success: its consumer stopped, nothing failed."""
    if turn_id is not None and (not isinstance(turn_id, str) or not turn_id):
        raise ValueError(f"turn_span's turn_id must be a non-empty string, not {turn_id!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"turn_span's name must be a non-empty string, not {name!r}")
    current = get_execution_context()
    token: Token[ExecutionContext | None] | None = None
    if turn_id is None:
        context = current or ExecutionContext(DEFAULT_TENANT)  # the executions' too, which warn it is missing
    elif current is None:
        raise ValueError(
            f"turn_span({turn_id!r}) needs an execution context to set its turn id in (the tenant, at least): "
            "open it inside execution_context(tenant_id=...)"
        )
    else:
        context = replace(current, turn_id=turn_id)
        token = set_execution_context(context)
    try:
        trace = _turn(tracer or get_default_tracer(), name, context)
        try:
            yield context
        except GeneratorExit:
            trace.succeeded()
            raise
        except asyncio.CancelledError:
            trace.failed(CANCELLED, _CANCELLED_MESSAGE)
            raise
        except ProviderError as error:
            trace.failed(error.error_type, error.message)
            raise
        except BaseException as error:
            trace.failed(type(error).__qualname__, type(error).__qualname__)
            raise
        trace.succeeded()
    finally:
        if token is not None:
            _restore(token)


def _turn(tracer: ExecutionTracer, name: str, context: ExecutionContext) -> TurnTrace:
    """The tracer's span of the turn; none from a tracer without ``turn`` (one of the application's, written
    before turns had spans)."""
    return tracer.turn(name, context) if isinstance(tracer, TurnTracer) else NoTracer().turn()


def _restore(token: Token[ExecutionContext | None]) -> None:
    """The context as it was before the block; nothing when the block ends in another ``contextvars``
    context than it began in (an async generator holding it, closed by asyncio's finalizer in a task of its
    own): that context is not the one the turn changed, and raising out of the generator's close would only
    add an error to a normal end."""
    with suppress(ValueError):
        clear_execution_context(token)
