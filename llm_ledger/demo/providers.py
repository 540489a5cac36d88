"""The mock models of the demo, each behaving like the provider it is named after.

Rates are per call. They are set so that a few hundred executions show every path of the executor:
retries (rate limits, 5xx, timeouts, dropped connections), fallbacks for every reason, streams broken
after their first chunk, and some executions that fail on every model of their chain. Offered tools, the
generation step's models mostly call them, now and then with arguments that are not JSON (an invalid
output, which falls back).

Each is named after the provider it stands for (``openai-gpt-4.1``): the read models count
``mock/openai-gpt-4.1`` under provider ``openai``, while its model string in the ledger keeps ``mock/``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import replace

from llm_ledger.executor import (
    ClientFactory,
    MockBehaviour,
    MockModelClient,
    ModelClient,
    ModelRoute,
    ProviderSettings,
    default_client_factory,
)
from llm_ledger.projections import provider_of

MOCK_PROVIDERS: dict[str, MockBehaviour] = {
    # Groq: very fast, throttles often, and the demo's key for it is sometimes refused.
    "groq-llama-3.1-8b": MockBehaviour(
        p50_ms=35, p99_ms=160, rate_limit=0.25, authentication=0.05, retry_after=0.2, output_tokens=60
    ),
    # OpenRouter: a router in front of Anthropic; its shared quota makes it the most throttled.
    "openrouter-claude-3-haiku": MockBehaviour(
        p50_ms=90, p99_ms=450, rate_limit=0.3, server_error=0.08, retry_after=0.3, output_tokens=80
    ),
    "openrouter-claude-3.5-sonnet": MockBehaviour(
        p50_ms=320,
        p99_ms=1400,
        rate_limit=0.2,
        connection=0.1,
        stream_break=0.05,
        tool_use=0.8,
        output_tokens=220,
    ),
    # Anthropic direct: overloaded (5xx) now and then, strict content filter, slow big model.
    "anthropic-claude-3-haiku": MockBehaviour(
        p50_ms=130, p99_ms=600, server_error=0.2, content_filter=0.06, output_tokens=80
    ),
    "anthropic-claude-3.5-sonnet": MockBehaviour(
        p50_ms=380,
        p99_ms=1800,
        server_error=0.08,
        timeout=0.06,
        content_filter=0.03,
        invalid_output=0.12,
        stream_break=0.04,
        tool_use=0.8,
        invalid_tool_arguments=0.08,
        output_tokens=240,
    ),
    # OpenAI: steady; long sessions hit the context window, structured answers are sometimes cut.
    "openai-gpt-4.1": MockBehaviour(
        p50_ms=260,
        p99_ms=1100,
        rate_limit=0.1,
        context_length=0.08,
        invalid_output=0.15,
        stream_break=0.03,
        tool_use=0.8,
        invalid_tool_arguments=0.05,
        output_tokens=200,
    ),
    "openai-gpt-4.1-mini": MockBehaviour(
        p50_ms=120,
        p99_ms=520,
        rate_limit=0.1,
        connection=0.15,
        invalid_output=0.2,
        stream_break=0.04,
        tool_use=0.7,
        output_tokens=90,
    ),
}


INCIDENT_RATE_LIMIT = 0.95
"""Not 1: now and then a call gets through, as when a provider sheds load."""


def _scaled(behaviour: MockBehaviour, latency_scale: float, seed: int) -> MockBehaviour:
    return replace(
        behaviour,
        p50_ms=behaviour.p50_ms * latency_scale,
        p99_ms=None if behaviour.p99_ms is None else behaviour.p99_ms * latency_scale,
        retry_after=None if behaviour.retry_after is None else behaviour.retry_after * latency_scale,
        seed=seed,
    )


def behaviour_in_incident(behaviour: MockBehaviour) -> MockBehaviour:
    """How a model of the incident's provider answers during it: a rate limit for almost every call."""
    return replace(
        behaviour,
        rate_limit=INCIDENT_RATE_LIMIT,
        server_error=0.0,
        timeout=0.0,
        connection=0.0,
        context_length=0.0,
        authentication=0.0,
        content_filter=0.0,
        retry_after=behaviour.retry_after or 0.2,
    )


class SessionModels:
    """The mock models as one session meets them, for ``LLMExecutor(client_factory=...)``.

    Each (step, model) pair has its own random stream, drawn from the run's seed and the session's place
    in the plan: a session's outcomes do not depend on how the concurrent sessions interleave, so a seed
    gives the same ledger on SQLite and PostgreSQL. In an incident, the models named after its provider
    are rate-limited (``behaviour_in_incident``)."""

    def __init__(
        self, *, seed: int, session_number: int, latency_scale: float = 1.0, rate_limited: str | None = None
    ) -> None:
        self._seed = seed
        self._session_number = session_number
        self._latency_scale = latency_scale
        self._rate_limited = rate_limited

    def factory(self, executor: str) -> ClientFactory:
        """The client factory of one of the session's executors (named after its step)."""

        def client(route: ModelRoute, providers: Mapping[str, ProviderSettings] | None) -> ModelClient:
            behaviour = MOCK_PROVIDERS.get(route.model_id) if route.provider.name == "mock" else None
            if behaviour is None:
                return default_client_factory(route, providers)
            if provider_of(route.model) == self._rate_limited:  # as the read models will count it
                behaviour = behaviour_in_incident(behaviour)
            key = f"{self._seed}:{self._session_number}:{executor}:{route.model_id}"
            return MockModelClient(route, _scaled(behaviour, self._latency_scale, zlib.crc32(key.encode())))

        return client
