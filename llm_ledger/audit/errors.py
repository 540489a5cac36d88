"""The audit's errors."""

from __future__ import annotations


class AuditConfigurationError(ValueError):
    """Raised for an audit option or key that cannot be used (a malformed key, an unreadable ``--since``, a
    database without the audit tables); the CLI exits with status 2."""
