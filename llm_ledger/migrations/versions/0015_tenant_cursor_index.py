"""An index of each tenant's events in cursor order, for the audit: ``(tenant_id, tx_id, global_position)``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

A seal covers one tenant's events in a range of the read cursor ``(tx_id, global_position)``, and everything
that seals, verifies, archives or counts a tenant's events after a seal reads that range: the Merkle pass
(in cursor order), the stream manifest, the count of unsealed events, retention's leaves. The cursor's
own index (0001) holds every tenant: each tenant's range was read from it with all the other tenants' events
of the range, then sorted out against the tenant index, so a verify of N tenants read the cursor index N
times over (on 10 tenants, 6 us an event of the database's time for the Merkle pass alone, 1.3 us with
this index: BENCHMARKS.md, "Audit: seal and verify").

PostgreSQL only (the cursor's ``tx_id`` is PostgreSQL's; SQLite's cursor is the primary key). Created on the
partitioned table, so every partition has it and every partition made later gets it. ``CREATE INDEX``
takes a lock that makes writes to the events wait while it builds (measured: 500,000 events in 4 s under
load; in proportion, about 80 s for 10M): the writers keep accepting events in the meantime, spooling what
does not fit in their queues, as for any pause of the database.
"""

from __future__ import annotations

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

_INDEX = "ix_llm_ledger_events_tenant_id_tx_id_global_position"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE INDEX {_INDEX} ON llm_ledger_events (tenant_id, tx_id, global_position)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX {_INDEX}")
