"""``llm-ledger dashboard``: run the Streamlit app with nothing phoning home."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from llm_ledger.dashboard.trace_links import TraceLinkTemplateError, deprecation_notice, trace_links_from_env
from llm_ledger.environment import LLM_LEDGER_DATABASE_URL, child_environment

APP = Path(__file__).resolve().parent / "app.py"

# Streamlit collects usage statistics unless told not to; the ledger sends nothing anywhere.
STREAMLIT_FLAGS = (
    "--browser.gatherUsageStats=false",
    "--server.headless=true",
    "--server.fileWatcherType=none",
    "--global.developmentMode=false",
    # Operators view figures; Streamlit's "Deploy" button and developer menu are not for them.
    "--client.toolbarMode=viewer",
)


def streamlit_command(port: int, address: str) -> list[str]:
    """The command that serves the dashboard (also what the browser tests start)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        f"--server.port={port}",
        f"--server.address={address}",
        *STREAMLIT_FLAGS,
    ]


def run_dashboard(database_url: str | None, port: int, address: str) -> int:
    # Whether it is installed, without importing it (0.2 s): this process is replaced by Streamlit's own.
    if importlib.util.find_spec("streamlit") is None:
        print(
            "llm-ledger: the dashboard needs Streamlit: pip install 'llm-ledger[dashboard]'",
            file=sys.stderr,
        )
        return 2
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
    print(f"llm-ledger dashboard: http://{address}:{port}", file=sys.stderr)
    command = streamlit_command(port, address)
    os.execvpe(command[0], command, environment)
