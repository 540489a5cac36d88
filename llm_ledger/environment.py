"""Every environment variable llm-ledger reads, declared once, and the one way to read it.

A leaf module: it imports nothing of the package, so every layer may use it. Each module that is
configured by the environment reads its variables here (``LLM_LEDGER_HOME.get(environ)``) and keeps its
own parsing and error messages; a test fails on any other read of ``os.environ`` in the package, and
another on a variable of this registry that docs/ARCHITECTURE.md's table does not list as it is here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its name, the default used when it is unset or empty, what it does,
    and the module(s) that read it."""

    name: str
    meaning: str
    read_in: str
    default: str | None = None
    """Applied by ``get``: what an unset or empty variable stands for."""
    default_note: str | None = None
    """A default the reading module derives itself (from another variable, say), as documented."""

    def get(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value in ``environ`` (the process's environment when None); the default when unset or empty."""
        value = (os.environ if environ is None else environ).get(self.name)
        return value if value else self.default

    def value(self, environ: Mapping[str, str] | None = None) -> str:
        """``get`` of a variable declared with a default, which is never None."""
        value = self.get(environ)
        if value is None:
            raise LookupError(f"{self.name} is declared without a default")
        return value

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the variable is present, even empty (as the OpenTelemetry SDK tells it)."""
        return self.name in (os.environ if environ is None else environ)

    def is_given(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the variable is set to a value of its own: present and not empty (an empty one stands for
        its default, as ``get`` reads it)."""
        return bool((os.environ if environ is None else environ).get(self.name))

    def setdefault(self, value: str) -> None:
        """Set it in the process's environment unless it is set already (for libraries that read it)."""
        os.environ.setdefault(self.name, value)

    @contextlib.contextmanager
    def overridden(self, value: str) -> Iterator[None]:
        """Set it in the process's environment for the block, then restore what was there (or nothing)."""
        previous = os.environ.get(self.name)
        os.environ[self.name] = value
        try:
            yield
        finally:
            if previous is None:
                del os.environ[self.name]
            else:
                os.environ[self.name] = previous


_SECRETS_NO_CHILD_NEEDS = ("LLM_LEDGER_DIGEST_KEY", "LLM_LEDGER_SEAL_KEY")
"""The package's children (the writer process, which is handed payloads already digested; the dashboard's
Streamlit server) neither digest nor seal: they are not given these secrets."""


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment for a child process: this process's without the secrets it does not need, with
    ``overrides`` set."""
    environment = {name: value for name, value in os.environ.items() if name not in _SECRETS_NO_CHILD_NEEDS}
    return dict(environment, **overrides)


# The ledger itself.
LLM_LEDGER_HOME = Variable(
    "LLM_LEDGER_HOME",
    "the directory of the embedded ledger and of the journal when the two variables below are unset",
    "llm_ledger/store/settings.py",
    default="~/.llm-ledger",
)
LLM_LEDGER_DATABASE_URL = Variable(
    "LLM_LEDGER_DATABASE_URL",
    "the ledger: a `postgresql://` or `sqlite:///` URL",
    "llm_ledger/store/settings.py, llm_ledger/executor/digest_secret.py",
    default_note="`sqlite:///$LLM_LEDGER_HOME/ledger.db`",
)
LLM_LEDGER_SPOOL_DIR = Variable(
    "LLM_LEDGER_SPOOL_DIR",
    "the buffered writer's journal (each process journals in a subdirectory of its own)",
    "llm_ledger/store/settings.py",
    default_note="`$LLM_LEDGER_HOME/spool`",
)
LLM_LEDGER_DURABILITY = Variable(
    "LLM_LEDGER_DURABILITY",
    "`journal`: a call returns once its events are journaled; `buffered`: at once",
    "llm_ledger/store/settings.py",
    default="journal",
)
LLM_LEDGER_WRITER = Variable(
    "LLM_LEDGER_WRITER",
    "`process`: events are sealed, journaled and stored by a writer process the library starts; `thread`: by"
    " threads of the application's own process",
    "llm_ledger/store/settings.py",
    default_note="`process` for a PostgreSQL ledger, `thread` for SQLite",
)

# Providers: arguments to LLMExecutor win over these.


def _provider(prefix: str, label: str) -> tuple[Variable, Variable]:
    """A provider's API key and endpoint, read by the routing."""
    return (
        Variable(f"{prefix}_API_KEY", f"{label}'s API key", "llm_ledger/executor/routing.py"),
        Variable(
            f"{prefix}_BASE_URL",
            f"{label}'s endpoint",
            "llm_ledger/executor/routing.py",
            default_note="the provider's public endpoint",
        ),
    )


OPENROUTER_API_KEY, OPENROUTER_BASE_URL = _provider("OPENROUTER", "OpenRouter")
ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL = _provider("ANTHROPIC", "Anthropic")
OPENAI_API_KEY, OPENAI_BASE_URL = _provider("OPENAI", "OpenAI")
GROQ_API_KEY, GROQ_BASE_URL = _provider("GROQ", "Groq")
AGNO_TELEMETRY = Variable(
    "AGNO_TELEMETRY",
    "Agno's own usage telemetry; set to `false` when unset, so that nothing phones home",
    "llm_ledger/executor/agno_client.py, llm_ledger/agno/__init__.py, llm_ledger/cli.py",
    default_note="`false` (set by the package)",
)

# Traces and metrics: the subset of the standard OTEL_* variables the package reads itself (the
# OpenTelemetry SDK and exporters read the others, e.g. OTEL_TRACES_SAMPLER, themselves).
OTEL_SDK_DISABLED = Variable("OTEL_SDK_DISABLED", "`true` exports nothing", "llm_ledger/telemetry/setup.py")
OTEL_TRACES_EXPORTER = Variable(
    "OTEL_TRACES_EXPORTER", "`none` exports no traces", "llm_ledger/telemetry/setup.py", default="otlp"
)
OTEL_METRICS_EXPORTER = Variable(
    "OTEL_METRICS_EXPORTER", "`none` exports no metrics", "llm_ledger/telemetry/setup.py", default="otlp"
)
OTEL_EXPORTER_OTLP_ENDPOINT = Variable(
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "the OTLP collector; without an endpoint nothing is exported and no span is made",
    "llm_ledger/telemetry/setup.py",
)
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = Variable(
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "the collector of traces, over the one above",
    "llm_ledger/telemetry/setup.py",
)
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = Variable(
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "the collector of metrics, over the one above",
    "llm_ledger/telemetry/setup.py",
)
OTEL_EXPORTER_OTLP_PROTOCOL = Variable(
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "`grpc` or `http/protobuf`",
    "llm_ledger/telemetry/setup.py",
    default="grpc",
)
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = Variable(
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "the protocol of traces, over the one above",
    "llm_ledger/telemetry/setup.py",
)
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = Variable(
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "the protocol of metrics, over the one above",
    "llm_ledger/telemetry/setup.py",
)
OTEL_EXPORTER_OTLP_TIMEOUT = Variable(
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "the exporters' timeout, read by the exporters; when unset the package passes its own, shorter one",
    "llm_ledger/telemetry/setup.py",
    default_note="the package's `EXPORT_TIMEOUT_SECONDS`",
)
OTEL_SERVICE_NAME = Variable(
    "OTEL_SERVICE_NAME",
    "the service name on spans and metrics",
    "llm_ledger/telemetry/setup.py",
    default_note="`llm-ledger`, unless `OTEL_RESOURCE_ATTRIBUTES` names one",
)
OTEL_RESOURCE_ATTRIBUTES = Variable(
    "OTEL_RESOURCE_ATTRIBUTES",
    "resource attributes of spans; a `service.name=` in it names the service",
    "llm_ledger/telemetry/setup.py",
)

# Projections and the dashboard.
LLM_LEDGER_PRICES = Variable(
    "LLM_LEDGER_PRICES",
    "a TOML price table for the projected costs, over the genai-prices catalogue for the models it names",
    "llm_ledger/projections/prices.py",
)
LLM_LEDGER_DASHBOARD_TENANT = Variable(
    "LLM_LEDGER_DASHBOARD_TENANT",
    "binds the dashboard's viewer to one tenant",
    "llm_ledger/dashboard/settings.py",
)
LLM_LEDGER_TRACE_URL = Variable(
    "LLM_LEDGER_TRACE_URL",
    "where the dashboard's trace links point: a URL template with `{trace_id}` (Jaeger's, Phoenix's, Grafana's)",
    "llm_ledger/dashboard/trace_links.py",
    default_note="`$LLM_LEDGER_JAEGER_URL/trace/{trace_id}`",
)
LLM_LEDGER_JAEGER_URL = Variable(
    "LLM_LEDGER_JAEGER_URL",
    "deprecated: Jaeger's base URL, read only when `LLM_LEDGER_TRACE_URL` is unset",
    "llm_ledger/dashboard/trace_links.py",
    default="http://localhost:16686",
)
LLM_LEDGER_DASHBOARD_CATCH_UP = Variable(
    "LLM_LEDGER_DASHBOARD_CATCH_UP",
    "`false` (or `0`, `no`, `off`) stops the dashboard catching the projector up before each page",
    "llm_ledger/dashboard/settings.py",
    default="true",
)
# Who may look: the dashboard's OpenID Connect login (all unset: no login, and 127.0.0.1 only).
LLM_LEDGER_OIDC_ISSUER = Variable(
    "LLM_LEDGER_OIDC_ISSUER",
    "the OpenID Connect provider the dashboard logs people in with (its discovery document is"
    " `<issuer>/.well-known/openid-configuration`); set, the four below are required",
    "llm_ledger/dashboard/login.py",
)
LLM_LEDGER_OIDC_CLIENT_ID = Variable(
    "LLM_LEDGER_OIDC_CLIENT_ID", "the dashboard's client id at the provider", "llm_ledger/dashboard/login.py"
)
LLM_LEDGER_OIDC_CLIENT_SECRET = Variable(
    "LLM_LEDGER_OIDC_CLIENT_SECRET", "the dashboard's client secret at the provider", "llm_ledger/dashboard/login.py"
)
LLM_LEDGER_OIDC_REDIRECT_URI = Variable(
    "LLM_LEDGER_OIDC_REDIRECT_URI",
    "the dashboard's address as browsers reach it, path `/oauth2callback`, `https` unless loopback",
    "llm_ledger/dashboard/login.py",
)
LLM_LEDGER_OIDC_COOKIE_SECRET = Variable(
    "LLM_LEDGER_OIDC_COOKIE_SECRET",
    "signs the login cookie (at least 32 characters, random)",
    "llm_ledger/dashboard/login.py",
)
LLM_LEDGER_OIDC_TENANT_CLAIM = Variable(
    "LLM_LEDGER_OIDC_TENANT_CLAIM",
    "the ID token claim naming the one tenant a person may see",
    "llm_ledger/dashboard/login.py",
    default="tenant",
)
LLM_LEDGER_OIDC_OPERATORS_CLAIM = Variable(
    "LLM_LEDGER_OIDC_OPERATORS_CLAIM",
    "the ID token claim listing a person's groups",
    "llm_ledger/dashboard/login.py",
    default="groups",
)
LLM_LEDGER_OIDC_OPERATORS_GROUP = Variable(
    "LLM_LEDGER_OIDC_OPERATORS_GROUP",
    "the group (in that claim) whose members see every tenant",
    "llm_ledger/dashboard/login.py",
    default="llm-ledger-operators",
)

# Audit.
LLM_LEDGER_SEAL_KEY = Variable(
    "LLM_LEDGER_SEAL_KEY",
    "the Ed25519 private key that signs seals (base64, PEM, or a PEM file's path)",
    "llm_ledger/audit/keys.py",
)
LLM_LEDGER_SEAL_PUBLIC_KEY = Variable(
    "LLM_LEDGER_SEAL_PUBLIC_KEY",
    "the public key `audit verify` holds the seals' signatures to (or `--public-key`)",
    "llm_ledger/audit/keys.py",
)
LLM_LEDGER_DIGEST_KEY = Variable(
    "LLM_LEDGER_DIGEST_KEY",
    "the secret every tenant's digest key is derived from (base64 of 32 bytes, or a file's path)",
    "llm_ledger/executor/digest_secret.py",
    default_note="`$LLM_LEDGER_HOME/digest.key`, made on first use, for an SQLite ledger only",
)
LLM_LEDGER_SEAL_WITNESS = Variable(
    "LLM_LEDGER_SEAL_WITNESS",
    "the sealer's witness directory (or `--witness`)",
    "llm_ledger/cli.py",
)
LLM_LEDGER_VERIFY_WITNESS = Variable(
    "LLM_LEDGER_VERIFY_WITNESS",
    "the witness `audit verify` checks the seals against (or `--witness`)",
    "llm_ledger/cli.py",
)
LLM_LEDGER_VERIFY_STATE = Variable(
    "LLM_LEDGER_VERIFY_STATE",
    "where `audit verify` keeps the heads of its earlier runs (or `--state`)",
    "llm_ledger/cli.py",
)

VARIABLES: dict[str, Variable] = {
    value.name: value for value in list(globals().values()) if isinstance(value, Variable)
}
"""Every variable above, by name, in the order declared."""


def variable(name: str) -> Variable:
    """The declared variable called ``name``; a ``KeyError`` for a name this registry does not declare."""
    try:
        return VARIABLES[name]
    except KeyError:
        raise KeyError(f"{name} is not declared in llm_ledger.environment") from None
