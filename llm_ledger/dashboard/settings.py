"""What the dashboard is configured with, read from the environment in one place."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import KW_ONLY, InitVar, dataclass

from llm_ledger.dashboard.trace_links import TraceLinks, jaeger_trace_links, trace_links_from_env
from llm_ledger.environment import LLM_LEDGER_DASHBOARD_CATCH_UP, LLM_LEDGER_DASHBOARD_TENANT, LLM_LEDGER_JAEGER_URL
from llm_ledger.store import StoreConfigurationError, StoreSettings
from llm_ledger.store import shown_url as _printable

DEFAULT_TRACE_LINKS = trace_links_from_env({})
DEFAULT_JAEGER_URL = LLM_LEDGER_JAEGER_URL.value({})
"""Deprecated with ``jaeger_url``: the default links are ``DEFAULT_TRACE_LINKS``."""
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """``LLM_LEDGER_DATABASE_URL`` (the store's default when unset), ``LLM_LEDGER_DASHBOARD_TENANT`` (bind
    the viewer to one tenant), ``LLM_LEDGER_TRACE_URL`` (``trace_links``) and ``LLM_LEDGER_DASHBOARD_CATCH_UP``
    (catch the projector up before each view; default true).

    ``trace_links`` is keyword-only. The third argument is still the deprecated ``jaeger_url`` (Jaeger's
    base URL, linked as ``<url>/trace/{trace_id}``), so that settings made as before keep their links."""

    database_url: str
    bound_tenant: str | None = None
    jaeger_url: InitVar[str | None] = None
    catch_up: bool = True
    _: KW_ONLY
    trace_links: TraceLinks = DEFAULT_TRACE_LINKS

    def __post_init__(self, jaeger_url: str | None) -> None:
        if jaeger_url is None:
            return
        if not isinstance(jaeger_url, str):
            raise TypeError(
                f"DashboardSettings' third argument is the deprecated jaeger_url (a str), not {jaeger_url!r}: "
                "pass trace_links=TraceLinks(...) by keyword"
            )
        if self.trace_links != DEFAULT_TRACE_LINKS:
            raise TypeError("DashboardSettings takes trace_links or the deprecated jaeger_url, not both")
        warnings.warn(
            "DashboardSettings' jaeger_url is deprecated: pass trace_links=TraceLinks('<url>/trace/{trace_id}')",
            DeprecationWarning,
            stacklevel=3,
        )
        object.__setattr__(self, "trace_links", jaeger_trace_links(jaeger_url, "jaeger_url"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardSettings:
        return cls(
            database_url=StoreSettings.from_env(environ).database_url,
            bound_tenant=LLM_LEDGER_DASHBOARD_TENANT.get(environ),
            catch_up=LLM_LEDGER_DASHBOARD_CATCH_UP.value(environ).strip().lower() not in _FALSE,
            trace_links=trace_links_from_env(environ),
        )

    @property
    def shown_url(self) -> str:
        """The database URL as it may be shown on screen: without its password."""
        try:
            return _printable(self.database_url)
        except StoreConfigurationError:
            return self.database_url.split("@")[-1] if "@" in self.database_url else self.database_url

    def trace_url(self, trace_id: str | None) -> str | None:
        """The trace UI's page of a trace; ``None`` when the execution was not traced."""
        return self.trace_links.url(trace_id)
