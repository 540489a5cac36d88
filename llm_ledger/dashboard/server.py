"""``llm-ledger dashboard``: run the Streamlit app with nothing phoning home, behind a login or on this
machine only."""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from llm_ledger.dashboard.login import LoginConfigurationError, OidcSettings
from llm_ledger.dashboard.trace_links import TraceLinkTemplateError, deprecation_notice, trace_links_from_env
from llm_ledger.environment import LLM_LEDGER_DATABASE_URL, LLM_LEDGER_OIDC_ISSUER, child_environment

APP = Path(__file__).resolve().parent / "app.py"
INSECURE_FLAG = "--insecure-no-login"

# Streamlit collects usage statistics unless told not to; the ledger sends nothing anywhere.
STREAMLIT_FLAGS = (
    "--browser.gatherUsageStats=false",
    "--server.headless=true",
    "--server.fileWatcherType=none",
    "--global.developmentMode=false",
    # Operators view figures; Streamlit's "Deploy" button and developer menu are not for them.
    "--client.toolbarMode=viewer",
    # Identity comes from the login alone: a header mapping (STREAMLIT_SERVER_TRUSTED_USER_HEADERS left in
    # the environment) would let any client name its own claims, an operator's group among them.
    "--server.trustedUserHeaders={}",
)
LOGIN_FLAGS = (
    # A tenant's people see that the ledger failed, not its database address or a traceback (the server logs them).
    "--client.showErrorDetails=none",
)
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
"""What ``llm-ledger dashboard`` passes on to Streamlit, so that it removes the login's secrets when it exits."""
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The names this machine's browsers reach a dashboard without a login by."""


def streamlit_command(
    port: int, address: str, secrets_file: Path | None = None, oidc: OidcSettings | None = None
) -> list[str]:
    """The command that serves the dashboard (also what the browser tests start). ``secrets_file`` holds
    the login's ``[auth]`` section (``oidc``'s); given, it is the only secrets file Streamlit reads."""
    secrets = [f"--secrets.files={secrets_file}", *LOGIN_FLAGS] if secrets_file is not None else []
    hosts = [f"--server.allowedHosts={host}" for host in allowed_hosts(address, oidc)]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        f"--server.port={port}",
        f"--server.address={address}",
        *STREAMLIT_FLAGS,
        *hosts,
        *secrets,
    ]


def allowed_hosts(address: str, oidc: OidcSettings | None) -> list[str]:
    """The Host headers the dashboard's websocket accepts. Streamlit accepts any by default, so a web page
    whose name is rebound to 127.0.0.1 (DNS rebinding) could read the dashboard in a local user's browser;
    with a login, browsers come back to the redirect URI's host alone."""
    if oidc is not None:
        return [oidc.redirect_host]
    return list(dict.fromkeys((*LOCAL_HOSTS, address.strip("[]"))))


@functools.cache
def is_loopback(address: str) -> bool:
    """Whether every address ``address`` resolves to is this machine's own (127.0.0.0/8, ::1). Cached: the
    page asks on every run, and the address is the process's for its life."""
    try:
        found = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(entry[4][0]).is_loopback for entry in found)


def exposure_problem(address: str, oidc: OidcSettings | None, *, insecure_no_login: bool) -> str | None:
    """Why the dashboard may not listen on ``address``, or None. Without a login every visitor sees every
    tenant, so only this machine's own users may reach it unless the operator says, with the flag, that
    something in front of it (an authenticating proxy, a published port bound to 127.0.0.1) guards it."""
    if oidc is not None or insecure_no_login or is_loopback(address):
        return None
    return (
        f"without a login the dashboard shows every tenant to whoever reaches it, so it listens on 127.0.0.1"
        f" only: configure an OpenID Connect provider ({LLM_LEDGER_OIDC_ISSUER.name} and the rest, README"
        f' "Who may look"), or pass {INSECURE_FLAG} if something in front of it checks who comes in'
    )


def serving_note(address: str, port: int, oidc: OidcSettings | None) -> str:
    """The console's line on where the dashboard is served and who may see it."""
    where = f"llm-ledger dashboard: http://{address}:{port}"
    if oidc is not None:
        return f"{where} (login with OpenID Connect at {oidc.issuer})"
    if is_loopback(address):
        return f"{where} (no login, {LLM_LEDGER_OIDC_ISSUER.name} is not set: served to this machine only)"
    return f"{where} (no login, {INSECURE_FLAG}: whoever reaches {address}:{port} sees every tenant)"


def run_dashboard(database_url: str | None, port: int, address: str, *, insecure_no_login: bool = False) -> int:
    # Whether it is installed, without importing it (0.2 s): this process is replaced by Streamlit's own.
    if importlib.util.find_spec("streamlit") is None:
        print(
            "llm-ledger: the dashboard needs Streamlit: pip install 'llm-ledger[dashboard]'",
            file=sys.stderr,
        )
        return 2
    oidc = OidcSettings.from_env()
    problem = exposure_problem(address, oidc, insecure_no_login=insecure_no_login)
    if problem is not None:
        raise LoginConfigurationError(f"the dashboard may not listen on --address {address}: {problem}")
    if oidc is not None and importlib.util.find_spec("authlib") is None:
        raise LoginConfigurationError("the dashboard's login needs Authlib: pip install 'llm-ledger[dashboard]'")
    try:  # here, not only in the app: a mistyped template stops the command before Streamlit starts
        trace_links_from_env()
    except TraceLinkTemplateError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return 2
    notice = deprecation_notice()
    if notice is not None:
        print(f"llm-ledger: {notice}", file=sys.stderr)
    environment = child_environment(STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    if database_url:
        environment[LLM_LEDGER_DATABASE_URL.name] = database_url
    print(serving_note(address, port, oidc), file=sys.stderr)
    if oidc is None:
        command = streamlit_command(port, address)
        os.execvpe(command[0], command, environment)
    # The login's secrets live only while Streamlit runs: this process waits for it, then removes them
    # (an exec would leave them behind).
    with tempfile.TemporaryDirectory(prefix="llm-ledger-dashboard-") as private:
        return _serve(streamlit_command(port, address, oidc.write_secrets(Path(private)), oidc), environment)


def _serve(command: list[str], environment: dict[str, str]) -> int:
    """Run Streamlit until it exits, passing on the signals that stop a service (docker stop, Ctrl-C)."""
    started: list[subprocess.Popen[bytes]] = []
    stopped: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        # A signal before Streamlit is started is kept for it: the default handler would end this process
        # and leave the login's secrets behind.
        if started:
            started[0].send_signal(signum)
        else:
            stopped.append(signum)

    for stopping in STOPPING_SIGNALS:
        signal.signal(stopping, forward)
    child = subprocess.Popen(command, env=environment)
    started.append(child)
    for signum in stopped:
        child.send_signal(signum)
    code = child.wait()
    return code if code >= 0 else 128 - code
