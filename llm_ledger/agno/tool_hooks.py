"""The tools an Agent runs, recorded: one hook per call, first in the function's ``tool_hooks`` chain.

Agno hands a tool hook the tool's name, its arguments and the next step of the chain, not the call's
id. So the hook is made per call: ``with_recording_hook`` gives the ``FunctionCall`` its own copy of
its ``Function`` (a shallow pydantic copy: the entrypoint, the agent, the ``RunContext`` and the user's
hooks are shared) whose ``tool_hooks`` are this call's hook followed by the user's, unchanged. Being
first, the hook records the arguments the model asked for and the result the model is sent back (after
the user's hooks); a tool that raises is recorded as failed and the exception goes on to Agno, which
turns it into the tool's error message as it always does.

The hook is async only where Agno awaits the chain (an async tool, or an async hook of the user's, on
``arun``); everywhere else it is sync, so Agno keeps running sync tools in a worker thread."""

from __future__ import annotations

import json
from collections.abc import Callable
from inspect import isasyncgen, isasyncgenfunction, iscoroutinefunction, isgenerator
from typing import Any

from agno.tools.function import Function, FunctionCall, ToolResult

from llm_ledger.agno.run_scope import RunScope
from llm_ledger.executor import execution_context
from llm_ledger.executor.sink import EventSink
from llm_ledger.executor.tool_executions import record_tool_call
from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.tracing import ExecutionTracer

_UNRECORDED_STREAM = "(a streamed result: not recorded)"


def with_recording_hook(
    function_call: FunctionCall, scope: RunScope, *, step: str | None, sink: EventSink, tracer: ExecutionTracer
) -> None:
    function = function_call.function
    # The call as the model asked for it (with the execution that asked); a call this run's executions
    # did not make (one Agno resumes after a pause, say) is recorded from Agno's own record of it.
    arguments = dict(function_call.arguments or {})
    call = scope.call(function_call.call_id) or ToolCall(
        id=function_call.call_id or "",
        name=function.name,
        arguments=arguments,
        arguments_json=json.dumps(arguments, default=str),
    )
    context = scope.context.with_step(step)
    user_hooks = list(function.tool_hooks or ())
    awaited = scope.asynchronous and (
        iscoroutinefunction(function.entrypoint)
        or isasyncgenfunction(function.entrypoint)
        or any(iscoroutinefunction(hook) for hook in user_hooks)
    )

    def record_sync(function_call: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        with execution_context(context), record_tool_call(call, sink=sink, tracer=tracer) as run:
            result = function_call(**arguments)
            run.result = _result_text(result)
            return result

    async def record_async(function_call: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        with execution_context(context):
            async with record_tool_call(call, sink=sink, tracer=tracer) as run:
                result = await function_call(**arguments)
                run.result = _result_text(result)
                return result

    hook = record_async if awaited else record_sync
    copy: Function = function.model_copy()  # Agno's Function takes no update=; shallow, private attrs kept
    copy.tool_hooks = [hook, *user_hooks]
    function_call.function = copy


def _result_text(result: Any) -> Any:
    """What the ledger keeps of a result: a string as it is, Agno's ``ToolResult`` as its content, a
    generator not at all (Agno consumes it after the hook returned); anything else is kept as its JSON
    text by ``record_tool_call``."""
    if isinstance(result, str):
        return result
    if isgenerator(result) or isasyncgen(result):
        return _UNRECORDED_STREAM
    if isinstance(result, ToolResult):
        return result.content
    return result
