"""docker-compose.yml (no Docker engine here: the file is validated against the Compose Specification's
JSON schema and its wiring checked against the CLI)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy.engine import make_url

from llm_ledger.cli import build_parser
from llm_ledger.dashboard.login import OidcSettings
from tests.deploy import compose as stack
from tests.deploy.compose import ROOT, MissingVariableError, interpolated, service_environment, variables
from tests.deploy.conftest import LOGIN_SCRIPT

# The Compose Specification's own schema, verbatim (source and version: README.md beside this file).
SCHEMA_PATH = Path(__file__).resolve().parent / "compose-spec.json"


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


# --- the specification ---------------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(stack.compose())]
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
    broken = copy.deepcopy(stack.compose())
    target = broken
    for name in mapping:
        target = target[name]
    target[key] = value
    paths = ["/".join(map(str, error.absolute_path)) for error in _validator().iter_errors(broken)]
    assert paths, f"the schema accepted {key}={value!r} in {'/'.join(mapping)}"
    assert any(path.startswith("/".join(mapping[:3])) for path in paths), paths


# --- what the stack is ----------------------------------------------------------------------------------


def test_the_stack_runs_the_services_of_the_design() -> None:
    services = stack.services()
    assert {"postgres", "jaeger", "migrate", "projector", "sealer", "dashboard", "demo"} <= set(services)
    assert {"migrate", "projector", "sealer", "dashboard", "demo"} <= set(stack.application_services())
    # `docker compose up` starts everything but the demo, which fills the stack only when asked.
    # Nor the audit, which checks the ledger when asked (`docker compose run --rm audit`).
    assert services["demo"]["profiles"] == ["demo"]
    assert services["audit"]["profiles"] == ["audit"]
    # Nor retention, which an operator runs (`docker compose run --rm retention`): it drops months.
    assert services["retention"]["profiles"] == ["retention"]
    # Nor erase, which destroys data keys for good (`docker compose run --rm erase erase ...`).
    assert services["erase"]["profiles"] == ["erase"]
    assert [name for name, s in services.items() if "profiles" in s] == ["audit", "retention", "erase", "demo"]


def test_every_application_service_command_parses_with_the_cli() -> None:
    parser = build_parser()
    parsed = {}
    for name, service in stack.application_services().items():
        assert "command" in service, f"{name} would run the image's default (--help)"
        if name == "erase":  # its default prints its usage: there is no session to erase by default
            assert service["command"] == ["erase", "--help"]
            with pytest.raises(SystemExit) as usage:
                parser.parse_args(service["command"])
            assert usage.value.code == 0
            continue
        parsed[name] = parser.parse_args(service["command"])  # SystemExit on an unknown command or option
        assert callable(parsed[name].handler), name
    assert stack.services()["migrate"]["command"] == ["db", "upgrade"]
    assert parsed["projector"].command == "project" and parsed["projector"].follow is True
    assert parsed["dashboard"].command == "dashboard" and parsed["dashboard"].address == "0.0.0.0"
    assert parsed["dashboard"].port == 8501 and parsed["dashboard"].insecure_no_login is True
    assert (parsed["verifier"].command, parsed["verifier"].audit_command) == ("audit", "verify")
    assert (parsed["sealer"].command, parsed["sealer"].follow, parsed["sealer"].interval) == ("audit", True, 300)
    assert parsed["demo"].command == "demo" and parsed["demo"].sessions > 0
    assert (parsed["audit"].command, parsed["audit"].audit_command) == ("audit", "verify")
    # Its default only plans (changes nothing); the apply is the operator's, with the archive volume.
    assert (parsed["retention"].command, parsed["retention"].retention_command) == ("retention", "plan")


def test_every_dependency_exists_and_waits_for_what_it_needs() -> None:
    services = stack.services()
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
    for name in ("projector", "sealer", "verifier", "dashboard", "demo", "audit", "retention", "erase"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_the_migration_runs_once_and_the_long_running_services_come_back() -> None:
    services = stack.services()
    assert services["migrate"]["restart"] == "no"
    assert services["demo"]["restart"] == "no"
    assert services["audit"]["restart"] == "no"
    assert services["retention"]["restart"] == "no"
    assert services["erase"]["restart"] == "no"
    for name in ("postgres", "jaeger", "projector", "sealer", "verifier", "dashboard"):
        assert services[name]["restart"] in {"always", "unless-stopped"}, name


# --- each service -----------------------------------------------------------------------------------------


# The logins each service connects as (README: "Production: docker compose"), by the variable naming it.
LOGINS = {
    "migrate": "LEDGER_MIGRATE",
    "projector": "LEDGER_PROJECTOR",
    "sealer": "LEDGER_SEALER",
    "dashboard": "LEDGER_DASHBOARD",
    "audit": "LEDGER_AUDITOR",
    # The audit service's own check, on a schedule: the same login.
    "verifier": "LEDGER_AUDITOR",
    "demo": "LEDGER_DEMO",
    "retention": "LEDGER_RETENTION",
    "erase": "LEDGER_ERASER",
}


def _every_string(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (str(key), *_every_string(value))]
    if isinstance(node, list):
        return [text for item in node for text in _every_string(item)]
    return [str(node)]


def test_application_services_export_to_jaeger_and_store_in_postgres() -> None:
    for name, service in stack.application_services().items():
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", name
        assert env["AGNO_TELEMETRY"] == "false", name
        url = make_url(interpolated(env["LLM_LEDGER_DATABASE_URL"]))
        assert (url.drivername, url.host, url.port, url.database) == ("postgresql", "postgres", 5432, "ledger"), name


def test_each_service_connects_as_a_login_of_its_own_named_by_a_variable() -> None:
    assert set(LOGINS) == set(stack.application_services())
    users = {}
    for name, prefix in LOGINS.items():
        url = stack.services()[name]["environment"]["LLM_LEDGER_DATABASE_URL"]
        assert [(variable, operator) for variable, operator, _ in variables(url)] == [(f"{prefix}_LOGIN", ":-")], name
        users[name] = make_url(interpolated(url)).username
        assert make_url(interpolated(url, {f"{prefix}_LOGIN": "someone"})).username == "someone", name
    assert len(set(users.values())) == len(set(LOGINS.values())), users


def test_no_service_connects_as_the_superuser() -> None:
    superuser = stack.services()["postgres"]["environment"].get("POSTGRES_USER", "postgres")
    for name, service in stack.application_services().items():
        env = service["environment"]
        assert make_url(interpolated(env["LLM_LEDGER_DATABASE_URL"])).username != superuser, name
        assert not any("POSTGRES_PASSWORD" in text for text in _every_string(service)), name


def test_every_password_is_required_and_has_no_default() -> None:
    mentioned = [variable for text in _every_string(stack.compose()) for variable in variables(text)]
    passwords = [(name, operator) for name, operator, _ in mentioned if name.endswith("PASSWORD")]
    assert passwords, "the file names no password variable"
    assert {operator for _, operator in passwords} == {":?"}, passwords
    for name, service in stack.services().items():
        if "PGPASSWORD" in service.get("environment", {}) or name == "postgres":
            with pytest.raises(MissingVariableError, match="PASSWORD"):
                service_environment(name, {})


def test_passwords_travel_as_pgpassword_never_in_a_url() -> None:
    for name, prefix in LOGINS.items():
        env = stack.services()[name]["environment"]
        assert env["PGPASSWORD"].startswith(f"${{{prefix}_PASSWORD:?"), name
        given = service_environment(name, {f"{prefix}_PASSWORD": "p@ss:w/rd", "LLM_LEDGER_DIGEST_KEY": "k"})
        assert given["PGPASSWORD"] == "p@ss:w/rd", name
        assert make_url(given["LLM_LEDGER_DATABASE_URL"]).password is None, name


def test_the_postgres_service_gets_every_login_its_init_script_creates() -> None:
    postgres = stack.services()["postgres"]
    script = LOGIN_SCRIPT.read_text()
    assert LOGIN_SCRIPT.stat().st_mode & 0o111, "the image sources, not runs, a script that is not executable"
    names = script.split("for service in ", 1)[1].split(";", 1)[0].split()
    expected = {f"LEDGER_{n.upper()}_{part}" for n in names for part in ("LOGIN", "PASSWORD")}
    assert expected <= set(postgres["environment"])
    assert {f"{prefix}_LOGIN" for prefix in LOGINS.values()} | {"LEDGER_WRITER_LOGIN"} <= expected
    for name, prefix in LOGINS.items():
        # The service logs in as the login the script creates for it, under the same default name.
        url = stack.services()[name]["environment"]["LLM_LEDGER_DATABASE_URL"]
        assert make_url(interpolated(url)).username == interpolated(postgres["environment"][f"{prefix}_LOGIN"]), name
    volumes = postgres["volumes"]
    assert "./deploy/postgres/initdb.d:/docker-entrypoint-initdb.d:ro" in volumes
    assert "./deploy/postgres/ledger-logins.sql:/llm-ledger/ledger-logins.sql:ro" in volumes
    assert "/llm-ledger/ledger-logins.sql" in script
    assert "pgdata:/var/lib/postgresql/data" in volumes
    assert "pgdata" in stack.compose()["volumes"]


def _published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(host address, host port, container port)`` of each published port (short syntax); an address
    left out is every interface, 0.0.0.0."""
    published: list[tuple[str, str, str]] = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        assert len(parts) in (2, 3), f"{port!r}: name the host port"
        published.append(("0.0.0.0", parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2]))
    return published


def test_only_what_a_person_opens_is_published_and_on_this_host_only() -> None:
    published = {name: _published(service) for name, service in stack.services().items() if "ports" in service}
    assert "postgres" not in published, "PostgreSQL is reached on the compose network, not published"
    assert set(published) == {"dashboard", "jaeger"}
    for name, ports in published.items():
        assert {address for address, _, _ in ports} == {"127.0.0.1"}, (name, ports)


def test_the_seal_key_comes_from_the_environment_and_only_the_sealer_gets_it() -> None:
    holders = [name for name, s in stack.application_services().items() if "LLM_LEDGER_SEAL_KEY" in s["environment"]]
    assert holders == ["sealer"]
    key = stack.services()["sealer"]["environment"]["LLM_LEDGER_SEAL_KEY"]
    assert (interpolated(key), interpolated(key, {"LLM_LEDGER_SEAL_KEY": "k"})) == ("", "k")
    public = stack.services()["audit"]["environment"]["LLM_LEDGER_SEAL_PUBLIC_KEY"]
    assert (interpolated(public), interpolated(public, {"LLM_LEDGER_SEAL_PUBLIC_KEY": "p"})) == ("", "p")


def test_the_digest_secret_comes_from_the_environment_required_by_the_writer_and_given_to_audit() -> None:
    holders = [name for name, s in stack.application_services().items() if "LLM_LEDGER_DIGEST_KEY" in s["environment"]]
    assert holders == ["audit", "demo"]
    writer = stack.services()["demo"]["environment"]["LLM_LEDGER_DIGEST_KEY"]
    # The demo writes to PostgreSQL, which refuses a writer without it: Compose refuses first, by name.
    assert [(name, operator) for name, operator, _ in variables(writer)] == [("LLM_LEDGER_DIGEST_KEY", ":?")]
    with pytest.raises(MissingVariableError, match="LLM_LEDGER_DIGEST_KEY"):
        interpolated(writer)
    assert interpolated(writer, {"LLM_LEDGER_DIGEST_KEY": "k"}) == "k"
    # `docker compose run --rm audit audit digest-key --tenant acme` reads it; `audit verify` runs without.
    auditor = stack.services()["audit"]["environment"]["LLM_LEDGER_DIGEST_KEY"]
    assert (interpolated(auditor), interpolated(auditor, {"LLM_LEDGER_DIGEST_KEY": "k"})) == ("", "k")


def test_postgres_is_healthy_only_once_it_accepts_the_services_connections() -> None:
    # While its init script creates the logins, the image runs a temporary server on the Unix socket only:
    # pg_isready over the socket says ready then, migrate connects over TCP, is refused, and with
    # `restart: "no"` nothing that waits for it ever starts. Over TCP the check waits for the real server.
    check = stack.services()["postgres"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and check[1].split()[0] == "pg_isready", check
    arguments = check[1].split()
    assert "-h" in arguments and arguments[arguments.index("-h") + 1] == "127.0.0.1", check


def test_jaeger_receives_otlp_over_grpc_and_http_serves_its_ui_and_reports_its_health() -> None:
    jaeger = stack.services()["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {"127.0.0.1:16686:16686", "127.0.0.1:4317:4317", "127.0.0.1:4318:4318"} <= set(jaeger["ports"])
    assert jaeger["healthcheck"]["test"][0] == "CMD"
    assert "http://127.0.0.1:14269/" in jaeger["healthcheck"]["test"]


def test_the_dashboard_is_served_on_8501_checks_its_health_with_python_and_links_to_jaeger() -> None:
    dashboard = stack.services()["dashboard"]
    assert "127.0.0.1:8501:8501" in dashboard["ports"]
    env = dashboard["environment"]
    assert env["LLM_LEDGER_TRACE_URL"] == "http://localhost:16686/trace/{trace_id}"
    assert "LLM_LEDGER_JAEGER_URL" not in env, "the deprecated variable is not set beside it"
    # Its login holds no projector role: the projector service keeps the figures current.
    assert env["LLM_LEDGER_DASHBOARD_CATCH_UP"] == "false"
    check = dashboard["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8501/_stcore/health" in check[3]
    compile(check[3], "healthcheck", "exec")


def test_the_dashboard_without_a_login_is_reached_from_this_host_alone() -> None:
    dashboard = stack.services()["dashboard"]
    # --insecure-no-login lets it listen on the container's 0.0.0.0: only because the port is published on
    # 127.0.0.1, as a person on this host (or an SSH tunnel) reaches it.
    assert "--insecure-no-login" in dashboard["command"]
    assert {address for address, _, _ in _published(dashboard)} == {"127.0.0.1"}
    assert OidcSettings.from_env(service_environment("dashboard", {"LEDGER_DASHBOARD_PASSWORD": "p"})) is None


def test_the_dashboard_gets_its_login_from_the_environment() -> None:
    login = {
        "LEDGER_DASHBOARD_PASSWORD": "p",
        "LLM_LEDGER_OIDC_ISSUER": "https://id.example",
        "LLM_LEDGER_OIDC_CLIENT_ID": "llm-ledger",
        "LLM_LEDGER_OIDC_CLIENT_SECRET": "s3cret",
        "LLM_LEDGER_OIDC_REDIRECT_URI": "https://ledger.example/oauth2callback",
        "LLM_LEDGER_OIDC_COOKIE_SECRET": "c" * 32,
        "LLM_LEDGER_OIDC_OPERATORS_GROUP": "sre",
    }
    settings = OidcSettings.from_env(service_environment("dashboard", login))

    assert settings == OidcSettings(
        "https://id.example",
        "llm-ledger",
        "s3cret",
        "https://ledger.example/oauth2callback",
        "c" * 32,
        tenant_claim="tenant",
        operators_claim="groups",
        operators_group="sre",
    )
    secrets = [
        name for name, s in stack.application_services().items() if "LLM_LEDGER_OIDC_CLIENT_SECRET" in s["environment"]
    ]
    assert secrets == ["dashboard"]


def test_the_verifier_runs_audit_verify_every_15_minutes_as_the_audit_service_does() -> None:
    services = stack.services()
    verifier, audit = services["verifier"], services["audit"]
    shell, flag, script, name = verifier["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    # Compose turns $$ into $: the shell runs `llm-ledger <command>` for 10 minutes at most, then sleeps, forever.
    assert script == 'while :; do timeout 600 llm-ledger "$$@"; sleep 900; done' and name
    assert verifier["command"] == audit["command"] == ["audit", "verify"]
    # Its shell would ignore `docker compose stop` as PID 1: an init passes the signal on.
    assert verifier["init"] is True
    assert verifier["restart"] == "unless-stopped" and "profiles" not in verifier
    variables = {"LEDGER_AUDITOR_PASSWORD": "p", "LLM_LEDGER_SEAL_PUBLIC_KEY": "k", "LLM_LEDGER_DIGEST_KEY": "d"}
    # The audit service also prints a tenant's digest key for an auditor (`audit digest-key`).
    assert {**service_environment("verifier", variables), "LLM_LEDGER_DIGEST_KEY": "d"} == service_environment(
        "audit", variables
    )
    # The same volumes, but the retention archive, which only `audit verify --archive` reads.
    assert verifier["volumes"] == [volume for volume in audit["volumes"] if not volume.startswith("archive:")]


ARCHIVE = "/var/lib/llm-ledger/archive"
"""Where the retention service writes the archive, and the audit service reads it (read only)."""


def test_retention_applies_as_its_own_login_to_an_archive_volume_the_audit_service_reads() -> None:
    services = stack.services()
    retention, audit = services["retention"], services["audit"]
    assert [volume for volume in retention["volumes"] if volume.startswith("archive:")] == [f"archive:{ARCHIVE}"]
    assert f"archive:{ARCHIVE}:ro" in audit["volumes"]
    assert "archive" in stack.compose()["volumes"]
    # The commands the file tells an operator to run parse, and name that directory.
    header = stack.COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    documented = re.findall(
        r"docker compose run --rm (retention|audit) (retention apply|audit verify) ([^\n#]*)", header
    )
    parser = build_parser()
    commands = {service: parser.parse_args(f"{command} {rest}".split()) for service, command, rest in documented}
    assert set(commands) == {"retention", "audit"}, documented
    assert commands["retention"].retention_command == "apply" and commands["retention"].archive == ARCHIVE
    assert commands["audit"].audit_command == "verify" and commands["audit"].archive == [ARCHIVE]
    # The login plans and applies as llm_ledger_retention and verifies first as llm_ledger_auditor.
    assert (
        "(:'retention_login', :'retention_password', ARRAY['llm_ledger_retention', 'llm_ledger_auditor'])"
        in (LOGIN_SCRIPT.parent.parent / "ledger-logins.sql").read_text()
    )


def test_retention_s_verify_pins_the_key_and_witness_the_audit_service_s_does() -> None:
    """The verify ``retention apply`` makes before it drops anything is held against the same public key and
    the same witness (the same volume, read only) as ``audit verify``'s; and the commands take them."""
    services = stack.services()
    retention, audit = services["retention"], services["audit"]
    pins = ("LLM_LEDGER_SEAL_PUBLIC_KEY", "LLM_LEDGER_VERIFY_WITNESS")
    for given in ({}, {"LLM_LEDGER_SEAL_PUBLIC_KEY": "k"}):
        variables = {"LEDGER_AUDITOR_PASSWORD": "p", "LEDGER_RETENTION_PASSWORD": "p", **given}
        theirs = service_environment("audit", variables)
        ours = service_environment("retention", variables)
        assert {name: ours.get(name) for name in pins} == {name: theirs[name] for name in pins}
    (witness,) = [volume for volume in audit["volumes"] if volume.startswith("witness:")]
    assert witness.endswith(":ro") and witness in retention["volumes"]
    assert witness.split(":")[1].rstrip("/") == ours["LLM_LEDGER_VERIFY_WITNESS"].rstrip("/")
    # What the variables set, the options of the same names set on the command line, as for `audit verify`.
    parser = build_parser()
    for command in (["retention", "plan"], ["retention", "apply", "--archive", ARCHIVE], ["audit", "verify"]):
        older = ["--older-than", "400d"] if command[0] == "retention" else []
        parsed = parser.parse_args([*command, *older, "--public-key", "k", "--witness", "w"])
        assert (parsed.public_key, parsed.witness) == ("k", "w")


def test_erase_runs_as_its_own_login_granted_the_eraser_role_alone() -> None:
    """The command the file tells an operator to run parses as ``erase`` of one session; its login is
    granted ``llm_ledger_eraser`` and nothing else (tests/deploy/test_stack.py runs it)."""
    header = stack.COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    (documented,) = re.findall(r"docker compose run --rm erase (erase [^\n#]*)", header)
    parsed = build_parser().parse_args(documented.split())
    assert (parsed.command, parsed.tenant, parsed.session, parsed.yes) == ("erase", "acme", "s-1042", False)
    assert (
        "(:'eraser_login', :'eraser_password', ARRAY['llm_ledger_eraser'])"
        in (LOGIN_SCRIPT.parent.parent / "ledger-logins.sql").read_text()
    )
    assert "volumes" not in stack.services()["erase"], "it changes nothing but the database"


# --- what the docs tell an operator to run ------------------------------------------------------------------


def test_new_env_writes_every_password_compose_requires_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    done = subprocess.run(
        [str(ROOT / "deploy" / "new-env.sh"), str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    written = dict(line.split("=", 1) for line in target.read_text().splitlines() if not line.startswith("#"))
    required = {
        name for text in _every_string(stack.compose()) for name, operator, _ in variables(text) if operator == ":?"
    }
    assert set(written) == required
    assert len(set(written.values())) == len(written) and all(len(value) >= 32 for value in written.values())
    for name in stack.services():
        if "environment" in stack.services()[name]:
            service_environment(name, written)  # MissingVariableError if the file lacked one

    again = subprocess.run(
        [str(ROOT / "deploy" / "new-env.sh"), str(target)], capture_output=True, text=True, check=False
    )
    assert again.returncode != 0 and "not overwritten" in again.stderr
    assert dict(line.split("=", 1) for line in target.read_text().splitlines() if not line.startswith("#")) == written


_COMPOSE_COMMAND = re.compile(
    r"docker compose (?:--profile \w+ )?(?:exec|run --rm|up(?: -d)?) (?P<service>[a-z]+)(?P<rest>.*)"
)


@pytest.mark.parametrize("document", ["README.md", "docs/AUDIT.md", "docker-compose.yml"])
def test_the_compose_commands_the_docs_give_name_its_services_and_database(document: str) -> None:
    commands = [
        match for line in (ROOT / document).read_text().splitlines() if (match := _COMPOSE_COMMAND.search(line))
    ]
    assert commands
    database = stack.services()["postgres"]["environment"]["POSTGRES_DB"]
    for command in commands:
        assert command["service"] in stack.services(), command[0]
        if named := re.search(r" -d (\w+)", command["rest"]):
            assert named[1] == database, command[0]
