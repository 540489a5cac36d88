"""The migrated PostgreSQL schema can be distributed by tenant (Citus) as it is: read from ``pg_catalog``.

Citus distributes a table by one column and refuses a primary or unique key that does not contain it (the
uniqueness could not be checked on one node), and a foreign key between distributed tables that does not
include it (the rows could be on two nodes). PostgreSQL's partitioning has the same rule for the partition
key. So, for every table of the ledger with a ``tenant_id`` column (partitions are checked with their
parent, whose keys they are built from):

- every primary key, unique constraint and unique index contains ``tenant_id`` and, on a partitioned
  table, every column of the partition key;
- every foreign key between two such tables pairs ``tenant_id`` with ``tenant_id`` (no row refers to
  another tenant's).

The tables without ``tenant_id`` are named here, each with why it is not distributed: a new table without
a tenant fails until it is listed, with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text

NOT_DISTRIBUTED = {
    "llm_ledger_alembic_version": "the schema revision: one row, a local table of the coordinator",
    "llm_ledger_projection_checkpoints": (
        "one cursor per projection over every tenant's events (the global (tx_id, position) order): a"
        " reference table (or local to the coordinator, where the projector runs)"
    ),
    "llm_ledger_audit_runs": (
        "a verify run may cover every tenant (scope_tenant NULL); its per-tenant figures are in"
        " llm_ledger_audit_tenant_results, which is distributed: a reference table"
    ),
    "llm_ledger_retention_runs": (
        "a retention run removes a partition of every tenant's streams; its per-tenant files are in"
        " llm_ledger_retention_files, which is distributed: a reference table"
    ),
}

_TABLES = """
    SELECT c.oid, c.relname, c.relkind::text,
        EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
    FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""

_UNIQUE_KEYS = """
    SELECT ic.relname, array_agg(a.attname::text ORDER BY k.ordinality)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
    LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = :table AND i.indisunique
    GROUP BY ic.relname
"""

_PARTITION_KEY = """
    SELECT array_agg(a.attname::text)
    FROM pg_partitioned_table p
    CROSS JOIN LATERAL unnest(p.partattrs) AS k(attnum)
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.attnum
    WHERE p.partrelid = :table
"""

_FOREIGN_KEYS = """
    SELECT con.conname, con.conrelid::regclass::text, con.confrelid::regclass::text,
        array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
        array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)
    FROM pg_constraint con
    WHERE con.contype = 'f' AND con.connamespace = current_schema()::regnamespace
"""


@pytest.fixture
def catalog(pg: Engine) -> Iterator[Connection]:
    with pg.connect() as connection:
        yield connection


def _tenant_tables(catalog: Connection) -> dict[str, int]:
    tables = catalog.execute(text(_TABLES)).all()
    without = {name for _, name, _, has_tenant in tables if not has_tenant}
    assert without == set(NOT_DISTRIBUTED), (
        f"tables without tenant_id: {sorted(without)}; each must be named in NOT_DISTRIBUTED with why it is a"
        f" reference or local table (named but gone or tenant-keyed now: {sorted(set(NOT_DISTRIBUTED) - without)})"
    )
    return {name: oid for oid, name, _, has_tenant in tables if has_tenant}


def test_every_unique_key_of_a_tenant_table_contains_the_tenant_and_the_partition_key(catalog: Connection) -> None:
    tables = _tenant_tables(catalog)
    assert "llm_ledger_events" in tables and len(tables) >= 10
    offending = []
    checked = 0
    for name, oid in tables.items():
        partition_key = catalog.execute(text(_PARTITION_KEY), {"table": oid}).scalar() or []
        for index, columns in catalog.execute(text(_UNIQUE_KEYS), {"table": oid}):
            checked += 1
            missing = [c for c in ("tenant_id", *partition_key) if c not in columns]
            if None in columns:
                missing.append("(an expression: Citus cannot check it)")
            if missing:
                offending.append(f"{name}.{index} ({', '.join(map(str, columns))}) lacks {', '.join(missing)}")
    assert not offending, "unique keys Citus (or the partitioning) would refuse:\n" + "\n".join(offending)
    assert checked >= len(tables) - 1  # every tenant table but the findings has a key


def test_the_events_table_is_partitioned_by_its_stream(catalog: Connection) -> None:
    key = catalog.execute(text(_PARTITION_KEY), {"table": _tenant_tables(catalog)["llm_ledger_events"]}).scalar()
    assert key == ["stream_id"]


def test_no_foreign_key_crosses_tenants(catalog: Connection) -> None:
    tables = _tenant_tables(catalog)
    offending = []
    for name, referring, referred, columns, referred_columns in catalog.execute(text(_FOREIGN_KEYS)):
        if referring not in tables or referred not in tables:
            continue  # to or from a reference table: Citus allows it
        pairs = set(zip(columns, referred_columns, strict=True))
        if ("tenant_id", "tenant_id") not in pairs:
            offending.append(f"{name}: {referring}({', '.join(columns)}) -> {referred}({', '.join(referred_columns)})")
    assert not offending, "foreign keys that could refer to another tenant's rows:\n" + "\n".join(offending)
