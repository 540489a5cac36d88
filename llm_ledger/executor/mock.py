"""``mock/<name>`` models: scripted latency, failures and token counts, for demos and unit tests.

Behaviour comes from the model string's query (``mock/flaky?p50_ms=80&p99_ms=900&rate_limit=0.1&seed=7``)
or from ``register_mock(name, MockBehaviour(...))``. Failures are raised as the same taxonomy errors a
real provider's would be, so the executor's policy, events and traces behave exactly as in production.

Offered tools, a mock calls them (``tool_use``: a probability; ``tool_calls``: a script) with arguments
made from their schemas, or with arguments that are not JSON (``invalid_tool_arguments``); after a tool
result it answers text. A stream delivers the calls at its end, as the real clients do. In a query string,
``tool_calls`` is a comma-separated list of tool names (arguments from the schema) or a JSON list of
``[name, arguments]`` pairs: ``mock/x?tool_calls=lookup,search`` or ``mock/x?tool_calls=[["lookup",{"q":"a"}]]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl

from llm_ledger.events import TokenUsage
from llm_ledger.executor.client import CallParams, Completion
from llm_ledger.executor.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
    TimeoutError,
)
from llm_ledger.executor.routing import ModelRoute
from llm_ledger.executor.tools import RequestedToolCall, ToolSpec
from llm_ledger.executor.types import LLMMessage

_FAILURES: dict[str, type[ProviderError]] = {
    "rate_limit": RateLimitError,
    "server_error": ServerError,
    "timeout": TimeoutError,
    "connection": ProviderConnectionError,
    "context_length": ContextLengthError,
    "authentication": AuthenticationError,
    "content_filter": ContentFilterError,
}
_OTHER_RATES = ("invalid_output", "stream_break", "tool_use", "invalid_tool_arguments")
_Z99 = 2.3263478740408408  # the standard normal's 99th percentile
_MAX_CALLS = 2


@dataclass(frozen=True, slots=True)
class MockBehaviour:
    """How a mock model answers. Rates are per call probabilities; latency is log-normal."""

    p50_ms: float = 1.0
    p99_ms: float | None = None
    rate_limit: float = 0.0
    server_error: float = 0.0
    timeout: float = 0.0
    connection: float = 0.0
    context_length: float = 0.0
    authentication: float = 0.0
    content_filter: float = 0.0
    invalid_output: float = 0.0
    """For structured output: the probability of answering text that is not valid JSON."""
    stream_break: float = 0.0
    """For streams: the probability of failing after the first chunk."""
    retry_after: float | None = None
    input_tokens: int | None = None
    output_tokens: int = 24
    reply: str | None = None
    seed: int | None = None
    chunks: int = 4
    tool_use: float = 0.0
    """When tools are offered and the last message is no tool result: the probability of answering with
    calls instead of text (one call to each offered tool, at most 2, arguments made from their schemas)."""
    invalid_tool_arguments: float = 0.0
    """The probability that a call's arguments are not JSON (the attempt then fails as ``invalid_output``)."""
    tool_calls: tuple[tuple[str, dict[str, Any] | None], ...] = ()
    """A script: when tools are offered and the last message is no tool result, call exactly these
    (a tool's name and its arguments; None: made from the tool's schema)."""

    def __post_init__(self) -> None:
        rates = {f.name: getattr(self, f.name) for f in fields(self) if f.name in _FAILURES or f.name in _OTHER_RATES}
        for index, entry in enumerate(self.tool_calls):
            if not (
                isinstance(entry, tuple)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and (entry[1] is None or isinstance(entry[1], dict))
            ):
                raise ConfigurationError(
                    f"mock behaviour tool_calls[{index}] must be a (tool name, arguments dict or None) pair,"
                    f" not {entry!r}"
                )
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ConfigurationError(f"mock behaviour {name}={rate} must be a probability between 0 and 1")
        if sum(rates[name] for name in _FAILURES) > 1.0:
            raise ConfigurationError("mock behaviour failure rates add up to more than 1")
        if self.p50_ms < 0 or (self.p99_ms is not None and self.p99_ms < self.p50_ms):
            raise ConfigurationError("mock behaviour needs 0 <= p50_ms <= p99_ms")


_registry: dict[str, MockBehaviour] = {}
_registry_lock = threading.Lock()


def register_mock(name: str, behaviour: MockBehaviour) -> None:
    """Make ``mock/<name>`` behave as ``behaviour`` in executors built after this call."""
    with _registry_lock:
        _registry[name] = behaviour


def behaviour_for(model_id: str) -> MockBehaviour:
    """The behaviour of ``mock/<model_id>``: a registered one, updated by the query string if any."""
    name, _, query = model_id.partition("?")
    with _registry_lock:
        base = _registry.get(name, MockBehaviour())
    if not query:
        return base
    types = {f.name: f.type for f in fields(MockBehaviour)}
    updates: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in types:
            raise ConfigurationError(
                f"unknown mock option {key!r} in 'mock/{model_id}'; known: {', '.join(sorted(types))}"
            )
        kind = str(types[key])
        if key == "tool_calls":
            updates[key] = _scripted_calls(raw, model_id)
            continue
        try:
            if "int" in kind and "float" not in kind:
                updates[key] = int(raw)
            elif "float" in kind:
                updates[key] = float(raw)
            else:
                updates[key] = raw
        except ValueError:
            raise ConfigurationError(f"mock option {key}={raw!r} in 'mock/{model_id}' is not a number") from None
    return replace(base, **updates)


def _scripted_calls(raw: str, model_id: str) -> tuple[tuple[str, dict[str, Any] | None], ...]:
    """``tool_calls`` of a query string: ``name,name`` or a JSON list of ``[name, arguments]`` pairs."""
    text = raw.strip()
    if not text.startswith("["):
        return tuple((name.strip(), None) for name in text.split(",") if name.strip())
    try:
        pairs = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"mock option tool_calls={raw!r} in 'mock/{model_id}' is not JSON: {exc}") from None
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], dict | None)
        for pair in pairs
    ):
        raise ConfigurationError(
            f"mock option tool_calls={raw!r} in 'mock/{model_id}' must be a JSON list of [name, arguments] pairs"
        )
    return tuple((pair[0], pair[1]) for pair in pairs)


@dataclass
class MockModelClient:
    """A model that answers from its behaviour, without any network."""

    route: ModelRoute
    behaviour: MockBehaviour
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.behaviour.seed)

    @classmethod
    def for_route(cls, route: ModelRoute) -> MockModelClient:
        return cls(route=route, behaviour=behaviour_for(route.model_id))

    @property
    def server_address(self) -> str | None:
        return None

    @property
    def server_port(self) -> int | None:
        return None

    @property
    def secrets(self) -> tuple[str, ...]:
        return ()

    def _latency_seconds(self) -> float:
        b = self.behaviour
        if b.p50_ms <= 0:
            return 0.0
        sigma = math.log(b.p99_ms / b.p50_ms) / _Z99 if b.p99_ms and b.p99_ms > b.p50_ms else 0.0
        return self._rng.lognormvariate(math.log(b.p50_ms), sigma) / 1000.0 if sigma else b.p50_ms / 1000.0

    def _draw_failure(self) -> type[ProviderError] | None:
        roll = self._rng.random()
        for name, cls in _FAILURES.items():
            rate: float = getattr(self.behaviour, name)
            if roll < rate:
                return cls
            roll -= rate
        return None

    def _error(self, cls: type[ProviderError]) -> ProviderError:
        status = {RateLimitError: 429, ServerError: 503, AuthenticationError: 401, ContextLengthError: 400}.get(cls)
        retry_after = self.behaviour.retry_after if cls is RateLimitError else None
        return cls(
            f"mock {cls.error_type.replace('_', ' ')}",
            model=self.route.model,
            provider=self.route.provider.name,
            status_code=status,
            retry_after=retry_after,
            request_id=self._request_id(),
        )

    def _request_id(self) -> str:
        return f"mock-{self._rng.getrandbits(48):012x}"

    def _tool_calls(self, messages: Sequence[LLMMessage], params: CallParams) -> list[RequestedToolCall]:
        """The calls this answer makes instead of text, if any. Draws from the seeded generator only when
        tools are offered, so a text-only call sees the same sequence it always did."""
        if not params.tools or params.tool_choice == "none" or (messages and messages[-1].role == "tool"):
            return []
        behaviour = self.behaviour
        by_name = {tool.name: tool for tool in params.tools}
        script: list[tuple[str, dict[str, Any] | None]]
        if behaviour.tool_calls:
            script = list(behaviour.tool_calls)
        elif params.tool_choice in by_name:
            script = [(str(params.tool_choice), None)]
        elif params.tool_choice == "required" or self._rng.random() < behaviour.tool_use:
            script = [(tool.name, None) for tool in params.tools[:_MAX_CALLS]]
        else:
            return []
        calls = []
        for name, arguments in script:
            call_id = f"call_{self._rng.getrandbits(48):012x}"
            if self._rng.random() < behaviour.invalid_tool_arguments:
                text = '{"' + name + '": '  # cut short: not JSON
            elif arguments is not None:
                text = json.dumps(arguments)
            else:
                tool = by_name.get(name)
                text = json.dumps(_arguments_for(tool) if tool is not None else {})
            calls.append(RequestedToolCall(id=call_id, name=name, arguments=text))
        return calls

    def _answer(self, messages: Sequence[LLMMessage], params: CallParams) -> str:
        if params.json_schema is not None:
            if self._rng.random() < self.behaviour.invalid_output:
                return '{"truncated": '
            return json.dumps(_instance_of(params.json_schema, params.json_schema))
        if self.behaviour.reply is not None:
            return self.behaviour.reply
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        digest = hashlib.sha256(last.encode()).hexdigest()[:8]
        answer = f"[{self.route.model_id.partition('?')[0]}] answer to {digest}: {' '.join(last.split()[:12])}"
        results = _trailing_tool_results(messages)
        if results:
            answer += f" (from {len(results)} tool result(s): {' '.join(' '.join(results).split()[:12])})"
        return answer

    def _usage(self, messages: Sequence[LLMMessage], text: str) -> TokenUsage:
        prompt = self.behaviour.input_tokens
        if prompt is None:
            prompt = sum(max(1, len(m.content) // 4) for m in messages)
        completion = max(1, len(text) // 4) if self.behaviour.output_tokens is None else self.behaviour.output_tokens
        return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    async def _wait_or_fail(self, params: CallParams) -> None:
        latency = self._latency_seconds()
        failure = self._draw_failure()
        if failure is TimeoutError:
            await asyncio.sleep(min(params.timeout, max(latency * 3, 0.001)))
            raise self._error(TimeoutError)
        await asyncio.sleep(min(latency, params.timeout))
        if latency > params.timeout:
            raise self._error(TimeoutError)
        if failure is not None:
            raise self._error(failure)

    async def complete(self, messages: Sequence[LLMMessage], params: CallParams) -> Completion:
        await self._wait_or_fail(params)
        calls = self._tool_calls(messages, params)
        text = "" if calls else self._answer(messages, params)
        return Completion(
            text=text,
            usage=self._usage(messages, text),
            finish_reason="tool_calls" if calls else "stop",
            request_id=self._request_id(),
            response_id=f"mockresp-{self._rng.getrandbits(48):012x}",
            response_model=self.route.model_id.partition("?")[0],
            tool_calls=calls,
        )

    async def stream(
        self, messages: Sequence[LLMMessage], params: CallParams, result: Completion
    ) -> AsyncIterator[str]:
        await self._wait_or_fail(params)
        calls = self._tool_calls(messages, params)
        text = "" if calls else self._answer(messages, params)
        pieces = _split(text, max(1, self.behaviour.chunks))
        breaks = self._rng.random() < self.behaviour.stream_break
        result.request_id = self._request_id()
        for index, piece in enumerate(pieces):
            if breaks and index == 1:
                raise ProviderConnectionError(
                    "mock stream broken", model=self.route.model, provider="mock", request_id=result.request_id
                )
            result.text += piece
            yield piece
            await asyncio.sleep(0)
        result.usage = self._usage(messages, text)
        result.finish_reason = "tool_calls" if calls else "stop"
        result.response_model = self.route.model_id.partition("?")[0]
        result.tool_calls = calls  # complete only at the end, as a real client assembles their deltas


def _trailing_tool_results(messages: Sequence[LLMMessage]) -> list[str]:
    """The contents of the tool messages that end the conversation."""
    results: list[str] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.insert(0, message.content)
    return results


def _arguments_for(tool: ToolSpec) -> dict[str, Any]:
    """Arguments a tool's schema accepts: its required properties, each the plainest value of its type."""
    value = _required_value(tool.parameters, tool.parameters)
    return value if isinstance(value, dict) else {}


def _required_value(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _required_value(root.get("$defs", {}).get(name, {}), root)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            return _required_value(branches[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        properties: Mapping[str, Any] = schema.get("properties", {})
        return {name: _required_value(properties.get(name, {}), root) for name in schema.get("required", ())}
    return _PLAIN_VALUES.get(kind) if isinstance(kind, str) else None


_PLAIN_VALUES: dict[str, Any] = {"string": "mock", "integer": 1, "number": 1.0, "boolean": True, "array": []}


def _split(text: str, parts: int) -> list[str]:
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _instance_of(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """A minimal value that validates against a (pydantic-generated) JSON schema."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _instance_of(root.get("$defs", {}).get(name, {}), root)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return _instance_of(schema[key][0], root)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props: Mapping[str, Any] = schema.get("properties", {})
        return {name: _instance_of(sub, root) for name, sub in props.items()}
    if kind == "array":
        return [_instance_of(schema["items"], root)] * int(schema.get("minItems", 0)) if "items" in schema else []
    if kind == "string":
        return "mock" * max(1, int(schema.get("minLength", 1)))
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return True
    return None
