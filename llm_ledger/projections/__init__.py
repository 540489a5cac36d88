"""Read models derived from the events (per-tenant figures in time buckets, sessions, failed attempts),
the projector that keeps them current, and the queries the dashboard asks of them.
See docs/ARCHITECTURE.md for its place among the layers."""

from llm_ledger.projections.errors import PriceTableError, ProjectionError, TenantNotAllowedError
from llm_ledger.projections.prices import Price, PriceTable
from llm_ledger.projections.projector import PROJECTION_NAME, CatchUpResult, ProjectionStatus, Projector
from llm_ledger.projections.rollup import MOCKED_PROVIDERS, provider_of

__all__ = [
    "MOCKED_PROVIDERS",
    "PROJECTION_NAME",
    "CatchUpResult",
    "Price",
    "PriceTable",
    "PriceTableError",
    "ProjectionError",
    "ProjectionStatus",
    "Projector",
    "TenantNotAllowedError",
    "provider_of",
]
