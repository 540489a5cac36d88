"""``LLMExecutor``: the one interface through which Focal's pipeline steps call an LLM."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from llm_ledger.events import (
    DEFAULT_CAPTURE,
    CapturePolicy,
    DigestSecret,
    Operation,
    Scrubber,
    parse_capture_policy,
)
from llm_ledger.executor import admission
from llm_ledger.executor.client import Completion, ModelClient
from llm_ledger.executor.clock import Clock, checked_clock, system_clock
from llm_ledger.executor.config import PipelineConfig, StepConfig
from llm_ledger.executor.context import DEFAULT_TENANT, ExecutionContext, get_execution_context
from llm_ledger.executor.digest_secret import default_digest_secret
from llm_ledger.executor.errors import ConfigurationError
from llm_ledger.executor.execution import Execution
from llm_ledger.executor.mock import MockModelClient
from llm_ledger.executor.plan import ExecutionPlan
from llm_ledger.executor.policy import RetryPolicy
from llm_ledger.executor.routing import ModelRoute, ProviderSettings, parse_model_string, resolve_settings
from llm_ledger.executor.sink import EventSink, get_default_sink
from llm_ledger.executor.stream import LLMStream
from llm_ledger.executor.structured import parse_structured, schema_instruction
from llm_ledger.executor.tools import ToolSpec
from llm_ledger.executor.tracing import ExecutionTracer, get_default_tracer
from llm_ledger.executor.types import LLMMessage, LLMResponse

log = logging.getLogger("llm_ledger.executor")

S = TypeVar("S", bound=BaseModel)

ClientFactory = Callable[[ModelRoute, Mapping[str, ProviderSettings] | None], ModelClient]


def default_client_factory(route: ModelRoute, providers: Mapping[str, ProviderSettings] | None) -> ModelClient:
    """``mock/`` models run in process; every other provider goes through its Agno model class."""
    if route.provider.name == "mock":
        return MockModelClient.for_route(route)
    from llm_ledger.executor.agno_client import AgnoModelClient

    return AgnoModelClient(route, resolve_settings(route.provider, providers))


class LLMExecutor:
    """Routes, retries and falls back across a chain of models, recording every attempt as events.

    Build it with a model and fallbacks, or from pipeline configuration (``config=`` and
    ``step_name=``), in which case the chain is resolved per call from the execution context:
    tenant+agent override, then agent, then step. ``clock`` stamps its events' ``occurred_at`` (and
    those of the tool executions they ask for): the system's, unless a simulation gives its own, which must
    return aware datetimes (``executor.clock``: it moves nothing else, not spans, latencies, stream ids
    nor the store's ``recorded_at``). ``digest_secret``: what each tenant's digest key is derived from
    (``events.digests``); the process's (``LLM_LEDGER_DIGEST_KEY``, else ``$LLM_LEDGER_HOME/digest.key``,
    ``executor.digest_secret``) unless given, resolved when it is built (unless its capture is ``none``):
    a PostgreSQL ledger without ``LLM_LEDGER_DIGEST_KEY`` fails here.
    """

    def __init__(
        self,
        model: str | None = None,
        fallback_models: Sequence[str] | None = None,
        *,
        step_name: str | None = None,
        max_retries: int = 2,
        timeout_seconds: float = 60.0,
        attempt_timeout_seconds: float | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        config: PipelineConfig | str | Path | None = None,
        sink: EventSink | None = None,
        capture: CapturePolicy | str | None = None,
        retry_policy: RetryPolicy | None = None,
        providers: Mapping[str, ProviderSettings] | None = None,
        client_factory: ClientFactory | None = None,
        tracer: ExecutionTracer | None = None,
        clock: Clock = system_clock,
        digest_secret: DigestSecret | None = None,
    ) -> None:
        admission.check_retries(max_retries)
        if not (math.isfinite(timeout_seconds) and timeout_seconds > 0):
            raise ConfigurationError(f"timeout_seconds must be a finite number above 0, got {timeout_seconds}")
        if attempt_timeout_seconds is not None and not (
            math.isfinite(attempt_timeout_seconds) and attempt_timeout_seconds > 0
        ):
            raise ConfigurationError(
                f"attempt_timeout_seconds must be a finite number above 0, got {attempt_timeout_seconds}"
            )
        if isinstance(config, (str, Path)):
            config = PipelineConfig.load(config)
        self._config = config
        if config is not None:
            if step_name is None:
                raise ConfigurationError("an executor built from pipeline configuration needs step_name=")
            if model is not None or fallback_models:
                raise ConfigurationError("pass either model/fallback_models or config=, not both")
            config.resolve(step_name)  # fails now, not at the first call, if the step is missing
            self._static_chain: tuple[str, ...] | None = None
        else:
            if model is None:
                raise ConfigurationError("LLMExecutor needs a model string (or config= and step_name=)")
            self._static_chain = (model, *(fallback_models or ()))
            for item in self._static_chain:
                parse_model_string(item)
            admission.check_chain(self._static_chain)
        self.step_name = step_name
        self.max_retries = max_retries
        self.timeout_seconds = float(timeout_seconds)
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._sink = sink
        self.capture: CapturePolicy = parse_capture_policy(capture) if capture else DEFAULT_CAPTURE
        self.retry_policy = retry_policy or RetryPolicy()
        self._providers = dict(providers) if providers else None
        self._client_factory = client_factory or default_client_factory
        self._tracer = tracer
        self._clock = checked_clock(clock)
        # Resolved now, not at the first call: a missing or refused secret fails the build, and no call
        # reads or makes a file on the event loop. Capture `none` digests nothing (configured steps may).
        if digest_secret is None and (self.capture != "none" or config is not None):
            digest_secret = default_digest_secret.get()
        self._digest_secret = digest_secret
        self._clients: dict[str, ModelClient] = {}
        self._chains: dict[tuple[str, ...], tuple[tuple[ModelClient, ...], Scrubber]] = {}
        self._clients_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: PipelineConfig | str | Path, step_name: str, **options: Any) -> LLMExecutor:
        """An executor for one pipeline step of a configuration file."""
        return cls(config=config, step_name=step_name, **options)

    @property
    def model(self) -> str:
        """The primary model (for a configured executor: the step's, before any override)."""
        return self._static_chain[0] if self._static_chain else self._step_config(None).model

    @property
    def fallback_models(self) -> tuple[str, ...]:
        return self._static_chain[1:] if self._static_chain else self._step_config(None).fallback_models

    @property
    def sink(self) -> EventSink:
        return self._sink if self._sink is not None else get_default_sink()

    @property
    def digest_secret(self) -> DigestSecret:
        """What its tenants' digest keys are derived from (the process's, loaded when first asked for)."""
        return self._digest_secret if self._digest_secret is not None else default_digest_secret.get()

    # --- public calls ---------------------------------------------------------------------------

    async def generate(
        self,
        messages: Sequence[LLMMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: str | None = None,
    ) -> LLMResponse:
        """One completion, routed through the chain with retries and fallbacks.

        With ``tools``, the model may answer with calls to them (``LLMResponse.tool_calls``, checked
        against each tool's schema: a call that does not validate is a failed attempt, ``invalid_output``);
        ``tool_choice`` is ``auto``, ``none``, ``required`` or an offered tool's name (None: the provider's
        default). Send the results back as ``tool`` messages after the assistant message that carries
        the calls."""
        plan = self._plan(
            "generate", messages, max_tokens, temperature, stop_sequences, tools=tools, tool_choice=tool_choice
        )
        # Execution(plan), not Execution[str](plan): calling a subscripted generic costs 24% of the
        # executor's own time (typing's alias __call__).
        _, response = await Execution(plan).run(lambda completion, _client: completion.text)
        return response

    async def generate_structured(
        self,
        prompt: str | Sequence[LLMMessage],
        schema: type[S],
        *,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> tuple[S, LLMResponse]:
        """A completion parsed into ``schema``; an answer that does not validate is a failed attempt."""
        json_schema = schema.model_json_schema()
        instruction = schema_instruction(json_schema)
        base = [LLMMessage(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
        system_parts = [m.content for m in base if m.role == "system"]
        if system_prompt:
            system_parts.insert(0, system_prompt)
        system = LLMMessage(role="system", content="\n\n".join([*system_parts, instruction]))
        messages = [system, *(m for m in base if m.role != "system")]

        def parse(completion: Completion, client: ModelClient) -> S:
            route = client.route
            return parse_structured(completion.text, schema, model=route.model, provider=route.provider.name)

        plan = self._plan("generate_structured", messages, max_tokens, temperature, None, json_schema, schema.__name__)
        return await Execution(plan).run(parse)

    def generate_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: str | None = None,
    ) -> LLMStream:
        """Text chunks as they arrive. Falls back only before the first chunk; no chunk comes twice.

        The context is taken when this is called. Closing the generator early (``aclose()``, or
        leaving an ``async for``) records the execution as cancelled. Once it has ended, the stream's
        ``response`` holds the whole response, and ``tool_calls`` the calls the model asked for (with
        ``tools``, as ``generate``; an invalid call fails the attempt, and falls back only if no text
        reached the caller).
        """
        plan = self._plan(
            "generate_stream", messages, max_tokens, temperature, stop_sequences, tools=tools, tool_choice=tool_choice
        )
        return Execution(plan).stream()

    # --- planning -------------------------------------------------------------------------------

    def _step_config(self, context: ExecutionContext | None) -> StepConfig:
        assert self._config is not None and self.step_name is not None
        return self._config.resolve(
            self.step_name,
            tenant_id=context.tenant_id if context else None,
            agent_id=context.agent_id if context else None,
        )

    def _client(self, model: str) -> ModelClient:
        client = self._clients.get(model)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(model)
                if client is None:
                    client = self._client_factory(parse_model_string(model), self._providers)
                    self._clients[model] = client
        return client

    def _clients_for(self, chain: tuple[str, ...]) -> tuple[tuple[ModelClient, ...], Scrubber]:
        """The clients of a chain, and a scrubber that knows their credentials (cached per chain)."""
        cached = self._chains.get(chain)
        if cached is None:
            admission.check_chain(chain)  # once per chain, like the clients
            clients = tuple(self._client(model) for model in chain)
            cached = (clients, Scrubber(secret for client in clients for secret in client.secrets))
            self._chains[chain] = cached
        return cached

    def _plan(
        self,
        operation: Operation,
        messages: Sequence[LLMMessage],
        max_tokens: int | None,
        temperature: float | None,
        stop_sequences: Sequence[str] | None,
        json_schema: dict[str, Any] | None = None,
        schema_name: str | None = None,
        *,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: str | None = None,
    ) -> ExecutionPlan:
        context = _current_context().with_step(self.step_name)
        admission.check_context(context)
        step = self._step_config(context) if self._config is not None else None
        chain = step.chain if step is not None else self._static_chain
        assert chain is not None
        clients, scrubber = self._clients_for(chain)
        timeout = (step.timeout_seconds if step and step.timeout_seconds else None) or self.timeout_seconds
        attempt_timeout = (step.attempt_timeout_seconds if step else None) or self.attempt_timeout_seconds or timeout
        admission.check_durations(timeout_seconds=timeout, attempt_timeout_seconds=attempt_timeout)
        max_retries = _first(step.max_retries if step else None, self.max_retries) or 0
        admission.check_retries(max_retries)
        params = admission.parameters(
            temperature=_first(temperature, step.temperature if step else None, self.temperature),
            max_tokens=_first(max_tokens, step.max_tokens if step else None, self.max_tokens),
            stop_sequences=stop_sequences,
        )
        if schema_name is not None:
            admission.check_identifier("schema name", schema_name)
        specs, offered = admission.check_tools(tools, tool_choice) if tools or tool_choice is not None else ((), ())
        capture = (step.capture if step and step.capture else None) or self.capture
        digest_key = None if capture == "none" else self.digest_secret.tenant_key(context.tenant_id)
        return ExecutionPlan(
            operation=operation,
            context=context,
            chain=chain,
            clients=clients,
            messages=tuple(messages),
            params=params,
            json_schema=json_schema,
            schema_name=schema_name,
            max_retries=max_retries,
            timeout_seconds=timeout,
            attempt_timeout_seconds=min(attempt_timeout, timeout),
            capture=capture,
            policy=self.retry_policy,
            sink=self.sink,
            scrubber=scrubber,
            tracer=self._tracer or get_default_tracer(),
            input_record=admission.check_messages(messages, capture, scrubber, digest_key),
            digest_key=digest_key,
            digest_secret=self._digest_secret,
            tools=specs,
            offered_tools=offered,
            tool_choice=tool_choice,
            clock=self._clock,
        )


_T = TypeVar("_T")


def _first(*values: _T | None) -> _T | None:
    return next((v for v in values if v is not None), None)


_warned_no_context = False


def _current_context() -> ExecutionContext:
    global _warned_no_context
    context = get_execution_context()
    if context is not None:
        return context
    if not _warned_no_context:
        _warned_no_context = True
        log.warning(
            "llm-ledger: an LLM call ran without an execution context; its events are recorded under "
            "tenant %r. Wrap calls in llm_ledger.execution_context(tenant_id=..., ...).",
            DEFAULT_TENANT,
        )
    return ExecutionContext(tenant_id=DEFAULT_TENANT)
