"""The Streamlit dashboard of the ledger (``llm-ledger dashboard``).
See docs/ARCHITECTURE.md for its place among the layers.

Importing this package does not import Streamlit: the settings, the URL state and the shaping of figures
are plain Python; only ``app`` and the pages draw.
"""

from llm_ledger.dashboard.server import run_dashboard, streamlit_command
from llm_ledger.dashboard.settings import DashboardSettings
from llm_ledger.dashboard.state import PAGES, WINDOWS, ViewState
from llm_ledger.dashboard.trace_links import TraceLinks, TraceLinkTemplateError

__all__ = [
    "PAGES",
    "WINDOWS",
    "DashboardSettings",
    "TraceLinkTemplateError",
    "TraceLinks",
    "ViewState",
    "run_dashboard",
    "streamlit_command",
]
