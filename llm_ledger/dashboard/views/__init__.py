"""One module per page of the dashboard. (Not ``pages/``: Streamlit would take a ``pages`` directory
beside ``app.py`` for pages of its own multipage navigation.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from llm_ledger.dashboard.settings import DashboardSettings
from llm_ledger.dashboard.state import ViewState
from llm_ledger.dashboard.view import DashboardView
from llm_ledger.projections.queries import Filters, Window, display_buckets


@dataclass(frozen=True, slots=True)
class PageContext:
    """What every page is drawn for: one tenant over one window, kept to the sidebar's filters."""

    view: DashboardView
    tenant: str
    window: Window
    state: ViewState
    settings: DashboardSettings

    @property
    def filters(self) -> Filters:
        return self.state.filters

    @property
    def buckets(self) -> list[datetime]:
        """Every time bucket of the window's charts, idle ones included."""
        return display_buckets(self.window)


Render = Callable[[PageContext], None]


def renderer(page: str) -> Render:
    """The function that draws ``page`` (a key of ``state.PAGES``)."""
    from llm_ledger.dashboard.views import audit, errors, execution, fallbacks, latency, overview, sessions, tools

    pages: dict[str, Render] = {
        "overview": overview.render,
        "latency": latency.render,
        "errors": errors.render,
        "fallbacks": fallbacks.render,
        "tools": tools.render,
        "sessions": sessions.render,
        "execution": execution.render,
        "audit": audit.render,
    }
    return pages[page]
