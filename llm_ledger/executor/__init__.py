"""The audited LLM executor: routing, retries, fallback chain, context and events.
See docs/ARCHITECTURE.md for the route of a call and where each of its decisions lives."""

from llm_ledger.events import TokenUsage
from llm_ledger.executor.client import CallParams, Completion, ModelClient
from llm_ledger.executor.clock import Clock, system_clock
from llm_ledger.executor.config import PipelineConfig, StepConfig
from llm_ledger.executor.context import (
    ExecutionContext,
    clear_execution_context,
    execution_context,
    get_execution_context,
    set_execution_context,
)
from llm_ledger.executor.digest_secret import DigestSecretError, default_digest_secret
from llm_ledger.executor.errors import (
    AllModelsFailedError,
    AuthenticationError,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    DeadlineExceededError,
    InvalidInputError,
    InvalidOutputError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    TimeoutError,
)
from llm_ledger.executor.executor import ClientFactory, LLMExecutor, default_client_factory
from llm_ledger.executor.mock import MockBehaviour, MockModelClient, register_mock
from llm_ledger.executor.policy import RetryPolicy, is_retryable, should_fall_back
from llm_ledger.executor.routing import PROVIDERS, ModelRoute, ProviderSettings, parse_model_string
from llm_ledger.executor.sink import (
    DurableSink,
    EventSink,
    FanOutSink,
    InMemorySink,
    RingBufferSink,
    get_default_sink,
    set_default_sink,
)
from llm_ledger.executor.stream import LLMStream
from llm_ledger.executor.tool_executions import ToolCallRecording, ToolRun, record_tool_call, run_tool_call
from llm_ledger.executor.tools import RequestedToolCall, ToolCall, ToolSpec
from llm_ledger.executor.turns import turn_span
from llm_ledger.executor.types import AttemptSummary, LLMMessage, LLMResponse

__all__ = [
    "PROVIDERS",
    "AllModelsFailedError",
    "AttemptSummary",
    "AuthenticationError",
    "CallParams",
    "ClientFactory",
    "Clock",
    "Completion",
    "ConfigurationError",
    "ContentFilterError",
    "ContextLengthError",
    "DeadlineExceededError",
    "DigestSecretError",
    "DurableSink",
    "EventSink",
    "ExecutionContext",
    "FanOutSink",
    "InMemorySink",
    "InvalidInputError",
    "InvalidOutputError",
    "InvalidRequestError",
    "LLMExecutor",
    "LLMMessage",
    "LLMResponse",
    "LLMStream",
    "MockBehaviour",
    "MockModelClient",
    "ModelClient",
    "ModelNotFoundError",
    "ModelRoute",
    "PipelineConfig",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderSettings",
    "RateLimitError",
    "RequestedToolCall",
    "RetryPolicy",
    "RingBufferSink",
    "ServerError",
    "StepConfig",
    "StreamInterruptedError",
    "TimeoutError",
    "TokenUsage",
    "ToolCall",
    "ToolCallRecording",
    "ToolRun",
    "ToolSpec",
    "clear_execution_context",
    "default_client_factory",
    "default_digest_secret",
    "execution_context",
    "get_default_sink",
    "get_execution_context",
    "is_retryable",
    "parse_model_string",
    "record_tool_call",
    "register_mock",
    "run_tool_call",
    "set_default_sink",
    "set_execution_context",
    "should_fall_back",
    "system_clock",
    "turn_span",
]
