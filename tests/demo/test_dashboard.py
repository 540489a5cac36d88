"""The dashboard, opened on what the demo recorded, shows the demo's tenants and their executions."""

from __future__ import annotations

import pytest

from llm_ledger.cli import main
from llm_ledger.demo import TENANT_AGENTS
from tests.dashboard.apptest import metrics, open_dashboard, rendered_text
from tests.demo.ledger import check_streams


def test_the_dashboard_shows_the_demo(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--sessions", "5", "--database-url", sqlite_url, "--latency-scale", "0"]) == 0
    capsys.readouterr()
    shape = check_streams(sqlite_url)
    monkeypatch.setenv("LLM_LEDGER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("LLM_LEDGER_DASHBOARD_CATCH_UP", "false")  # the demo caught the read models up

    overview = open_dashboard(page="overview", window="1d")
    assert not overview.exception and not overview.error
    shown = rendered_text(overview)
    assert all(tenant in shown for tenant in TENANT_AGENTS)

    for tenant in TENANT_AGENTS:
        app = open_dashboard(page="overview", tenant=tenant, window="1d")
        assert not app.exception and not app.error
        assert metrics(app)["Executions"] == f"{shape.executions_by_tenant[tenant]:,}"
