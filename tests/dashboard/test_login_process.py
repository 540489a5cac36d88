"""``llm-ledger dashboard`` with a login, as a process: whichever signal stops a service (SIGQUIT too)
reaches Streamlit, and the login's secrets are gone once it has exited."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.dashboard.served import wait_until_up
from tests.dashboard.test_browser import _free_port
from tests.dashboard.test_login_address import LLM_LEDGER, _environment

PRIVATE_PREFIX = "llm-ledger-dashboard-"


@pytest.mark.parametrize("stopping", [signal.SIGTERM, signal.SIGQUIT])
def test_a_stopping_signal_reaches_streamlit_and_the_secrets_are_removed(
    stopping: signal.Signals, empty_ledger_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    private_parent = tmp_path / "tmp"
    private_parent.mkdir()
    url = f"http://127.0.0.1:{port}"
    login = {
        "LLM_LEDGER_OIDC_ISSUER": "https://id.example",
        "LLM_LEDGER_OIDC_CLIENT_ID": "llm-ledger",
        "LLM_LEDGER_OIDC_CLIENT_SECRET": "s3cret",
        "LLM_LEDGER_OIDC_REDIRECT_URI": f"{url}/oauth2callback",
        "LLM_LEDGER_OIDC_COOKIE_SECRET": "c" * 32,
    }
    log = tmp_path / "dashboard.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LLM_LEDGER, "dashboard", "--port", str(port), "--database-url", empty_ledger_url],
            env=_environment(TMPDIR=str(private_parent), **login),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Streamlit too, so that nothing outlives the test whatever happens
        )
    try:
        wait_until_up(process, f"{url}/_stcore/health", log)
        assert [entry.name.startswith(PRIVATE_PREFIX) for entry in private_parent.iterdir()] == [True]

        process.send_signal(stopping)
        process.wait(30)

        assert [entry.name for entry in private_parent.iterdir() if entry.name.startswith(PRIVATE_PREFIX)] == []
        assert process.returncode != -stopping, log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
