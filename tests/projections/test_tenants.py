"""The tenants a view lists, on both dialects: every tenant with projected figures, each once, sorted, found
one primary-key probe at a time (``LedgerView.tenants``)."""

from __future__ import annotations

from llm_ledger.events import Event
from llm_ledger.projections.queries import LedgerView
from tests.projections.projecting import project_url


def test_an_unbound_view_lists_every_tenant_with_figures_once_in_order(
    workload_url: str, recorded_events: list[Event]
) -> None:
    project_url(workload_url)
    view = LedgerView(workload_url)
    try:
        listed = view.tenants()
    finally:
        view.close()

    recorded = {event.tenant_id for event in recorded_events}
    assert len(recorded) > 2
    assert listed == sorted(recorded)


def test_a_ledger_without_figures_lists_no_tenant(ledger_url: str) -> None:
    view = LedgerView(ledger_url)
    try:
        assert view.tenants() == []
    finally:
        view.close()
