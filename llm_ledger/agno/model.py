"""``AuditedModel``: an Agno ``Model`` whose every round trip is one audited execution of the chain.

Agno's tool loop (``Model.aresponse``/``aresponse_stream``, and the sync forms) runs unchanged: it calls
``ainvoke``/``ainvoke_stream`` once per round trip, which here is one ``LLMExecutor.generate``/
``generate_stream`` with the run's tools (the executor's clients call the providers' own ``ainvoke``,
never their ``aresponse``, so each tool runs once, in this loop). Around the loop, the run's scope is
opened (``run_scope``: its context, its ``invoke_agent`` span as ``tracing.current_run``, the calls its
executions asked for), the retry and fallback layers Agno would add are refused (``refusals``), and each
tool Agno runs is recorded through a per-call tool hook (``tool_hooks``)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, aclosing, closing, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from inspect import CO_ASYNC_GENERATOR, CO_COROUTINE
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID

from agno.models.base import Model
from agno.models.message import Message
from agno.models.response import ModelResponse
from agno.tools.function import Function, FunctionCall

from llm_ledger.agno import conversion
from llm_ledger.agno.refusals import check_no_second_layer
from llm_ledger.agno.run_owner import find_run_owner
from llm_ledger.agno.run_scope import RunScope, current_scope, run_context_of
from llm_ledger.agno.sync_bridge import SyncBridge
from llm_ledger.agno.tool_hooks import with_recording_hook
from llm_ledger.executor import ConfigurationError, ExecutionContext, LLMExecutor, PipelineConfig, execution_context
from llm_ledger.executor.tools import ToolCall
from llm_ledger.executor.tracing import ExecutionTracer, NoTracer, current_run, get_default_tracer

PROVIDER = "llm-ledger"

log = logging.getLogger("llm_ledger.agno")


@dataclass(init=False)
class AuditedModel(Model):
    """An Agno model backed by one ``LLMExecutor``: ``Agent(model=AuditedModel("openrouter/...",
    fallback_models=["anthropic/..."], step_name="generation"))``.

    ``model`` is the primary model string, or the whole chain as a list; the other keyword arguments
    are the executor's (``max_retries``, ``timeout_seconds``, ``sink``, ``capture``, ``tracer``, ...).
    ``AuditedModel.from_config(path, step_name=...)`` resolves the chain per tenant and agent at each
    call, as the executor does. Copies of the model (Agno copies agents and their models) share the
    executor, its clients and the private loop of the sync forms."""

    def __init__(
        self,
        model: str | Sequence[str],
        fallback_models: Sequence[str] | None = None,
        *,
        step_name: str | None = None,
        **executor_options: Any,
    ) -> None:
        if isinstance(model, str):
            primary, fallbacks = model, list(fallback_models or ())
        else:
            chain = list(model)
            if not chain or not all(isinstance(item, str) for item in chain):
                raise ConfigurationError("AuditedModel needs a model string or a non-empty list of model strings")
            if fallback_models:
                raise ConfigurationError("pass the chain either as a list or as model and fallback_models, not both")
            primary, fallbacks = chain[0], chain[1:]

        _refuse_agno_retries(executor_options)
        executor = LLMExecutor(primary, fallbacks, step_name=step_name, **executor_options)
        self._set_up(executor, executor_options.get("tracer"))

    @classmethod
    def from_config(cls, config: PipelineConfig | str | Path, step_name: str, **executor_options: Any) -> AuditedModel:
        """A model for one pipeline step of a configuration file (the chain chosen per call)."""
        _refuse_agno_retries(executor_options)
        model = cls.__new__(cls)
        model._set_up(LLMExecutor.from_config(config, step_name, **executor_options), executor_options.get("tracer"))
        return model

    def _set_up(self, executor: LLMExecutor, tracer: ExecutionTracer | None) -> None:
        Model.__init__(self, id=executor.model, name="AuditedModel", provider=PROVIDER)
        self.executor: LLMExecutor = executor
        """The executor of every round trip, async or sync: its clients keep an SDK client per event
        loop, so the private loop of the sync forms (``SyncBridge``) gets clients of its own."""
        self._tracer = tracer
        self._bridge = SyncBridge()

    def __deepcopy__(self, memo: dict[int, Any]) -> AuditedModel:
        # Agno deep-copies models with its agents; the executor (its clients, their connections) and the
        # sync loop are shared, never rebuilt. Everything else is Model's own per-copy state.
        memo[id(self.executor)] = self.executor
        memo[id(self._bridge)] = self._bridge
        if self._tracer is not None:
            memo[id(self._tracer)] = self._tracer
        copied: AuditedModel = super().__deepcopy__(memo)  # type: ignore[no-untyped-call]
        return copied

    @property
    def tracer(self) -> ExecutionTracer:
        return self._tracer or get_default_tracer()

    # --- the run: Agno's tool loop, wrapped -------------------------------------------------------

    def _open_scope(self, frame: FrameType | None, tools: Any, run_response: Any, asynchronous: bool) -> RunScope:
        owner = find_run_owner(frame)
        if owner.component is None and run_response is not None:
            _warn_unseen_owner()
        check_no_second_layer(self.retries, owner)
        run_context = owner.run_context or _run_context_of_tools(tools)
        context = run_context_of(run_context, run_response)
        agent_name = getattr(run_response, "agent_name", None) or getattr(owner.component, "name", None)
        agent_id = getattr(run_response, "agent_id", None) or getattr(owner.component, "id", None)
        trace = self.tracer.agent_run(agent_name, agent_id, context)
        return RunScope(context=context, trace=trace, asynchronous=asynchronous)

    @contextmanager
    def _run(self, frame: FrameType | None, tools: Any, run_response: Any, asynchronous: bool) -> Iterator[RunScope]:
        """A non-streamed loop: its scope current from start to end."""
        with self._run_stream(frame, tools, run_response, asynchronous) as scope, _current(scope):
            yield scope

    @contextmanager
    def _run_stream(
        self, frame: FrameType | None, tools: Any, run_response: Any, asynchronous: bool
    ) -> Iterator[RunScope]:
        """The run's scope and trace around a streamed loop, whose caller makes the scope current only
        while the loop runs (``_current`` around each step), never between two events. A generator's
        body runs in its consumer's context, so a scope set across a ``yield`` would be the consumer's
        too: another run read in the same task (two streams merged by hand) would take it for its own,
        tenant included."""
        scope = self._open_scope(frame, tools, run_response, asynchronous)
        try:
            yield scope
        except (GeneratorExit, asyncio.CancelledError):
            scope.trace.failed("cancelled", "the run was cancelled or its stream closed early")
            raise
        except BaseException as error:
            scope.trace.failed(str(getattr(error, "error_type", type(error).__name__)), str(error))
            raise
        else:
            scope.trace.succeeded()

    async def aresponse(
        self,
        messages: list[Message],
        response_format: Any = None,
        tools: list[Function | dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_call_limit: int | None = None,
        run_response: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        with self._run(sys._getframe(1), tools, run_response, asynchronous=True):
            response: ModelResponse = await super().aresponse(
                messages, response_format, tools, tool_choice, tool_call_limit, run_response, *args, **kwargs
            )
            return response

    async def aresponse_stream(
        self,
        messages: list[Message],
        response_format: Any = None,
        tools: list[Function | dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_call_limit: int | None = None,
        stream_model_response: bool = True,
        run_response: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        with self._run_stream(sys._getframe(1), tools, run_response, asynchronous=True) as scope:
            stream: Any = super().aresponse_stream(
                messages,
                response_format,
                tools,
                tool_choice,
                tool_call_limit,
                stream_model_response,
                run_response,
                *args,
                **kwargs,
            )
            async with aclosing(stream):
                while True:
                    with _current(scope):
                        try:
                            event = await stream.__anext__()
                        except StopAsyncIteration:
                            break
                    yield event

    def response(
        self,
        messages: list[Message],
        response_format: Any = None,
        tools: list[Function | dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_call_limit: int | None = None,
        run_response: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        with self._run(sys._getframe(1), tools, run_response, asynchronous=False):
            response: ModelResponse = super().response(
                messages, response_format, tools, tool_choice, tool_call_limit, run_response, *args, **kwargs
            )
            return response

    def response_stream(
        self,
        messages: list[Message],
        response_format: Any = None,
        tools: list[Function | dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_call_limit: int | None = None,
        stream_model_response: bool = True,
        run_response: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Iterator[Any]:
        with self._run_stream(sys._getframe(1), tools, run_response, asynchronous=False) as scope:
            stream: Generator[Any, None, None] = super().response_stream(  # type: ignore[assignment]
                messages,
                response_format,
                tools,
                tool_choice,
                tool_call_limit,
                stream_model_response,
                run_response,
                *args,
                **kwargs,
            )
            with closing(stream):
                while True:
                    with _current(scope):
                        try:
                            event = next(stream)
                        except StopIteration:
                            break
                    yield event

    def get_function_calls_to_run(
        self,
        assistant_message: Message,
        messages: list[Message],
        functions: dict[str, Function] | None = None,
    ) -> list[FunctionCall]:
        """Agno's calls for this round trip, each with its recording hook (see ``tool_hooks``)."""
        calls: list[FunctionCall] = super().get_function_calls_to_run(assistant_message, messages, functions)
        scope = current_scope.get()
        if scope is not None:
            sink, tracer = self.executor.sink, self.tracer
            for call in calls:
                with_recording_hook(call, scope, step=self.executor.step_name, sink=sink, tracer=tracer)
        return calls

    def get_function_call_to_run_from_tool_execution(
        self, tool_execution: Any, functions: dict[str, Function] | None = None
    ) -> FunctionCall:
        """A paused call Agno runs on ``continue_run`` (after a confirmation, say), with its recording
        hook: Agno runs it outside the model loop, so the scope is made here, from the run's frames."""
        call: FunctionCall = super().get_function_call_to_run_from_tool_execution(tool_execution, functions)
        scope = current_scope.get() or _resumed_scope(sys._getframe(1), functions, tool_execution)
        with_recording_hook(call, scope, step=self.executor.step_name, sink=self.executor.sink, tracer=self.tracer)
        return call

    # --- one round trip ----------------------------------------------------------------------------

    async def ainvoke(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
        **kwargs: Any,
    ) -> ModelResponse:
        scope = current_scope.get()
        request = self._request(messages, response_format, tools, tool_choice, compress_tool_results, scope)
        metrics: Any = assistant_message.metrics  # Agno's MessageMetrics is untyped
        if metrics is not None:
            metrics.start_timer()
        try:
            with self._context(scope):
                response = await self.executor.generate(request.messages, **request.tool_arguments)
        finally:
            if metrics is not None:
                metrics.stop_timer()
        if scope is not None:
            scope.remember(response.tool_calls)
        return conversion.model_response(response)

    async def ainvoke_stream(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[ModelResponse]:
        scope = current_scope.get()
        request = self._request(messages, response_format, tools, tool_choice, compress_tool_results, scope)
        metrics: Any = assistant_message.metrics  # Agno's MessageMetrics is untyped
        if metrics is not None:
            metrics.start_timer()
        try:
            with self._context(scope):  # the stream takes its context when it is made
                stream = self.executor.generate_stream(request.messages, **request.tool_arguments)
            async with aclosing(stream):
                async for text in stream:
                    yield ModelResponse(role="assistant", content=text)
            response = stream.response
            if response is None:  # the stream ended without an answer (it raised, so never here)
                return
            if scope is not None:
                scope.remember(response.tool_calls)
            # Tool calls come whole, once, at the end: Agno's default parse_tool_calls keeps them as is.
            yield ModelResponse(
                role="assistant",
                tool_calls=conversion.agno_tool_calls(response.tool_calls),
                response_usage=conversion.usage_metrics(response.usage, response.model),
                provider_data=conversion.provider_data(response),
            )
        finally:
            if metrics is not None:
                metrics.stop_timer()

    def invoke(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response: ModelResponse = self._bridge.run(self.ainvoke(*args, **kwargs))
        return response

    def invoke_stream(self, *args: Any, **kwargs: Any) -> Iterator[ModelResponse]:
        yield from self._bridge.iterate(self.ainvoke_stream(*args, **kwargs))

    def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        raise NotImplementedError("AuditedModel parses nothing: the executor's clients return parsed answers")

    def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
        raise NotImplementedError("AuditedModel parses nothing: the executor's clients return parsed answers")

    def _request(
        self,
        messages: list[Message],
        response_format: Any,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
        compress_tool_results: bool,
        scope: RunScope | None,
    ) -> conversion.Request:
        if response_format is not None and response_format != {"type": "json_object"}:
            raise ConfigurationError(
                "AuditedModel does not take a native response_format (structured output); let Agno ask for "
                "JSON in the prompt (the default for models without native structured outputs)"
            )
        specs = conversion.tool_specs(tools)
        return conversion.Request(
            messages=conversion.llm_messages(
                messages,
                compressed=compress_tool_results,
                known_calls=scope.known_calls() if scope is not None else None,
            ),
            tools=specs or None,
            choice=conversion.tool_choice_name(tool_choice) if specs else None,
        )

    @staticmethod
    def _context(scope: RunScope | None) -> AbstractContextManager[ExecutionContext | None]:
        if scope is None:
            return nullcontext()
        return execution_context(scope.context)


def _refuse_agno_retries(executor_options: dict[str, Any]) -> None:
    """``retries=`` is Agno's ``Model`` field, not the executor's: say so rather than fail as an unknown
    argument of ``LLMExecutor`` (the same setting on the model is refused when a run starts)."""
    if "retries" in executor_options:
        raise ConfigurationError(
            f"AuditedModel(retries={executor_options['retries']!r}): Agno's own retries would repeat executions "
            "the ledger already retries; set max_retries= on the AuditedModel instead (or the step's "
            "max_retries in the pipeline configuration)"
        )


def _resumed_scope(frame: FrameType | None, functions: dict[str, Function] | None, tool_execution: Any) -> RunScope:
    """The scope of a tool Agno runs when it continues a paused run: its context as the run's, the call
    linked to the execution that asked for it (the id its assistant message keeps in provider_data),
    no run span of its own (the tool's parent is the current span). Agno awaits the tool's hook chain
    when the function running it is async (``arun_tool``)."""
    asynchronous = frame is not None and bool(frame.f_code.co_flags & (CO_COROUTINE | CO_ASYNC_GENERATOR))
    run_response = frame.f_locals.get("run_response") if frame is not None else None
    owner = find_run_owner(frame)
    context = run_context_of(owner.run_context or _run_context_of_tools((functions or {}).values()), run_response)
    scope = RunScope(context=context, trace=NoTracer().agent_run(), asynchronous=asynchronous)
    asker = _asking_execution(run_response, tool_execution.tool_call_id)
    if asker is not None and tool_execution.tool_call_id:
        arguments = dict(tool_execution.tool_args or {})
        scope.remember(
            (
                ToolCall(
                    id=tool_execution.tool_call_id,
                    name=str(tool_execution.tool_name or ""),
                    arguments=arguments,
                    arguments_json=json.dumps(arguments, default=str),
                    execution_id=asker,
                ),
            )
        )
    return scope


def _asking_execution(run_response: Any, call_id: str | None) -> UUID | None:
    for message in getattr(run_response, "messages", None) or ():
        if call_id and any(isinstance(raw, dict) and raw.get("id") == call_id for raw in message.tool_calls or ()):
            recorded = (message.provider_data or {}).get("llm_ledger") or {}
            with suppress(ValueError, TypeError):
                return UUID(str(recorded.get("execution_id")))
    return None


def _run_context_of_tools(tools: Any) -> Any:
    """The ``RunContext`` Agno gave the run's functions (``Function._run_context``), if any."""
    for tool in tools or ():
        context = getattr(tool, "_run_context", None)
        if context is not None:
            return context
    return None


_warned_unseen_owner = False


def _warn_unseen_owner() -> None:
    """An Agno run called the model, but its agent was not found on the stack (an Agno version whose
    run functions differ, a run driven by hand): its Agno-level retries and fallbacks cannot be
    checked, so say so once rather than let them run unseen."""
    global _warned_unseen_owner
    if not _warned_unseen_owner:
        _warned_unseen_owner = True
        log.warning(
            "llm-ledger: an AuditedModel was called for an Agno run whose Agent or Team is not on the call "
            "stack; its Agno retries and fallback models (which would escape the ledger) cannot be refused, "
            "and its RunContext is not read (the run's session_state still is)"
        )


@contextmanager
def _current(scope: RunScope) -> Iterator[None]:
    """``scope`` as the current run's (and its span as ``tracing.current_run``) for the block."""
    scope_token = current_scope.set(scope)
    run_token = current_run.set(scope.span)
    try:
        yield
    finally:
        _reset(current_run, run_token)
        _reset(current_scope, scope_token)


def _reset(variable: Any, token: Any) -> None:
    # An async generator closed from another context (garbage collection): that context is gone.
    with suppress(ValueError):
        variable.reset(token)


__all__ = ["AuditedModel"]
