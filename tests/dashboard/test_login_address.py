"""``llm-ledger dashboard`` without an identity provider: it listens on 127.0.0.1 alone and says so, on the
console and on the page; another address is refused unless ``--insecure-no-login`` is given; a login
configured by halves is refused naming what is missing. The real command, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import websocket
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from llm_ledger.dashboard import PAGES
from tests.dashboard import test_browser
from tests.dashboard.apptest import open_dashboard
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.served import stop, wait_until_up
from tests.dashboard.test_browser import ARTIFACTS, PAGE_SECONDS, _free_port, _rendered

browser = test_browser.browser
LLM_LEDGER = str(Path(sys.executable).with_name("llm-ledger"))
_LISTEN = "0A"
"""The state of a listening socket in /proc/net/tcp."""


def _environment(**variables: str) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LLM_LEDGER_")}
    return environment | {"AGNO_TELEMETRY": "false", **variables}


def _dashboard(*arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLM_LEDGER, "dashboard", *arguments],
        env=_environment(**variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port``, as the kernel lists them (hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == _LISTEN and int(hex_port, 16) == port:
                found.add(address)
    return found


LOOPBACK_HEX = "0100007F"
"""127.0.0.1 as /proc/net/tcp writes it (little-endian)."""


def test_another_address_without_a_login_is_refused_saying_how_to_serve_it(empty_ledger_url: str) -> None:
    port = _free_port()
    done = _dashboard("--address", "0.0.0.0", "--port", str(port), "--database-url", empty_ledger_url)

    assert done.returncode == 2, done.stderr
    assert "llm-ledger: the dashboard may not listen on --address 0.0.0.0" in done.stderr
    assert "LLM_LEDGER_OIDC_ISSUER" in done.stderr and "--insecure-no-login" in done.stderr
    assert "Traceback" not in done.stderr
    assert _listening_addresses(port) == set()


def test_a_login_configured_by_halves_is_refused_naming_what_is_missing(empty_ledger_url: str) -> None:
    arguments = ("--port", str(_free_port()), "--database-url", empty_ledger_url)
    done = _dashboard(*arguments, LLM_LEDGER_OIDC_ISSUER="https://id.example")

    assert done.returncode == 2, done.stderr
    assert "LLM_LEDGER_OIDC_CLIENT_ID, LLM_LEDGER_OIDC_CLIENT_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def local_dashboard(
    populated_ledger: PopulatedLedger, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """``llm-ledger dashboard`` as a person first runs it: no login configured, no --address."""
    port = _free_port()
    log = tmp_path_factory.mktemp("local-dashboard") / "dashboard.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LLM_LEDGER, "dashboard", "--port", str(port), "--database-url", populated_ledger.url],
            env=_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/_stcore/health", log)
        yield url, log
    finally:
        stop(process)


def test_without_a_login_it_listens_on_127_0_0_1_alone_and_says_so(local_dashboard: tuple[str, Path]) -> None:
    url, log = local_dashboard
    port = int(url.rsplit(":", 1)[1])

    assert _listening_addresses(port) == {LOOPBACK_HEX}
    assert (
        f"llm-ledger dashboard: http://127.0.0.1:{port} (no login, LLM_LEDGER_OIDC_ISSUER is not set: served to this"
        " machine only)"
    ) in log.read_text()


def test_without_a_login_the_page_says_it_is_served_to_this_machine_only(
    local_dashboard: tuple[str, Path], browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    url, _ = local_dashboard
    browser.delete_all_cookies()
    browser.get(f"{url}/?{urlencode({'tenant': populated_ledger.ledger.tenant, 'window': '1d'})}")
    note = "No login (LLM_LEDGER_OIDC_ISSUER is not set): served on 127.0.0.1, to this machine only."
    sidebar = '[data-testid="stSidebar"]'
    WebDriverWait(browser, PAGE_SECONDS).until(
        lambda d: (
            bool(d.find_elements(By.CSS_SELECTOR, sidebar)) and note in d.find_element(By.CSS_SELECTOR, sidebar).text
        )
    )
    WebDriverWait(browser, PAGE_SECONDS).until(lambda d: _rendered(d, PAGES["overview"], has_charts=True))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "no-login-note.png"))


def test_served_elsewhere_without_a_login_the_page_says_whoever_reaches_it_sees_every_tenant(
    populated_ledger: PopulatedLedger, dashboard_env: Callable[..., None]
) -> None:
    # AppTest's server has no address: as Streamlit run by hand, listening on every one.
    dashboard_env(populated_ledger.url)
    app = open_dashboard(tenant=populated_ledger.ledger.tenant, window="1d")

    captions = [caption.value for caption in app.sidebar.caption]
    assert "No login (LLM_LEDGER_OIDC_ISSUER is not set): whoever reaches this page sees every tenant." in captions

    dashboard_env(populated_ledger.url, tenant=populated_ledger.ledger.tenant)
    app = open_dashboard(window="1d")
    captions = [caption.value for caption in app.sidebar.caption]
    assert "No login (LLM_LEDGER_OIDC_ISSUER is not set): whoever reaches this page sees this tenant." in captions


def test_a_page_rebound_to_this_machine_cannot_open_the_dashboards_stream(local_dashboard: tuple[str, Path]) -> None:
    # DNS rebinding: a page from rebound.example whose name now resolves to 127.0.0.1 sends its own Host.
    stream = local_dashboard[0].replace("http://", "ws://") + "/_stcore/stream"

    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(stream, host="rebound.example", subprotocols=["streamlit"], timeout=10)
    for host in ("127.0.0.1", "localhost"):
        port = stream.split(":")[2].split("/")[0]
        websocket.create_connection(stream, host=f"{host}:{port}", subprotocols=["streamlit"], timeout=10).close()
