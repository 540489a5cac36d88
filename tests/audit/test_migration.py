"""Migration 0005: up and down on both dialects; down is refused once a seal exists (seals are evidence)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from llm_ledger.audit.schema import AUDIT_TABLES
from llm_ledger.store import create_store_engine, migrate
from llm_ledger.store.migrate import DowngradeRefusedError
from tests.audit.conftest import Ledger


def audit_tables_of(url: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            names = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    return names & {table.name for table in AUDIT_TABLES}


def test_0005_creates_the_audit_tables_and_its_downgrade_drops_them(unmigrated_url: str) -> None:
    migrate.upgrade(unmigrated_url)
    assert audit_tables_of(unmigrated_url) == {table.name for table in AUDIT_TABLES}

    migrate.downgrade(unmigrated_url, "0004")
    assert audit_tables_of(unmigrated_url) == set()

    migrate.upgrade(unmigrated_url)  # and again: the downgrade left nothing in the way (functions, policies)
    assert migrate.current(unmigrated_url) == migrate.head()


def test_downgrading_below_0005_is_refused_once_there_is_a_seal(ledger: Ledger) -> None:
    with pytest.raises(DowngradeRefusedError, match="llm_ledger_seals holds seals"):
        migrate.downgrade(ledger.url, "0004")
    assert migrate.current(ledger.url) == migrate.head()
    assert ledger.verify().ok
