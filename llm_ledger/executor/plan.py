"""What one execution needs, resolved from the executor, the configuration and the call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_ledger.events import CapturePolicy, DigestKey, DigestSecret, Operation, RequestParameters, Scrubber
from llm_ledger.events.values import JsonDict
from llm_ledger.executor.client import ModelClient
from llm_ledger.executor.clock import Clock, system_clock
from llm_ledger.executor.context import ExecutionContext
from llm_ledger.executor.policy import RetryPolicy
from llm_ledger.executor.sink import EventSink
from llm_ledger.executor.tools import ToolSpec
from llm_ledger.executor.tracing import ExecutionTracer
from llm_ledger.executor.types import LLMMessage


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """Everything one execution needs, resolved from the executor, the configuration and the call."""

    operation: Operation
    context: ExecutionContext
    chain: tuple[str, ...]
    clients: tuple[ModelClient, ...]
    messages: tuple[LLMMessage, ...]
    params: RequestParameters
    json_schema: dict[str, Any] | None
    schema_name: str | None
    max_retries: int
    timeout_seconds: float
    attempt_timeout_seconds: float
    capture: CapturePolicy
    policy: RetryPolicy
    sink: EventSink
    scrubber: Scrubber
    tracer: ExecutionTracer
    input_record: JsonDict | None = None
    """The ``ExecutionStarted`` input record when the door already built it (capture ``full``, to measure it)."""
    tools: tuple[ToolSpec, ...] = ()
    """The tools offered to the model, checked at the door."""
    offered_tools: tuple[tuple[str, str], ...] = ()
    """``(name, digest)`` of each offered tool, as ``ExecutionStarted`` keeps them."""
    tool_choice: str | None = None
    clock: Clock = system_clock
    """What stamps the events' ``occurred_at`` (the execution's, and its tools')."""
    digest_key: DigestKey | None = None
    """The tenant's key its digests are made under (``events.digests``); None under capture ``none``."""
    digest_secret: DigestSecret | None = None
    """What the digest keys of the tool executions it asks for are derived from (their context's tenant)."""
