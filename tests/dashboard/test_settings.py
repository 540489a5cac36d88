"""The dashboard's configuration, read from the environment."""

from __future__ import annotations

import pytest

from llm_ledger.dashboard import DashboardSettings, TraceLinks


def test_defaults_to_the_stores_database_an_unbound_viewer_local_jaeger_and_catching_up() -> None:
    settings = DashboardSettings.from_env({"LLM_LEDGER_HOME": "/srv/ledger"})

    local_jaeger = TraceLinks("http://localhost:16686/trace/{trace_id}", "LLM_LEDGER_JAEGER_URL")
    assert settings == DashboardSettings("sqlite:////srv/ledger/ledger.db", None, trace_links=local_jaeger)


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
    assert settings == DashboardSettings("postgresql://ledger@db/ledger", "acme", catch_up=False, trace_links=phoenix)


def test_the_trace_link_is_the_templates_page_and_none_without_a_trace() -> None:
    settings = DashboardSettings("sqlite://", trace_links=TraceLinks("http://jaeger:16686/trace/{trace_id}"))

    assert settings.trace_url("4bf92f3577b34da6a3ce929d0e0e4736") == (
        "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert settings.trace_url(None) is None


def test_settings_made_with_the_deprecated_jaeger_url_keep_their_links() -> None:
    with pytest.deprecated_call(match="jaeger_url is deprecated: pass trace_links="):
        settings = DashboardSettings("sqlite://", None, "http://jaeger:16686/", False)

    assert settings.trace_url("4bf92f3577b34da6a3ce929d0e0e4736") == (
        "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert settings.catch_up is False


def test_trace_links_given_where_the_jaeger_url_was_are_refused_saying_to_pass_them_by_keyword() -> None:
    links = TraceLinks("http://jaeger:16686/trace/{trace_id}")
    refused = pytest.raises(TypeError, match=r"third argument is the deprecated jaeger_url .*pass trace_links=")

    with refused:
        DashboardSettings("sqlite://", None, links)  # type: ignore[arg-type]


def test_the_database_url_is_shown_without_its_password() -> None:
    settings = DashboardSettings("postgresql://ledger:s3cret@db:5432/ledger")

    assert settings.shown_url == "postgresql+psycopg://ledger:***@db:5432/ledger"
