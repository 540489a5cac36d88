"""The dashboard, opened on what the demo recorded, shows the demo's tenants, their executions, and their
failures under the providers the mock models stand for."""

from __future__ import annotations

import pytest

from llm_ledger.cli import main
from llm_ledger.demo import TENANT_AGENTS
from tests.dashboard.apptest import metrics, open_dashboard, rendered_text
from tests.demo.ledger import check_streams, latest_anchor_at, read_streams

ANCHOR_HOUR = 17
"""The hour of the day the history ends in fixes which sessions meet the incident, and so whether any
calls tools (at 03:00 both of the eight sessions that would are rate-limited)."""


def test_the_dashboard_shows_the_demo(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Six days, ending within the day before now: all of them inside the 7-day window, which ends now.
    anchor = latest_anchor_at(ANCHOR_HOUR).isoformat()
    demo = ["demo", "--sessions", "8", "--history", "6d", "--anchor", anchor, "--database-url", sqlite_url]
    demo += ["--latency-scale", "0"]
    assert main(demo) == 0
    capsys.readouterr()
    shape = check_streams(sqlite_url)
    monkeypatch.setenv("LLM_LEDGER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("LLM_LEDGER_DASHBOARD_CATCH_UP", "false")  # the demo caught the read models up

    overview = open_dashboard(page="overview", window="7d")
    assert not overview.exception and not overview.error
    shown = rendered_text(overview)
    assert all(tenant in shown for tenant in TENANT_AGENTS)

    for tenant in TENANT_AGENTS:
        app = open_dashboard(page="overview", tenant=tenant, window="7d")
        assert not app.exception and not app.error
        assert metrics(app)["Executions"] == f"{shape.executions_by_tenant[tenant]:,}"

    # The demo's tool calls: on the Tools page, per tenant, and in the session that made them.
    tool_streams = [s for s in read_streams(sqlite_url).values() if s[0].event_type == "ToolCallStarted"]
    assert tool_streams, "the demo's generation step calls tools"
    for tenant in TENANT_AGENTS:
        ended = [s for s in tool_streams if s[0].tenant_id == tenant]
        app = open_dashboard(page="tools", tenant=tenant, window="7d")
        assert not app.exception and not app.error
        if not ended:
            continue
        failed = sum(s[-1].event_type == "ToolCallFailed" for s in ended)
        assert (metrics(app)["Tool calls"], metrics(app)["Failed"]) == (f"{len(ended):,}", f"{failed:,}")
        assert all(name in rendered_text(app) for name in {str(getattr(s[0].payload, "tool_name", "")) for s in ended})
    first = tool_streams[0][0]
    assert first.session_id is not None
    session = open_dashboard(page="sessions", tenant=first.tenant_id, window="7d", session=first.session_id)
    assert not session.exception and not session.error
    assert "Tool calls" in [header.value for header in session.main.subheader]
    assert str(getattr(first.payload, "tool_name", "")) in rendered_text(session)

    # Failures split by provider: the providers the mock models stand for, not "mock".
    errors = open_dashboard(page="errors", window="7d")
    assert not errors.exception and not errors.error
    providers = {
        str(provider)
        for table in errors.main.dataframe
        for column in table.value.columns
        if str(column).lower() == "provider"
        for provider in table.value[column]
    }
    assert "openai" in providers and providers <= {"anthropic", "groq", "openai", "openrouter"}
