"""docker-compose.yml as data, and its variables interpolated as Compose interpolates them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# ${NAME}, ${NAME:-default} (default when unset or empty), ${NAME:?message} (an error when unset or empty).
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:-|:\?)(?P<word>[^}]*))?\}")


class MissingVariableError(ValueError):
    """A ``${NAME:?message}`` whose variable is unset or empty: Compose refuses the file with the message."""


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def application_services() -> dict[str, Any]:
    """The services that run the llm-ledger image."""
    return {name: service for name, service in services().items() if service.get("build") == "."}


def variables(value: str) -> list[tuple[str, str | None, str]]:
    """``(name, operator, word)`` of each variable ``value`` interpolates (operator ``None``, ``:-`` or ``:?``)."""
    return [(m["name"], m["operator"], m["word"] or "") for m in _VARIABLE.finditer(value)]


def interpolated(value: str, environment: Mapping[str, str] | None = None) -> str:
    """``value`` as Compose interpolates it from ``environment``."""
    env = environment or {}

    def substitute(match: re.Match[str]) -> str:
        given = env.get(match["name"], "")
        if match["operator"] == ":?" and not given:
            raise MissingVariableError(f"{match['name']}: {match['word']}")
        if match["operator"] == ":-" and not given:
            return match["word"]
        return given

    return _VARIABLE.sub(substitute, value)


def service_environment(name: str, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment service ``name`` gets, interpolated from ``environment``."""
    return {key: interpolated(str(value), environment) for key, value in services()[name]["environment"].items()}
