"""The trace links: a URL template from ``LLM_LEDGER_TRACE_URL`` (Jaeger's, Phoenix's, Grafana's for Tempo),
the deprecated ``LLM_LEDGER_JAEGER_URL`` when it is unset, and a clear error for a template that cannot work."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from llm_ledger.dashboard import TraceLinks, TraceLinkTemplateError, run_dashboard
from llm_ledger.dashboard.trace_links import deprecation_notice, trace_links_from_env

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
GRAFANA_TEMPO = (
    "http://localhost:3000/explore?left=%7B%22datasource%22:%22tempo%22,%22queries%22:%5B%7B%22query%22:"
    "%22{trace_id}%22,%22queryType%22:%22traceql%22%7D%5D%7D"
)


def _never_started(*args: object) -> NoReturn:
    raise AssertionError("Streamlit was started with a template that cannot make links")


@pytest.mark.parametrize(
    ("template", "link"),
    [
        ("http://localhost:16686/trace/{trace_id}", f"http://localhost:16686/trace/{TRACE_ID}"),
        ("http://localhost:6006/redirects/traces/{trace_id}", f"http://localhost:6006/redirects/traces/{TRACE_ID}"),
        (GRAFANA_TEMPO, GRAFANA_TEMPO.replace("{trace_id}", TRACE_ID)),
        ('http://grafana/explore?left={{"queries":[{{"query":"{trace_id}"}}]}}',
         f'http://grafana/explore?left={{"queries":[{{"query":"{TRACE_ID}"}}]}}'),
    ],
    ids=["jaeger", "phoenix", "tempo-in-grafana", "literal-braces"],
)  # fmt: skip
def test_a_template_puts_the_trace_id_where_it_says(template: str, link: str) -> None:
    links = trace_links_from_env({"LLM_LEDGER_TRACE_URL": template})

    assert links.url(TRACE_ID) == link
    assert links.url(None) is None, "no link for an execution that was not traced"


def test_the_substituted_trace_id_is_url_encoded() -> None:
    links = TraceLinks("https://traces.example/t/{trace_id}?from=ledger")

    assert links.url("a/b c&d") == "https://traces.example/t/a%2Fb%20c%26d?from=ledger"


def test_without_a_template_the_deprecated_jaeger_url_is_jaegers_trace_page() -> None:
    environ = {"LLM_LEDGER_JAEGER_URL": "https://jaeger.example/"}

    assert trace_links_from_env(environ).url(TRACE_ID) == f"https://jaeger.example/trace/{TRACE_ID}"
    assert deprecation_notice(environ) == (
        "LLM_LEDGER_JAEGER_URL is deprecated: set LLM_LEDGER_TRACE_URL=https://jaeger.example/trace/{trace_id}"
    )


def test_the_template_wins_over_the_jaeger_url_and_nothing_is_deprecated_without_it() -> None:
    environ = {"LLM_LEDGER_TRACE_URL": "http://phoenix:6006/redirects/traces/{trace_id}",
               "LLM_LEDGER_JAEGER_URL": "http://jaeger:16686"}  # fmt: skip

    assert trace_links_from_env(environ).url(TRACE_ID) == f"http://phoenix:6006/redirects/traces/{TRACE_ID}"
    assert deprecation_notice(environ) is None
    assert deprecation_notice({}) is None
    assert trace_links_from_env({}).url(TRACE_ID) == f"http://localhost:16686/trace/{TRACE_ID}", "a local Jaeger"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("http://jaeger:16686/trace/{traceid}", "has an unknown placeholder {traceid}: the only one is {trace_id}"),
        ("http://jaeger:16686/trace/", "has no {trace_id}"),
        ("http://jaeger:16686/trace/{trace_id", "has an unmatched brace"),
        ("http://jaeger:16686/trace/{trace_id:>40}", "formats {trace_id}"),
        ("jaeger:16686/trace/{trace_id}", "is not an http:// or https:// URL"),
    ],
    ids=["unknown-placeholder", "no-trace-id", "unmatched-brace", "format-spec", "no-scheme"],
)
def test_a_template_that_cannot_make_links_is_an_error_naming_the_variable(template: str, problem: str) -> None:
    with pytest.raises(TraceLinkTemplateError, match=r"^LLM_LEDGER_TRACE_URL=") as raised:
        trace_links_from_env({"LLM_LEDGER_TRACE_URL": template})

    assert problem in str(raised.value)
    assert repr(template) in str(raised.value)


def test_a_deprecated_jaeger_url_that_cannot_make_links_is_an_error_naming_it() -> None:
    with pytest.raises(TraceLinkTemplateError, match=r"^LLM_LEDGER_JAEGER_URL=.*is not an http"):
        trace_links_from_env({"LLM_LEDGER_JAEGER_URL": "jaeger:16686"})


def test_the_dashboard_command_stops_on_a_bad_template_before_starting_streamlit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_LEDGER_TRACE_URL", "http://jaeger:16686/trace/{span_id}")
    monkeypatch.setattr(os, "execvpe", _never_started)

    assert run_dashboard(database_url=None, port=8501, address="127.0.0.1") == 2

    error = capsys.readouterr().err
    assert "LLM_LEDGER_TRACE_URL='http://jaeger:16686/trace/{span_id}' has an unknown placeholder {span_id}" in error
