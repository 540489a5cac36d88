"""Scope one PostgreSQL transaction to a tenant and a ledger role, for row-level security.

Both last until the transaction ends, so a pooled connection carries nothing into the next one. The
policies (migration 0001) compare ``tenant_id`` with the setting ``llm_ledger.tenant_id``; a role that is
a superuser or has BYPASSRLS ignores them, which is why a connection logged in as such takes one of the
ledger roles per transaction.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, text

from llm_ledger.store.settings import StoreConfigurationError

TENANT_SETTING: Final = "llm_ledger.tenant_id"
WRITER_ROLE: Final = "llm_ledger_writer"
READER_ROLE: Final = "llm_ledger_reader"
AUDITOR_ROLE: Final = "llm_ledger_auditor"
PROJECTOR_ROLE: Final = "llm_ledger_projector"
"""Reads every tenant's events and writes the read models (migration 0002)."""
SEALER_ROLE: Final = "llm_ledger_sealer"
"""Reads every tenant's events and writes the audit seals (migration 0005)."""
RETENTION_ROLE: Final = "llm_ledger_retention"
"""Archives sealed months and drops their partitions (migration 0010); its login also holds the auditor, for
the verify that comes first."""
INGEST_ROLE: Final = "llm_ledger_ingest"
"""INSERT only on the events, bypassing row-level security (migration 0003): the store takes it for a
direct COPY of a batch. Not a role to scope a store to (it cannot read)."""
KEYHOLDER_ROLE: Final = "llm_ledger_keyholder"
"""Reads its tenant's data keys, so decrypts content captured in full (migration 0011)."""
ERASER_ROLE: Final = "llm_ledger_eraser"
"""Destroys a tenant's data keys and records the erasure (migration 0011): the login ``llm-ledger erase``
runs under."""
LEDGER_ROLES: Final = frozenset(
    {WRITER_ROLE, READER_ROLE, AUDITOR_ROLE, PROJECTOR_ROLE, SEALER_ROLE, RETENTION_ROLE, KEYHOLDER_ROLE, ERASER_ROLE}
)

# set_config('role', ..., true) is SET LOCAL ROLE, with the role as a bound value instead of SQL text, in
# the same round trip as the tenant.
_SCOPE = text("SELECT set_config(:setting, :tenant, true), set_config('role', :role, true)")
_SCOPE_TENANT = text("SELECT set_config(:setting, :tenant, true)")


def scope_transaction(connection: Connection, tenant_id: str | None, role: str | None = None) -> None:
    """Make the rest of the current transaction see (and insert) only ``tenant_id``'s events, as ``role``.

    ``tenant_id=None`` means no tenant: the writer and reader see nothing, the auditor sees every tenant.
    ``role=None`` keeps the connection's own role. A no-op on SQLite, which has one tenant per file.
    """
    if role is not None and role not in LEDGER_ROLES:
        raise StoreConfigurationError(f"not a ledger role: {role!r} (expected one of {sorted(LEDGER_ROLES)})")
    if connection.dialect.name != "postgresql":
        return
    if getattr(connection.connection.dbapi_connection, "autocommit", False):
        # Each statement would be its own transaction, and the scope would end with this one.
        raise StoreConfigurationError("cannot scope an AUTOCOMMIT connection: the scope lasts one transaction")
    parameters = {"setting": TENANT_SETTING, "tenant": tenant_id or ""}
    if role is None:
        connection.execute(_SCOPE_TENANT, parameters)
    else:
        connection.execute(_SCOPE, {**parameters, "role": role})
