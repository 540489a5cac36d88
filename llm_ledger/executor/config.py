"""Pipeline configuration (TOML, as Focal keeps it), resolved per call from the execution context.

```toml
[defaults]                                   # optional: applies to every step
max_retries = 2
[pipeline.generation]
model = "anthropic/claude-3-5-sonnet-20241022"
fallback_models = ["openrouter/anthropic/claude-3-5-sonnet-20241022"]
[agents.support_premium.pipeline.generation]                # per agent
model = "openai/gpt-4.1"
[tenants.acme.agents.support_premium.pipeline.generation]   # per tenant and agent
model = "openai/gpt-4.1-mini"
```
A step's settings are merged key by key: tenant+agent over agent over step over ``[defaults]``. An
override that sets only ``model`` keeps the step's ``fallback_models``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_ledger.events import CAPTURE_POLICIES, CapturePolicy
from llm_ledger.executor.errors import ConfigurationError
from llm_ledger.executor.routing import parse_model_string

_STEP_KEYS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "fallback_models": (list,),
    "max_retries": (int,),
    "timeout_seconds": (int, float),
    "attempt_timeout_seconds": (int, float),
    "temperature": (int, float),
    "max_tokens": (int,),
    "capture": (str,),
}


@dataclass(frozen=True, slots=True)
class StepConfig:
    """The settings of one pipeline step for one tenant and agent."""

    step: str
    model: str
    fallback_models: tuple[str, ...] = ()
    max_retries: int | None = None
    timeout_seconds: float | None = None
    attempt_timeout_seconds: float | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    capture: CapturePolicy | None = None

    @property
    def chain(self) -> tuple[str, ...]:
        return (self.model, *self.fallback_models)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Step settings with agent and tenant+agent overrides. Build with ``load`` or ``from_mapping``."""

    source: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    agents: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    tenant_agents: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        """Read a TOML file; a malformed file or an unknown key raises ConfigurationError naming both."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigurationError(f"{path}: pipeline configuration file not found") from None
        except IsADirectoryError:
            raise ConfigurationError(f"{path}: is a directory, not a pipeline configuration file") from None
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read the pipeline configuration: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except ValueError as exc:  # a NUL in the path
            raise ConfigurationError(f"{str(path)!r}: not a usable path: {exc}") from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> PipelineConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> PipelineConfig:
        _check_keys(data, {"defaults", "pipeline", "agents", "tenants"}, "", source)
        defaults = _step_table(data.get("defaults", {}), "defaults", source)
        steps = _pipeline(data.get("pipeline", {}), "pipeline", source)
        for step, table in steps.items():
            if "model" not in table and "model" not in defaults:
                raise ConfigurationError(f"{source}: pipeline.{step} has no 'model'")
        agents: dict[str, dict[str, dict[str, Any]]] = {}
        for agent, table in _table(data.get("agents", {}), "agents", source).items():
            where = f"agents.{agent}"
            _check_keys(_table(table, where, source), {"pipeline"}, where, source)
            agents[agent] = _pipeline(table.get("pipeline", {}), f"{where}.pipeline", source)
        tenant_agents: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for tenant, table in _table(data.get("tenants", {}), "tenants", source).items():
            where = f"tenants.{tenant}"
            _check_keys(_table(table, where, source), {"agents"}, where, source)
            for agent, agent_table in _table(table.get("agents", {}), f"{where}.agents", source).items():
                agent_where = f"{where}.agents.{agent}"
                _check_keys(_table(agent_table, agent_where, source), {"pipeline"}, agent_where, source)
                tenant_agents[(tenant, agent)] = _pipeline(
                    agent_table.get("pipeline", {}), f"{agent_where}.pipeline", source
                )
        config = cls(source, defaults, steps, agents, tenant_agents)
        for overrides, where in [
            *((v, f"agents.{k}") for k, v in agents.items()),
            *((v, f"tenants.{t}.agents.{a}") for (t, a), v in tenant_agents.items()),
        ]:
            for step in overrides:
                if step not in steps:
                    raise ConfigurationError(
                        f"{source}: {where}.pipeline.{step} overrides a step that [pipeline] does not define"
                    )
        return config

    def step_names(self) -> tuple[str, ...]:
        return tuple(self.steps)

    def resolve(self, step: str, *, tenant_id: str | None = None, agent_id: str | None = None) -> StepConfig:
        """The settings of ``step`` for this tenant and agent."""
        if step not in self.steps:
            known = ", ".join(self.steps) or "none"
            raise ConfigurationError(f"{self.source}: no [pipeline.{step}] (steps defined: {known})")
        merged: dict[str, Any] = {**self.defaults, **self.steps[step]}
        if agent_id is not None:
            merged.update(self.agents.get(agent_id, {}).get(step, {}))
            if tenant_id is not None:
                merged.update(self.tenant_agents.get((tenant_id, agent_id), {}).get(step, {}))
        return StepConfig(
            step=step,
            model=merged["model"],
            fallback_models=tuple(merged.get("fallback_models", ())),
            max_retries=merged.get("max_retries"),
            timeout_seconds=_float_or_none(merged.get("timeout_seconds")),
            attempt_timeout_seconds=_float_or_none(merged.get("attempt_timeout_seconds")),
            temperature=_float_or_none(merged.get("temperature")),
            max_tokens=merged.get("max_tokens"),
            capture=merged.get("capture"),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _table(value: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{source}: '{where}' must be a table, not {type(value).__name__}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str, source: str) -> None:
    for key in data:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise ConfigurationError(f"{source}: unknown key '{full}' (expected {', '.join(sorted(allowed))})")


def _pipeline(value: Any, where: str, source: str) -> dict[str, dict[str, Any]]:
    return {step: _step_table(table, f"{where}.{step}", source) for step, table in _table(value, where, source).items()}


def _step_table(value: Any, where: str, source: str) -> dict[str, Any]:
    table = _table(value, where, source)
    _check_keys(table, set(_STEP_KEYS), where, source)
    for key, item in table.items():
        expected = _STEP_KEYS[key]
        if isinstance(item, bool) or not isinstance(item, expected):
            names = " or ".join(t.__name__ for t in expected)
            raise ConfigurationError(f"{source}: '{where}.{key}' must be {names}, not {item!r}")
        if isinstance(item, float) and not math.isfinite(item):  # TOML has nan and inf; no setting means them
            raise ConfigurationError(f"{source}: '{where}.{key}' must be a finite number, not {item!r}")
    for model in [table.get("model"), *table.get("fallback_models", [])]:
        if model is None:
            continue
        if not isinstance(model, str):
            raise ConfigurationError(f"{source}: '{where}.fallback_models' must list strings, not {model!r}")
        try:
            parse_model_string(model)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: '{where}': {exc}") from None
    if "capture" in table and table["capture"] not in CAPTURE_POLICIES:
        raise ConfigurationError(
            f"{source}: '{where}.capture' must be one of {', '.join(CAPTURE_POLICIES)}, not {table['capture']!r}"
        )
    for key in ("max_retries", "max_tokens"):
        if key in table and table[key] < 0:
            raise ConfigurationError(f"{source}: '{where}.{key}' must not be negative")
    for key in ("timeout_seconds", "attempt_timeout_seconds"):
        if key in table and table[key] <= 0:
            raise ConfigurationError(f"{source}: '{where}.{key}' must be positive")
    return table
