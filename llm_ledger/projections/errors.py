"""The projections' errors."""

from __future__ import annotations

from llm_ledger.errors import LedgerError


class ProjectionError(LedgerError):
    """Base of the projections' errors: the read models, their prices and the queries the dashboard asks."""


class PriceTableError(ProjectionError, ValueError):
    """Raised for a price table that cannot be read, naming the file and the entry."""


class TenantNotAllowedError(ProjectionError, PermissionError):
    """Raised when a view bound to one tenant is asked about another."""
