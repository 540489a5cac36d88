"""docker-compose.yml (no Docker engine here: the file is parsed and its wiring checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llm_ledger.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_jaeger_receives_otlp_over_grpc_and_http_and_serves_its_ui() -> None:
    jaeger = _compose()["services"]["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {"16686:16686", "4317:4317", "4318:4318"} <= set(jaeger["ports"])


def test_application_services_export_to_jaeger_and_store_in_postgres() -> None:
    services = _compose()["services"]
    apps = {name: s for name, s in services.items() if s.get("build") == "."}
    assert {"migrate", "demo"} <= set(apps)
    for service in apps.values():
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert env["LLM_LEDGER_DATABASE_URL"].startswith("postgresql://postgres:ledger@postgres:5432/")


def test_every_service_command_exists_in_the_cli() -> None:
    parser = build_parser()
    for name, service in _compose()["services"].items():
        if service.get("build") == "." and "command" in service:
            parser.parse_args(service["command"])  # exits (SystemExit) on an unknown command
            assert service["command"][0] in {"db", "demo"}, name


def test_dependencies_wait_for_health_or_completion() -> None:
    services = _compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["demo"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["postgres"]
    assert services["demo"]["depends_on"]["jaeger"]["condition"] == "service_started"


def test_the_image_installs_the_package_the_way_the_readme_does() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    assert "pip install -q ." in (ROOT / "README.md").read_text()
