"""docker-compose.yml (no Docker engine here: the file is validated against the Compose Specification's
JSON schema and its wiring checked against the CLI)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llm_ledger.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
# The Compose Specification's own schema, verbatim (source and version: README.md beside this file).
SCHEMA_PATH = Path(__file__).resolve().parent / "compose-spec.json"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _application_services() -> dict[str, Any]:
    return {name: service for name, service in _services().items() if service.get("build") == "."}


def _interpolated(value: str, environment: dict[str, str] | None = None) -> str:
    """``value`` as Compose interpolates it: ``${NAME}`` and ``${NAME:-default}`` from ``environment``."""
    env = environment or {}
    return _VARIABLE.sub(lambda m: env.get(m["name"]) or m["default"] or "", value)


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


# --- the specification ---------------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(_compose())]
    assert errors == []


@pytest.mark.parametrize(
    ("mapping", "key", "value"),
    [
        (("services", "dashboard"), "comand", ["dashboard"]),
        (("services", "projector", "depends_on", "migrate"), "condition", "service_done"),
        (("services", "postgres", "healthcheck"), "interval", 2),
        (("services", "demo"), "profiles", "demo"),
    ],
)
def test_the_schema_rejects_a_broken_compose_file(mapping: tuple[str, ...], key: str, value: Any) -> None:
    broken = copy.deepcopy(_compose())
    target = broken
    for name in mapping:
        target = target[name]
    target[key] = value
    paths = ["/".join(map(str, error.absolute_path)) for error in _validator().iter_errors(broken)]
    assert paths, f"the schema accepted {key}={value!r} in {'/'.join(mapping)}"
    assert any(path.startswith("/".join(mapping[:3])) for path in paths), paths


# --- what the stack is ----------------------------------------------------------------------------------


def test_the_stack_runs_the_services_of_the_design() -> None:
    services = _services()
    assert {"postgres", "jaeger", "migrate", "projector", "sealer", "dashboard", "demo"} <= set(services)
    assert {"migrate", "projector", "sealer", "dashboard", "demo"} <= set(_application_services())
    # `docker compose up` starts everything but the demo, which fills the stack only when asked.
    assert services["demo"]["profiles"] == ["demo"]
    assert [name for name, s in services.items() if "profiles" in s] == ["demo"]


def test_every_application_service_command_parses_with_the_cli() -> None:
    parser = build_parser()
    parsed = {}
    for name, service in _application_services().items():
        assert "command" in service, f"{name} would run the image's default (--help)"
        parsed[name] = parser.parse_args(service["command"])  # SystemExit on an unknown command or option
        assert callable(parsed[name].handler), name
    assert _services()["migrate"]["command"] == ["db", "upgrade"]
    assert parsed["projector"].command == "project" and parsed["projector"].follow is True
    assert parsed["dashboard"].command == "dashboard" and parsed["dashboard"].address == "0.0.0.0"
    assert parsed["dashboard"].port == 8501
    assert (parsed["sealer"].command, parsed["sealer"].follow, parsed["sealer"].interval) == ("audit", True, 300)
    assert parsed["demo"].command == "demo" and parsed["demo"].sessions > 0


def test_every_dependency_exists_and_waits_for_what_it_needs() -> None:
    services = _services()
    for name, service in services.items():
        for target, dependency in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = dependency["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: it has no check"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{name} waits for {target} to exit, which restarts"
                assert target == "migrate", f"{name} waits for {target} to complete"
            else:
                assert condition == "service_started", (name, target, condition)
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("projector", "sealer", "dashboard", "demo"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_the_migration_runs_once_and_the_long_running_services_come_back() -> None:
    services = _services()
    assert services["migrate"]["restart"] == "no"
    assert services["demo"]["restart"] == "no"
    for name in ("postgres", "jaeger", "projector", "sealer", "dashboard"):
        assert services[name]["restart"] in {"always", "unless-stopped"}, name


# --- each service -----------------------------------------------------------------------------------------


def test_application_services_export_to_jaeger_and_store_in_postgres() -> None:
    for name, service in _application_services().items():
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", name
        assert env["AGNO_TELEMETRY"] == "false", name
        url = env["LLM_LEDGER_DATABASE_URL"]
        assert _interpolated(url) == "postgresql://postgres:ledger@postgres:5432/ledger", name
        assert _interpolated(url, {"POSTGRES_PASSWORD": "s3cret"}).startswith("postgresql://postgres:s3cret@"), name


def test_the_seal_key_comes_from_the_environment_and_only_the_sealer_gets_it() -> None:
    holders = [name for name, s in _application_services().items() if "LLM_LEDGER_SEAL_KEY" in s["environment"]]
    assert holders == ["sealer"]
    key = _services()["sealer"]["environment"]["LLM_LEDGER_SEAL_KEY"]
    assert (_interpolated(key), _interpolated(key, {"LLM_LEDGER_SEAL_KEY": "k"})) == ("", "k")


def test_the_postgres_password_is_one_variable_with_a_local_default() -> None:
    postgres = _services()["postgres"]
    password = postgres["environment"]["POSTGRES_PASSWORD"]
    assert password == "${POSTGRES_PASSWORD:-ledger}"
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pgdata" in _compose()["volumes"]


def test_jaeger_receives_otlp_over_grpc_and_http_serves_its_ui_and_reports_its_health() -> None:
    jaeger = _services()["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {"16686:16686", "4317:4317", "4318:4318"} <= set(jaeger["ports"])
    assert jaeger["healthcheck"]["test"][0] == "CMD"
    assert "http://127.0.0.1:14269/" in jaeger["healthcheck"]["test"]


def test_the_dashboard_is_served_on_8501_checks_its_health_with_python_and_links_to_jaeger() -> None:
    dashboard = _services()["dashboard"]
    assert "8501:8501" in dashboard["ports"]
    env = dashboard["environment"]
    assert env["LLM_LEDGER_JAEGER_URL"] == "http://localhost:16686"
    assert env["LLM_LEDGER_DATABASE_URL"] == _services()["projector"]["environment"]["LLM_LEDGER_DATABASE_URL"]
    check = dashboard["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8501/_stcore/health" in check[3]
    compile(check[3], "healthcheck", "exec")
