"""The compose stack's database side, for real: the postgres service's init script run against the local
PostgreSQL with the environment docker-compose.yml gives it, then each application service's command run
with the real CLI as the login and with the environment that service gets."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.deploy.compose import ROOT, service_environment, services
from tests.store.conftest import (  # noqa: F401  (fixtures, registered here by import)
    _create_postgres_database,
    _postgres_server,
)

LOGIN_SCRIPT = ROOT / "deploy" / "postgres" / "initdb.d" / "10-ledger-logins.sh"
LOGIN_SQL = ROOT / "deploy" / "postgres" / "ledger-logins.sql"
# The services of the init script, by the variables' middle word (LEDGER_<SERVICE>_LOGIN).
LOGIN_SERVICES = ("migrate", "writer", "projector", "sealer", "dashboard", "auditor", "demo", "retention", "eraser")
LLM_LEDGER = str(Path(sys.executable).with_name("llm-ledger"))
# Where the image's traces would go: a port nothing listens on (the exporter's failures cost nothing).
NO_COLLECTOR = "http://127.0.0.1:9"
IMAGE_HOME = "/var/lib/llm-ledger"
"""LLM_LEDGER_HOME in the image (Dockerfile): the volumes of docker-compose.yml are mounted below it."""


@dataclass
class Stack:
    """One database of the local server set up as the compose stack's is, and the compose variables
    (random login names and passwords) it was set up with."""

    superuser_url: str
    variables: dict[str, str]
    home: Path
    running: list[subprocess.Popen[str]] = field(default_factory=list)

    def login(self, service: str) -> str:
        return self.variables[f"LEDGER_{service.upper()}_LOGIN"]

    def engine(self) -> Engine:
        return create_engine(self.superuser_url, poolclass=NullPool)

    def environment(self, service: str) -> dict[str, str]:
        """What the compose service ``service`` gets, pointed at the test's server and database instead
        of the compose network's ``postgres`` and ``jaeger``; nothing of the test process's own."""
        env = service_environment(service, self.variables)
        server = make_url(self.superuser_url)
        url = make_url(env["LLM_LEDGER_DATABASE_URL"])
        assert (url.host, url.port, url.database) == ("postgres", 5432, "ledger"), url
        env["LLM_LEDGER_DATABASE_URL"] = url.set(
            host=server.host, port=server.port, database=server.database
        ).render_as_string(hide_password=False)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = NO_COLLECTOR
        # As the image's ENV sets them (Dockerfile).
        env |= {"LLM_LEDGER_HOME": str(self.home / service), "PYTHONUNBUFFERED": "1"}
        # The image's volumes (the witness, verify's state) are shared by the services that mount them.
        for name, value in env.items():
            if value.startswith(f"{IMAGE_HOME}/"):
                # (by text: a trailing slash says "a directory", as the mounted volume is)
                env[name] = f"{self.home / 'volumes'}/{value.removeprefix(f'{IMAGE_HOME}/')}"
        # The code of this tree, as the image installs it (the venv's llm-ledger may be installed from another).
        return {"PATH": os.environ["PATH"], "HOME": str(self.home), "PYTHONPATH": str(ROOT), **env}

    def command(self, service: str) -> list[str]:
        command: list[str] = services()[service]["command"]
        return [LLM_LEDGER, *command]

    def run(
        self, service: str, command: Sequence[str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command or self.command(service)),
            env=self.environment(service),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, service: str, command: Sequence[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            list(command),
            env=self.environment(service),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.running.append(process)
        return process

    def connected_logins(self) -> set[str]:
        """The logins connected to the stack's database, but the superuser the test itself uses."""
        with self.engine().connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT DISTINCT usename FROM pg_stat_activity"
                    " WHERE datname = current_database() AND usename <> current_user"
                )
            )
            return {row[0] for row in rows}


def compose_variables() -> dict[str, str]:
    """What an operator puts in .env: every login renamed to a random name (roles are cluster-wide) and
    every password and the digest secret random."""
    suffix = uuid.uuid4().hex[:8]
    variables = {"POSTGRES_PASSWORD": secrets.token_urlsafe(18)}
    for service in LOGIN_SERVICES:
        variables[f"LEDGER_{service.upper()}_LOGIN"] = f"llm_ledger_test_{service}_{suffix}"
        # Characters a URL would need escaped: the passwords travel as PGPASSWORD.
        variables[f"LEDGER_{service.upper()}_PASSWORD"] = f"{secrets.token_urlsafe(12)}@:/%'\""
    variables["LLM_LEDGER_DIGEST_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    return variables


def run_login_script(
    superuser_url: str, variables: dict[str, str], **overrides: str
) -> subprocess.CompletedProcess[str]:
    """The postgres service's init script, as its image runs it: the service's environment (then
    ``overrides``), connected as the superuser to the new database."""
    server = make_url(superuser_url)
    env = {
        "PATH": os.environ["PATH"],
        **service_environment("postgres", variables),
        "POSTGRES_USER": server.username or "postgres",
        "POSTGRES_DB": server.database or "",
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "LEDGER_LOGINS_SQL": str(LOGIN_SQL),
        **({"PGPASSWORD": server.password} if server.password else {}),
        **overrides,
    }
    return subprocess.run([str(LOGIN_SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False)


def set_up_stack(create_database: Callable[[], str], home: Path, before: Callable[[str], None] | None = None) -> Stack:
    """A new database of the local server (``before`` does to it what a test needs first), set up by the
    postgres service's init script as the compose stack's is."""
    url = create_database()
    if before is not None:
        before(url)
    made = Stack(url, compose_variables(), home)
    done = run_login_script(url, made.variables)
    assert done.returncode == 0, done.stderr
    return made


def tear_down_stack(server: Engine, made: Stack) -> None:
    for process in made.running:
        if process.poll() is None:
            process.kill()
        process.communicate()
    database = make_url(made.superuser_url).database
    with server.connect() as connection:
        # The migrating login owns the database: drop it first, then the logins.
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": database}
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
        for service in LOGIN_SERVICES:
            connection.execute(text(f'DROP ROLE IF EXISTS "{made.login(service)}"'))


@pytest.fixture(scope="module")
def stack(
    _create_postgres_database: Callable[[], str],  # noqa: F811
    _postgres_server: Engine,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    made = set_up_stack(_create_postgres_database, tmp_path_factory.mktemp("stack"))
    yield made
    tear_down_stack(_postgres_server, made)
