"""The dashboard behind its OpenID Connect login, for real: ``llm-ledger dashboard`` with the
``LLM_LEDGER_OIDC_*`` variables, an OpenID Connect provider (``oidc-provider-mock``) on 127.0.0.1, a
PostgreSQL login that holds only the reader's and the auditor's roles (row-level security applies), and
headless Chromium going through the provider's login form. Screenshots are kept as artifacts.

The provider's predefined users are the cases: a person of tenant ``acme``, an operator (in the operators'
group) and a person whose identity names no tenant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from llm_ledger.dashboard import PAGES as PAGE_TITLES
from llm_ledger.store.scoping import AUDITOR_ROLE, READER_ROLE
from tests.dashboard import test_browser
from tests.dashboard.conftest import PopulatedLedger
from tests.dashboard.served import stop, wait_until_up
from tests.dashboard.test_browser import ARTIFACTS, PAGE_SECONDS, _free_port, _rendered

browser = test_browser.browser
LLM_LEDGER = str(Path(sys.executable).with_name("llm-ledger"))

TENANT_USER = "alice@acme.example"
OPERATOR = "olga@ops.example"
NOBODYS_USER = "nemo@nowhere.example"
USERS: dict[str, dict[str, object]] = {
    TENANT_USER: {"tenant": "acme", "groups": ["support"]},
    OPERATOR: {"groups": ["support", "llm-ledger-operators"]},
    NOBODYS_USER: {"groups": ["support"]},
}


@dataclass(frozen=True, slots=True)
class LoginDashboard:
    url: str
    private_parent: Path
    """The TMPDIR the dashboard made its private directory (the login's secrets) in."""


@pytest.fixture(scope="module")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``oidc-provider-mock`` on a free port of 127.0.0.1, with the predefined users above."""
    port = _free_port()
    users = [
        argument for sub, claims in USERS.items() for argument in ("--user-claims", json.dumps({"sub": sub, **claims}))
    ]
    log = tmp_path_factory.mktemp("identity-provider") / "provider.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port), *users],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{issuer}/.well-known/openid-configuration", log)
        yield issuer
    finally:
        stop(process)


@pytest.fixture(scope="module")
def login_dashboard(
    identity_provider: str,
    populated_ledger: PopulatedLedger,
    ledger_login: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LoginDashboard]:
    """``llm-ledger dashboard`` logging people in at the provider, reading as a login that may take the
    reader's role (a person's tenant, row-level security scoping it) and the auditor's (the operators)."""
    database_url = ledger_login(READER_ROLE, AUDITOR_ROLE, database=populated_ledger.url)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    private_parent = tmp_path_factory.mktemp("dashboard-tmp")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LLM_LEDGER_")}
    environment |= {
        "AGNO_TELEMETRY": "false",
        "TMPDIR": str(private_parent),
        "LLM_LEDGER_DATABASE_URL": database_url,
        "LLM_LEDGER_OIDC_ISSUER": identity_provider,
        "LLM_LEDGER_OIDC_CLIENT_ID": "llm-ledger-dashboard",
        "LLM_LEDGER_OIDC_CLIENT_SECRET": "the-dashboards-client-secret",
        "LLM_LEDGER_OIDC_REDIRECT_URI": f"{url}/oauth2callback",
        "LLM_LEDGER_OIDC_COOKIE_SECRET": "a-cookie-secret-of-the-tests-32-characters-or-more",
    }
    log = tmp_path_factory.mktemp("login-dashboard") / "dashboard.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LLM_LEDGER, "dashboard", "--port", str(port)], env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(process, f"{url}/_stcore/health", log)
        yield LoginDashboard(url, private_parent)
    finally:
        stop(process)
    assert process.returncode is not None
    assert _private_directories(private_parent) == [], "the login's secrets outlived the dashboard"


def _private_directories(parent: Path) -> list[Path]:
    """The dashboard's private directories in ``parent`` (whatever else Chromium or Streamlit put there)."""
    return [entry for entry in parent.iterdir() if entry.name.startswith("llm-ledger-dashboard-")]


def _waiting(driver: WebDriver) -> WebDriverWait[WebDriver]:
    # Streamlit redraws the page as its script runs: an element found a moment ago may be replaced.
    return WebDriverWait(driver, PAGE_SECONDS, ignored_exceptions=[StaleElementReferenceException])


def _button(driver: WebDriver, label: str) -> WebElement | None:
    for button in driver.find_elements(By.CSS_SELECTOR, "button"):
        if button.text.strip() == label and button.is_displayed():
            return button
    return None


def _click(driver: WebDriver, label: str) -> None:
    """Click the button labelled ``label`` once it is there (again if it was redrawn under the click)."""

    def clicked(d: WebDriver) -> bool:
        button = _button(d, label)
        if button is None:
            return False
        button.click()
        return True

    _waiting(driver).until(clicked)


def _log_in(driver: WebDriver, dashboard: str, provider: str, user: str, query: dict[str, str] | None = None) -> None:
    """Log in as ``user`` from a browser that holds no cookie, through the provider's form, then open
    ``/?<query>``."""
    driver.get(f"{dashboard}/_stcore/health")
    driver.delete_all_cookies()  # 127.0.0.1's, the dashboard's and the provider's alike (cookies ignore ports)
    driver.get(f"{dashboard}/")
    _click(driver, "Log in")
    _waiting(driver).until(lambda d: d.current_url.startswith(provider))
    choice = (By.CSS_SELECTOR, f'button[name="sub"][value="{user}"]')
    _waiting(driver).until(expected_conditions.element_to_be_clickable(choice)).click()
    _waiting(driver).until(lambda d: d.current_url.startswith(dashboard) and _button(d, "Log out") is not None)
    if query is not None:
        driver.get(f"{dashboard}/?{urlencode(query)}")


def _page_drawn(driver: WebDriver, page: str) -> None:
    _waiting(driver).until(
        lambda d: _rendered(d, PAGE_TITLES[page], has_charts=page not in test_browser.WITHOUT_CHARTS)
    )


def _screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _sidebar(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text


def _wait_for_chooser(driver: WebDriver, tenant: str, *, enabled: bool) -> None:
    """Until the sidebar's tenant selectbox shows ``tenant`` (enabled: the viewer may choose another)."""

    def chooser(d: WebDriver) -> tuple[str | None, bool]:
        box = d.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"] input[aria-label="Tenant"]')
        return box.get_attribute("value"), box.is_enabled()

    try:
        _waiting(driver).until(lambda d: chooser(d) == (tenant, enabled))
    except TimeoutException:
        pytest.fail(f"the tenant chooser shows {chooser(driver)}, not {(tenant, enabled)}")


def test_a_visitor_not_logged_in_is_asked_to_log_in_and_shown_no_tenant(
    login_dashboard: LoginDashboard, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    browser.get(f"{login_dashboard.url}/_stcore/health")
    browser.delete_all_cookies()
    browser.get(f"{login_dashboard.url}/?{urlencode({'tenant': 'acme', 'page': 'sessions'})}")
    _waiting(browser).until(lambda d: _button(d, "Log in") is not None)
    _screenshot(browser, "login-asked")

    source = browser.page_source
    for name in (populated_ledger.ledger.other_tenant, populated_ledger.ledger.traced_session):
        assert name not in source
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]')


def test_a_person_of_one_tenant_sees_that_tenant_alone_even_after_an_operator_logged_in(
    login_dashboard: LoginDashboard, identity_provider: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    # An operator's session first: the binding is each session's, never the server process's.
    _log_in(browser, login_dashboard.url, identity_provider, OPERATOR, {"tenant": ledger.other_tenant})
    _page_drawn(browser, "overview")

    _log_in(browser, login_dashboard.url, identity_provider, TENANT_USER)
    for page in ("overview", "fallbacks", "sessions"):
        browser.get(f"{login_dashboard.url}/?{urlencode({'page': page, 'window': '1d'})}")
        _page_drawn(browser, page)
        _screenshot(browser, f"login-tenant-{page}")
        source = browser.page_source
        assert ledger.other_tenant not in source, page
        assert "globex-private" not in source, page
        _wait_for_chooser(browser, ledger.tenant, enabled=False)
        assert f"Logged in as {TENANT_USER} (one tenant)" in _sidebar(browser)
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')


def test_a_person_of_one_tenant_following_links_into_another_tenant_sees_nothing_of_it(
    login_dashboard: LoginDashboard, identity_provider: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    theirs = next(str(e.stream_id) for e in ledger.events if e.tenant_id == ledger.other_tenant)
    _log_in(browser, login_dashboard.url, identity_provider, TENANT_USER)

    browser.get(f"{login_dashboard.url}/?{urlencode({'tenant': ledger.other_tenant, 'window': '1d'})}")
    # Their own tenant is shown instead, and nothing of the other's (its session, model and agent names).
    _wait_for_chooser(browser, ledger.tenant, enabled=False)
    _page_drawn(browser, "overview")
    _screenshot(browser, "login-tenant-link-to-another-tenant")
    assert "globex-private" not in browser.page_source

    for query in ({"page": "execution", "execution": theirs}, {"page": "execution", "tenant": ledger.other_tenant,
                                                              "execution": theirs}):  # fmt: skip
        browser.get(f"{login_dashboard.url}/?{urlencode(query | {'window': '1d'})}")
        said = f"Tenant {ledger.tenant} has no execution {theirs}."
        _waiting(browser).until(
            lambda d: said in d.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text  # noqa: B023
        )
        _screenshot(browser, f"login-tenant-other-execution-{len(query)}")
        source = browser.page_source
        # The link's own tenant is named back to them (as one they may not see), nothing more of it.
        echoed = f"This link's tenant={ledger.other_tenant} has no executions in this ledger (or you may not see it)"
        assert "globex-private" not in source and ledger.other_tenant not in source.replace(echoed, ""), query
        for shown in ("stDataFrame", "stAlertContentSuccess"):
            assert not browser.find_elements(By.CSS_SELECTOR, f'[data-testid="{shown}"]'), (query, shown)


def test_an_operator_sees_every_tenant(
    login_dashboard: LoginDashboard, identity_provider: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    _log_in(browser, login_dashboard.url, identity_provider, OPERATOR)
    for tenant in (ledger.tenant, ledger.other_tenant):
        browser.get(f"{login_dashboard.url}/?{urlencode({'page': 'latency', 'tenant': tenant, 'window': '1d'})}")
        _page_drawn(browser, "latency")
        _screenshot(browser, f"login-operator-{tenant}")
        # The link's tenant is shown, not replaced with a warning: the operator may see it.
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentWarning"]')
        _wait_for_chooser(browser, tenant, enabled=True)
        assert f"Logged in as {OPERATOR} (operator: every tenant)" in _sidebar(browser)
    # Its figures, not only its name: the chart's legend names the step only globex has.
    assert "globex-private-step" in browser.page_source


def test_a_person_whose_identity_names_no_tenant_sees_an_explanation_and_nothing_else(
    login_dashboard: LoginDashboard, identity_provider: str, browser: WebDriver, populated_ledger: PopulatedLedger
) -> None:
    ledger = populated_ledger.ledger
    _log_in(browser, login_dashboard.url, identity_provider, NOBODYS_USER)
    browser.get(f"{login_dashboard.url}/?{urlencode({'page': 'overview', 'window': '1d'})}")
    _waiting(browser).until(
        lambda d: "grants you no tenant" in d.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    )
    _screenshot(browser, "login-no-tenant")

    text = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    assert f"You are logged in as {NOBODYS_USER}" in text and "named by the tenant claim" in text, text
    source = browser.page_source
    for name in (ledger.tenant, ledger.other_tenant):
        assert name not in source
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    for figure in ("stMetric", "stVegaLiteChart", "stDataFrame"):
        assert not browser.find_elements(By.CSS_SELECTOR, f'[data-testid="{figure}"]'), figure


def test_the_logins_secrets_are_in_a_private_directory_readable_by_its_user_alone(
    login_dashboard: LoginDashboard,
) -> None:
    (private,) = _private_directories(login_dashboard.private_parent)
    (secrets,) = private.iterdir()
    assert private.stat().st_mode & 0o777 == 0o700
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert "[auth]" in secrets.read_text()
