"""Alembic environment for the ledger's tables, run by ``alembic`` or by ``llm_ledger.store.migrate``.

The database is, first found: a connection handed over in ``config.attributes["connection"]``
(``migrate`` does this), ``-x url=...``, then ``LLM_LEDGER_DATABASE_URL`` / the default SQLite file of
``StoreSettings.from_env()``.
"""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import SchemaItem

# Today's models, for autogenerate and ``alembic check`` only (a new revision is what they differ by): the
# read models, the seals and the audit runs join the events in store.schema's metadata. The revisions are
# history and import none of them; every name they create is literal (op.f), so the models' naming
# convention, which Alembic hands to op.create_table, renames nothing.
import llm_ledger.audit.schema
import llm_ledger.projections.schema  # noqa: F401
from llm_ledger.store.migrate import VERSION_TABLE
from llm_ledger.store.schema import EVENTS_PARTITION, metadata
from llm_ledger.store.settings import StoreSettings, create_store_engine, normalize_url

config = context.config
if config.config_file_name is not None and config.file_config.has_section("loggers"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> URL:
    url = context.get_x_argument(as_dictionary=True).get("url") or StoreSettings.from_env().database_url
    return normalize_url(url)


# Created by op.execute in 0001 and 0015 and absent from the metadata (they exist on PostgreSQL only); without
# this, autogenerate would propose dropping them.
_POSTGRESQL_ONLY = frozenset(
    {"tx_id", "ix_llm_ledger_events_tx_id_global_position", "ix_llm_ledger_events_tenant_id_tx_id_global_position"}
)


def _include_object(
    item: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    if not reflected or compare_to is not None:
        return True
    # The events table's partitions (0008) are the database's, made month by month: the model is the parent.
    table = name if type_ == "table" else getattr(getattr(item, "table", None), "name", "")
    return name not in _POSTGRESQL_ONLY and not EVENTS_PARTITION.fullmatch(table or "")


def _run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        include_object=_include_object,
        # SQLite cannot ALTER most things in place; batch mode lets later revisions rebuild the table.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        url = _url()
        context.configure(
            url=url,
            literal_binds=True,
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            render_as_batch=url.get_backend_name() == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = create_store_engine(_url(), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            _run_online(connection)
    finally:
        engine.dispose()


main()
