"""The root of every error the library raises; a leaf module that imports nothing of the package."""

from __future__ import annotations


class LedgerError(Exception):
    """Anything llm-ledger raises: catch this to catch them all (see each package's ``errors`` module)."""
