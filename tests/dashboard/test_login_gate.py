"""The dashboard behind a login, under Streamlit's AppTest with the claims a login cookie holds: an expired,
foreign or misaddressed identity is asked to log in again and sees nothing; a tenant's person whose
database fails is told it is unavailable, not its address or the driver's words (the operators are)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.dashboard.apptest import open_dashboard_as, rendered_text
from tests.dashboard.conftest import UNREACHABLE_URL, PopulatedLedger

Configure = Callable[..., None]
ISSUER = "https://id.example/realms/focal"
CLIENT_ID = "llm-ledger"
UNAVAILABLE = "The ledger is unavailable just now: please try again later, or tell whoever runs this dashboard."


@pytest.fixture
def login_env(monkeypatch: pytest.MonkeyPatch, dashboard_env: Configure) -> Configure:
    """``dashboard_env`` with a login configured (no provider is asked: the tests bring the claims)."""

    def configure(url: str) -> None:
        dashboard_env(url)
        for name, value in {
            "LLM_LEDGER_OIDC_ISSUER": ISSUER,
            "LLM_LEDGER_OIDC_CLIENT_ID": CLIENT_ID,
            "LLM_LEDGER_OIDC_CLIENT_SECRET": "s3cret",
            "LLM_LEDGER_OIDC_REDIRECT_URI": "https://ledger.example/oauth2callback",
            "LLM_LEDGER_OIDC_COOKIE_SECRET": "c" * 32,
        }.items():
            monkeypatch.setenv(name, value)

    return configure


def _person(**claims: object) -> dict[str, Any]:
    current = {"exp": int(time.time()) + 3600, "iss": ISSUER, "aud": CLIENT_ID}
    return {"is_logged_in": True, "sub": "ada", "email": "ada@acme.example", **current, **claims}


def test_a_current_identity_sees_its_tenant(populated_ledger: PopulatedLedger, login_env: Configure) -> None:
    login_env(populated_ledger.url)
    tenant = populated_ledger.ledger.tenant
    app = open_dashboard_as(_person(tenant=tenant), window="1d")

    assert not app.exception
    assert not app.error
    assert "Logged in as ada@acme.example (one tenant)" in [caption.value for caption in app.sidebar.caption]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "the login has expired"),
        ({"iss": "https://id.elsewhere.example"}, "the identity was issued by another provider"),
        ({"aud": "another-application"}, "the identity was issued for another application"),
    ],
)
def test_a_stale_identity_is_asked_to_log_in_again_and_sees_nothing(
    claims: dict[str, object], reason: str, populated_ledger: PopulatedLedger, login_env: Configure
) -> None:
    login_env(populated_ledger.url)
    tenant = populated_ledger.ledger.tenant
    app = open_dashboard_as(_person(tenant=tenant, groups=["llm-ledger-operators"], **claims), tenant=tenant)

    assert not app.exception
    assert [info.value for info in app.info] == [f"Please log in again: {reason}."]
    assert [button.label for button in app.button] == ["Log in"]
    assert not app.metric and not app.sidebar.selectbox
    assert "ada@acme.example" not in rendered_text(app)


def test_a_tenants_person_is_told_the_ledger_is_unavailable_and_the_server_logs_why(
    login_env: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    login_env(UNREACHABLE_URL)
    with caplog.at_level(logging.ERROR, logger="llm_ledger.dashboard.app"):
        app = open_dashboard_as(_person(tenant="acme"))

    assert not app.exception
    assert [error.value for error in app.error] == [UNAVAILABLE]
    shown = rendered_text(app)
    assert "127.0.0.1" not in shown and "postgresql" not in shown and "driver" not in shown
    assert "the dashboard could not read the ledger" in caplog.text
    assert "127.0.0.1" in caplog.text


def test_an_operator_is_told_which_database_cannot_be_reached(login_env: Configure) -> None:
    login_env(UNREACHABLE_URL)
    app = open_dashboard_as(_person(groups=["llm-ledger-operators"]))

    assert [error.value for error in app.error] == [
        "The ledger database cannot be reached: postgresql+psycopg://postgres:***@127.0.0.1:1/ledger"
    ]
