"""The dashboard's configuration, read from the environment."""

from __future__ import annotations

from llm_ledger.dashboard import DashboardSettings, TraceLinks


def test_defaults_to_the_stores_database_an_unbound_viewer_local_jaeger_and_catching_up() -> None:
    settings = DashboardSettings.from_env({"LLM_LEDGER_HOME": "/srv/ledger"})

    local_jaeger = TraceLinks("http://localhost:16686/trace/{trace_id}", "LLM_LEDGER_JAEGER_URL")
    assert settings == DashboardSettings("sqlite:////srv/ledger/ledger.db", None, local_jaeger, True)


def test_reads_the_tenant_binding_the_trace_links_and_the_catch_up_switch() -> None:
    settings = DashboardSettings.from_env(
        {
            "LLM_LEDGER_DATABASE_URL": "postgresql://ledger@db/ledger",
            "LLM_LEDGER_DASHBOARD_TENANT": "acme",
            "LLM_LEDGER_TRACE_URL": "https://phoenix.example/redirects/traces/{trace_id}",
            "LLM_LEDGER_DASHBOARD_CATCH_UP": "false",
        }
    )

    phoenix = TraceLinks("https://phoenix.example/redirects/traces/{trace_id}")
    assert settings == DashboardSettings("postgresql://ledger@db/ledger", "acme", phoenix, False)


def test_the_trace_link_is_the_templates_page_and_none_without_a_trace() -> None:
    settings = DashboardSettings("sqlite://", trace_links=TraceLinks("http://jaeger:16686/trace/{trace_id}"))

    assert settings.trace_url("4bf92f3577b34da6a3ce929d0e0e4736") == (
        "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert settings.trace_url(None) is None


def test_the_database_url_is_shown_without_its_password() -> None:
    settings = DashboardSettings("postgresql://ledger:s3cret@db:5432/ledger")

    assert settings.shown_url == "postgresql+psycopg://ledger:***@db:5432/ledger"
