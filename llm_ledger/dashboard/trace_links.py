"""Where the dashboard's trace links point: a URL template with ``{trace_id}`` in it, from
``LLM_LEDGER_TRACE_URL``, for whichever trace UI holds the traces (Jaeger, Phoenix, Grafana's Tempo, ...).

``LLM_LEDGER_JAEGER_URL`` (Jaeger's base URL, before templates) is still read when the template is unset,
as ``{base}/trace/{trace_id}``; it is deprecated. A template is checked when the dashboard starts, so a
mistyped one is an error naming its variable rather than links that lead nowhere.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from llm_ledger.environment import LLM_LEDGER_JAEGER_URL, LLM_LEDGER_TRACE_URL
from llm_ledger.errors import LedgerError

PLACEHOLDERS = ("trace_id",)
"""What a template may hold between braces; ``{{`` and ``}}`` stand for a literal brace."""
JAEGER_TRACE_PAGE = "/trace/{trace_id}"


class TraceLinkTemplateError(LedgerError, ValueError):
    """Raised when the dashboard starts with a trace link template (``LLM_LEDGER_TRACE_URL``, or the deprecated
    ``LLM_LEDGER_JAEGER_URL``) that cannot make links: no ``{trace_id}``, an unknown placeholder, an
    unmatched brace, or not an http(s) URL. The message names the variable."""


@dataclass(frozen=True, slots=True)
class TraceLinks:
    """Links to a trace UI, from ``template`` (checked when made); ``variable`` is where it came from."""

    template: str
    variable: str = LLM_LEDGER_TRACE_URL.name

    def __post_init__(self) -> None:
        problem = _template_problem(self.template)
        if problem is not None:
            raise TraceLinkTemplateError(f"{self.variable}={self.template!r} {problem}")

    def url(self, trace_id: str | None) -> str | None:
        """The trace UI's page of a trace; ``None`` when the execution was not traced."""
        return self.template.format(trace_id=quote(trace_id, safe="")) if trace_id else None


def _template_problem(template: str) -> str | None:
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError:
        return "has an unmatched brace (write {{ or }} for a literal one)"
    names = [name for name, _, _ in fields if name is not None]
    unknown = sorted({name for name in names if name not in PLACEHOLDERS})
    if unknown:
        listed = ", ".join("{" + name + "}" for name in unknown)
        return f"has an unknown placeholder {listed}: the only one is {{trace_id}}"
    if any(spec or conversion for name, spec, conversion in fields if name is not None):
        return "formats {trace_id}: write it as {trace_id}, without a format or a conversion"
    if "trace_id" not in names:
        return "has no {trace_id}: the links could not say which trace to open"
    if urlsplit(template).scheme not in ("http", "https") or not urlsplit(template).netloc:
        return "is not an http:// or https:// URL"
    return None


def trace_links_from_env(environ: Mapping[str, str] | None = None) -> TraceLinks:
    """``LLM_LEDGER_TRACE_URL``; else the deprecated ``LLM_LEDGER_JAEGER_URL`` (its default when that is unset too:
    a local Jaeger) with Jaeger's trace page appended."""
    template = LLM_LEDGER_TRACE_URL.get(environ)
    if template is not None:
        return TraceLinks(template)
    base = LLM_LEDGER_JAEGER_URL.value(environ).rstrip("/").replace("{", "{{").replace("}", "}}")
    return TraceLinks(base + JAEGER_TRACE_PAGE, LLM_LEDGER_JAEGER_URL.name)


def deprecation_notice(environ: Mapping[str, str] | None = None) -> str | None:
    """What to tell an operator who still sets ``LLM_LEDGER_JAEGER_URL`` alone; ``None`` when nothing."""
    if LLM_LEDGER_TRACE_URL.get(environ) is not None or not LLM_LEDGER_JAEGER_URL.is_set(environ):
        return None
    return (
        f"{LLM_LEDGER_JAEGER_URL.name} is deprecated: set {LLM_LEDGER_TRACE_URL.name}="
        f"{trace_links_from_env(environ).template}"
    )
