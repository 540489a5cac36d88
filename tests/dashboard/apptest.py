"""Running the dashboard script under Streamlit's ``AppTest`` and reading what it drew."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP

PAGES = ("overview", "latency", "errors", "fallbacks", "tools", "sessions", "execution", "audit", "cost")


def open_dashboard(**query: str | list[str]) -> AppTest:
    """The dashboard run once, as a browser opening ``/?<query>`` would (a list: a parameter repeated)."""
    return open_dashboard_as(None, **query)


def open_dashboard_as(user: dict[str, Any] | None, **query: str | list[str]) -> AppTest:
    """``open_dashboard`` for a browser whose login cookie holds ``user`` (what ``st.user`` reads)."""
    app = AppTest.from_file(str(APP), default_timeout=30)
    if user is not None:
        app.user = user
    app.query_params.update(query)
    return app.run()


def metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.main.metric}


def deltas(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.delta for metric in app.main.metric}


def rendered_text(app: AppTest) -> str:
    """Everything the run drew, as text: element values, widget options, table cells, chart specs."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        children = getattr(node, "children", None)
        if children:
            for child in children.values() if isinstance(children, dict) else children:
                walk(child)
            return
        value = getattr(node, "value", None)
        parts.append(value.to_csv() if value is not None and hasattr(value, "to_csv") else str(value))
        parts.extend(str(option) for option in getattr(node, "options", []) or [])
        parts.append(str(getattr(node, "proto", "")))

    walk(app._tree)
    return "\n".join(parts)
