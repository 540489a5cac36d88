"""The retry and fallback layers Agno would add around an ``AuditedModel``, refused.

The executor retries and falls back, recording every attempt. A second layer above it would repeat
whole executions behind the ledger's back: Agno's ``Model.retries`` re-invokes a round trip,
``Agent(fallback_models=...)``/``fallback_config`` calls other models after the chain failed, and
``Agent(retries=...)`` (``Team(retries=...)``) reruns the whole run, model calls included. Each is
refused when the run's model loop starts, with an error that says what to change."""

from __future__ import annotations

from typing import Any

from llm_ledger.agno.run_owner import RunOwner
from llm_ledger.executor import ConfigurationError


def check_no_second_layer(model_retries: int, owner: RunOwner) -> None:
    if model_retries:
        raise ConfigurationError(
            f"AuditedModel.retries={model_retries}: Agno's own retries would repeat executions the ledger "
            "already retries; leave AuditedModel.retries at 0 and set max_retries= on the AuditedModel "
            "(or the step's max_retries in the pipeline configuration)"
        )
    name = _describe(owner.component)
    if _has_fallbacks(owner.fallback_config):
        raise ConfigurationError(
            f"{name} has Agno fallback models (fallback_models= or fallback_config=) around an AuditedModel: "
            "their calls would escape the ledger; remove them and list the fallbacks in the AuditedModel "
            "instead (AuditedModel(model, fallback_models=[...]) or the step's fallback_models in the "
            "pipeline configuration)"
        )
    retries = getattr(owner.component, "retries", 0) or 0
    if retries:
        raise ConfigurationError(
            f"{name} has retries={retries}: Agno would rerun the whole run, repeating its model calls; "
            "set retries=0 on it and let the AuditedModel retry (max_retries=)"
        )


def _has_fallbacks(fallback_config: Any) -> bool:
    return bool(fallback_config is not None and getattr(fallback_config, "has_fallbacks", False))


def _describe(component: Any) -> str:
    if component is None:
        return "The run"
    kind = type(component).__name__
    label = getattr(component, "name", None) or getattr(component, "id", None)
    return f"{kind} {label!r}" if label else kind
