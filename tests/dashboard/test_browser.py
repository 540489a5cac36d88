"""The dashboard served by Streamlit, as ``llm-ledger dashboard`` serves it, and opened in headless
Chromium: each page loads without an error element, and a screenshot of each is kept as an artifact.

Chromium and its driver are Debian packages (``.ci/run`` installs them). Without them these tests fail,
saying how to install them: a browser test that skips proves nothing.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver  # Chromium's driver: it has get_log
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from llm_ledger.dashboard import PAGES as PAGE_TITLES
from llm_ledger.dashboard import streamlit_command
from llm_ledger.events import Event
from llm_ledger.store import EventStore, migrate
from tests.dashboard.apptest import PAGES
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.ledger import EXECUTION_ENDS, FAST, answered_by, moved_back, run
from tests.dashboard.served import stop, wait_until_up
from tests.projections.projecting import project_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
PAGE_SECONDS = 120
"""How long a page may take to reach the state waited for: a hang detector, not a measurement (the slowest
page took 22 s with both cores busy, load 12)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def dashboard_url(populated_ledger: PopulatedLedger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard of the known ledger, served on a free port of 127.0.0.1 for the whole module."""
    with _served(populated_ledger.url, tmp_path_factory.mktemp("dashboard") / "streamlit.log") as base:
        yield base


@contextmanager
def _served(database_url: str, log_path: Path) -> Iterator[str]:
    """The dashboard of ``database_url`` served as ``llm-ledger dashboard`` serves it, until the block ends."""
    port = _free_port()
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("LLM_LEDGER_DASHBOARD_TENANT", "LLM_LEDGER_TRACE_URL", "LLM_LEDGER_JAEGER_URL")
    }
    environment |= {"LLM_LEDGER_DATABASE_URL": database_url, "AGNO_TELEMETRY": "false"}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            streamlit_command(port, "127.0.0.1"), env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, f"{base}/_stcore/health", log_path)
        yield base
    finally:
        stop(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium driven through Debian's chromedriver (never a driver downloaded at run time)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"the browser tests need Chromium and its driver ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,2000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as environment:
        # Both paths are given, so Selenium Manager has nothing to look up; offline, it could not try.
        environment.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


WITHOUT_CHARTS = frozenset({"audit"})
"""Pages that draw tables and text only: the rest must show at least one chart."""


def _rendered(driver: WebDriver, title: str, *, has_charts: bool) -> bool:
    """The page's heading is there, the script has finished and every visible chart has been drawn."""
    headings = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stHeading"]')
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    charts = [c for c in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]') if c.is_displayed()]
    drawn = all(chart.find_elements(By.CSS_SELECTOR, "canvas, svg") for chart in charts)
    return any(title in heading.text for heading in headings) and not running and bool(charts) == has_charts and drawn


@pytest.mark.parametrize("page", PAGES)
def test_each_page_loads_in_a_browser_without_an_error(
    page: str, dashboard_url: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    query = {"page": page, "tenant": ledger.tenant, "window": "1d", "session": ledger.traced_session}

    browser.get_log("browser")  # what earlier pages logged
    browser.get(f"{dashboard_url}/?{urlencode(query)}")
    has_charts = page not in WITHOUT_CHARTS
    WebDriverWait(browser, PAGE_SECONDS).until(
        lambda driver: _rendered(driver, PAGE_TITLES[page], has_charts=has_charts)
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / f"{page}.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    exceptions = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')
    assert not exceptions, [element.text for element in exceptions]
    assert not errors, [element.text for element in errors]
    # A chart Vega refuses to draw leaves no element behind, only this (e.g. "Illegal property: then").
    script_errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not script_errors


def test_the_tools_page_and_the_session_show_the_tool_calls_in_a_browser(
    dashboard_url: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    for page in ("tools", "sessions"):
        query = {"page": page, "tenant": ledger.tenant, "window": "1d", "session": ledger.tools_session}
        browser.get(f"{dashboard_url}/?{urlencode(query)}")
        WebDriverWait(browser, PAGE_SECONDS).until(
            lambda driver: _rendered(driver, PAGE_TITLES[page], has_charts=True)  # noqa: B023 - waited for here
        )
        text = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"{page}-tool-calls.png"))
        # The fixture's session ran two tools, one of which failed (tables are drawn on a canvas: the
        # figures are read from the metric tiles and captions).
        expected = "Tool calls\n2\nFailed\n1" if page == "tools" else "2 tool executions, 1 failed"
        assert expected in text, text


_X_AXIS_LABELS = '[data-testid="stVegaLiteChart"] g[aria-label^="X-axis"] .role-axis-label text'
_UTC_24_HOUR = re.compile(r"\d{2}:\d{2}|[A-Z][a-z]{2} \d{2}")


def _time_labels(driver: WebDriver, url: str, zone: str) -> list[str]:
    """The overview chart's time-axis labels, as a browser in ``zone`` draws them."""
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
    driver.get(url)
    WebDriverWait(driver, PAGE_SECONDS).until(
        lambda d: (
            _rendered(d, PAGE_TITLES["overview"], has_charts=True)
            and bool(d.find_elements(By.CSS_SELECTOR, _X_AXIS_LABELS))
        )
    )
    assert driver.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone") == zone
    return [
        element.get_attribute("textContent") or "" for element in driver.find_elements(By.CSS_SELECTOR, _X_AXIS_LABELS)
    ]


def test_the_time_axis_reads_utc_on_a_24_hour_clock_in_a_browser_in_new_york(
    dashboard_url: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    # Vega labels a time axis in the browser's zone, on a 12-hour clock ("03 PM"), by default; every caption
    # and table of the dashboard says UTC. Drawn in New York and in UTC, the labels must be the same.
    query = {"page": "overview", "tenant": populated_ledger.ledger.tenant, "window": "1d"}
    url = f"{dashboard_url}/?{urlencode(query)}"
    try:
        in_new_york = _time_labels(browser, url, "America/New_York")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "overview-new-york.png"))
        in_utc = _time_labels(browser, url, "UTC")
    finally:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})
    assert in_new_york, "the overview's chart has time labels"
    assert all(_UTC_24_HOUR.fullmatch(label) for label in in_new_york), in_new_york
    assert in_new_york == in_utc


def test_the_execution_page_shows_its_stream_and_tool_calls_in_a_browser(
    dashboard_url: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    execution_id = next(
        str(e.stream_id)
        for e in ledger.events
        if e.session_id == ledger.tools_session and e.event_type == "ExecutionStarted"
    )
    query = {"page": "execution", "tenant": ledger.tenant, "window": "1d", "execution": execution_id}

    browser.get(f"{dashboard_url}/?{urlencode(query)}")
    WebDriverWait(browser, PAGE_SECONDS).until(
        lambda driver: _rendered(driver, PAGE_TITLES["execution"], has_charts=True)
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "execution-tool-calls.png"))
    text = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    assert "Integrity: intact." in text, text
    assert f"events of stream {execution_id}, in stream order" in text, text
    assert "Tool calls" in text, text
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')


def test_a_filter_in_the_link_keeps_the_figures_to_it_in_a_browser(
    dashboard_url: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    query = {"page": "overview", "tenant": ledger.tenant, "window": "1d", "step": "classify", "model": FAST}
    kept = [
        e
        for e in ledger.events
        if e.tenant_id == ledger.tenant
        and e.event_type in EXECUTION_ENDS
        and e.step == "classify"
        and answered_by(e) == FAST
    ]

    browser.get(f"{dashboard_url}/?{urlencode(query)}")
    WebDriverWait(browser, PAGE_SECONDS).until(
        lambda driver: _rendered(driver, PAGE_TITLES["overview"], has_charts=True)
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "overview-filtered.png"))
    text = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    assert f"Executions\n{len(kept)}\n" in text, text
    assert "Filtered to step classify · model mock/fast" in text
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentWarning"]')
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text
    assert "classify" in sidebar and FAST in sidebar


IDLE_TENANT = "idle-hour"
BUSY_HOURS_AGO = (6, 5, 4, 2, 1)
"""Hours (before now) with executions: the hour three hours ago is idle, in the middle of the data."""


@pytest.fixture(scope="module")
def idle_hour_url(
    _create_postgres_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The dashboard of a ledger whose only tenant ran executions in ``BUSY_HOURS_AGO``, none in between."""
    url = _create_postgres_database()
    migrate.upgrade(url)
    events: list[Event] = []
    for hours in BUSY_HOURS_AGO:
        executions = run(3, tenant=IDLE_TENANT, session=f"idle-{hours}", chain=[FAST], step="classify")
        events.extend(moved_back(executions, timedelta(hours=hours)))
    store = EventStore(url)
    store.append(events)
    store.close()
    project_url(url)
    with _served(url, tmp_path_factory.mktemp("idle-hour") / "streamlit.log") as base:
        yield base


def _line_paths(driver: WebDriver) -> list[str]:
    """The outlines of the lines of the page's first visible chart, as SVG path data."""
    chart = next(
        c for c in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]') if c.is_displayed()
    )
    return [path.get_attribute("d") or "" for path in chart.find_elements(By.CSS_SELECTOR, "g.mark-line path")]


def test_an_idle_hour_in_the_middle_of_the_data_breaks_the_latency_line_in_a_browser(
    idle_hour_url: str, browser: WebDriver
) -> None:
    query = {"page": "latency", "tenant": IDLE_TENANT, "window": "1d"}

    browser.get(f"{idle_hour_url}/?{urlencode(query)}")
    WebDriverWait(browser, PAGE_SECONDS).until(
        lambda driver: _rendered(driver, PAGE_TITLES["latency"], has_charts=True) and bool(_line_paths(driver))
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "latency-idle-hour.png"))
    paths = _line_paths(browser)
    # One line per percentile of the one step; each is drawn in two pieces, a "moveto" starting each: the
    # hours before the idle one, and those after it. A line drawn across the idle hour would be one piece.
    assert len(paths) == 3, paths
    assert [path.count("M") for path in paths] == [2, 2, 2], paths
