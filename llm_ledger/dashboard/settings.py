"""What the dashboard is configured with, read from the environment in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llm_ledger.dashboard.trace_links import TraceLinks, trace_links_from_env
from llm_ledger.environment import LLM_LEDGER_DASHBOARD_CATCH_UP, LLM_LEDGER_DASHBOARD_TENANT
from llm_ledger.store import StoreConfigurationError, StoreSettings
from llm_ledger.store import shown_url as _printable

DEFAULT_TRACE_LINKS = trace_links_from_env({})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """``LLM_LEDGER_DATABASE_URL`` (the store's default when unset), ``LLM_LEDGER_DASHBOARD_TENANT`` (bind
    the viewer to one tenant), ``LLM_LEDGER_TRACE_URL`` (``trace_links``) and ``LLM_LEDGER_DASHBOARD_CATCH_UP``
    (catch the projector up before each view; default true)."""

    database_url: str
    bound_tenant: str | None = None
    trace_links: TraceLinks = DEFAULT_TRACE_LINKS
    catch_up: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardSettings:
        return cls(
            database_url=StoreSettings.from_env(environ).database_url,
            bound_tenant=LLM_LEDGER_DASHBOARD_TENANT.get(environ),
            trace_links=trace_links_from_env(environ),
            catch_up=LLM_LEDGER_DASHBOARD_CATCH_UP.value(environ).strip().lower() not in _FALSE,
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
