"""Model strings (``provider/model-id``) and the provider each one routes to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from llm_ledger.environment import variable
from llm_ledger.executor.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider prefix and where its credentials come from."""

    name: str
    """The prefix of model strings, e.g. ``openrouter``."""
    otel_name: str
    """``gen_ai.provider.name`` of the OpenTelemetry GenAI conventions."""
    api_key_env: str | None
    base_url_env: str | None
    default_base_url: str | None


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "openrouter", "openrouter", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"
        ),
        Provider("anthropic", "anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
        Provider("openai", "openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1"),
        Provider("groq", "groq", "GROQ_API_KEY", "GROQ_BASE_URL", "https://api.groq.com"),
        Provider("mock", "mock", None, None, None),
    )
}


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A parsed model string: ``openrouter/anthropic/claude-3-haiku`` is provider ``openrouter``,
    model id ``anthropic/claude-3-haiku``."""

    model: str
    provider: Provider
    model_id: str


def parse_model_string(model: str) -> ModelRoute:
    """Route a model string to its provider, or raise ConfigurationError naming what is wrong."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(f"model string must be a non-empty string like 'openai/gpt-4.1', got {model!r}")
    prefix, sep, model_id = model.partition("/")
    if not sep:
        raise ConfigurationError(
            f"model string {model!r} has no provider prefix; expected one of "
            f"{', '.join(p + '/' for p in PROVIDERS)} followed by a model id"
        )
    provider = PROVIDERS.get(prefix)
    if provider is None:
        raise ConfigurationError(
            f"unknown provider {prefix!r} in model string {model!r}; known providers: {', '.join(PROVIDERS)}"
        )
    if not model_id.strip() or model_id != model_id.strip():
        raise ConfigurationError(f"model string {model!r} has an empty or padded model id after {prefix + '/'!r}")
    return ModelRoute(model=model, provider=provider, model_id=model_id)


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Credentials and endpoint for one provider; unset fields come from the provider's usual variables."""

    api_key: str | None = None
    base_url: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedSettings:
    api_key: str | None
    base_url: str | None

    @property
    def server_address(self) -> str | None:
        return urlsplit(self.base_url).hostname if self.base_url else None

    @property
    def server_port(self) -> int | None:
        if not self.base_url:
            return None
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def resolve_settings(
    provider: Provider,
    overrides: Mapping[str, ProviderSettings] | None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedSettings:
    """Arguments first, then the provider's environment variables, then its public endpoint."""
    given = (overrides or {}).get(provider.name, ProviderSettings())
    api_key = given.api_key or (variable(provider.api_key_env).get(environ) if provider.api_key_env else None) or None
    base_url = given.base_url or (variable(provider.base_url_env).get(environ) if provider.base_url_env else None)
    return ResolvedSettings(api_key=api_key, base_url=base_url or provider.default_base_url)
