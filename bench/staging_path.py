"""The store's two insert paths under the login the README prescribes for Focal's writers, on a local
PostgreSQL: the direct COPY (as ``llm_ledger_ingest``) and the staging insert (COPY into a temporary table,
then one ``INSERT ... SELECT`` per tenant under that tenant's row-level security), which a writer-only login
always takes and a writer+ingest login takes for a batch that conflicts (a replayed spool segment).

Run by hand:  .venv/bin/python bench/staging_path.py [--events 50000] [--rounds 4] [--tenants 20]

A login made for the run (not a superuser, granted ``llm_ledger_writer`` and ``llm_ledger_ingest``, dropped
at the end) appends the same rows, checked beforehand, with ``EventStore(url).append_rows`` as the default
writer does (no role taken: the login's own), in batches of the writer's default size: direct and staged
alternate, each run into a database of its own (created, migrated, CHECKPOINTed, dropped). Prints each run
and the medians.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the workload lives with the store tests

from bench.ingest import DEFAULT_SERVER, count_rows, fresh_database, generate_drafts, tenants_per_batch
from llm_ledger.store.rows import event_to_row
from llm_ledger.store.scoping import INGEST_ROLE, WRITER_ROLE
from llm_ledger.store.store import EventStore
from llm_ledger.store.writer import DEFAULT_BATCH_SIZE


def run(url: URL, rows: list[dict[str, Any]], *, direct: bool) -> float:
    """Events per second of ``append_rows`` over ``rows`` into the database at ``url``."""
    store = EventStore(url)
    start = time.perf_counter()
    for i in range(0, len(rows), DEFAULT_BATCH_SIZE):
        store.append_rows(rows[i : i + DEFAULT_BATCH_SIZE], direct=direct)
    seconds = time.perf_counter() - start
    store.close()
    return len(rows) / seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=4, help="pairs of runs (direct, then staged)")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL, without a database")
    args = parser.parse_args(argv)

    drafts = generate_drafts(args.events, args.tenants)
    rows = [event_to_row(draft, index) for index, draft in enumerate(drafts)]
    print(f"{len(rows):,} events, ~{tenants_per_batch(drafts, DEFAULT_BATCH_SIZE):.1f} tenants a batch")
    login = f"llm_ledger_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        admin.execute(sql.SQL("GRANT {}, {} TO {}").format(*map(sql.Identifier, (WRITER_ROLE, INGEST_ROLE, login))))
    rates: dict[bool, list[float]] = {True: [], False: []}
    try:
        for round_ in range(args.rounds):
            for direct in (True, False) if round_ % 2 == 0 else (False, True):
                with fresh_database(args.server) as url:
                    rate = run(make_url(url).set(username=login), rows, direct=direct)
                    stored = count_rows(url, "llm_ledger_events")
                    if stored != len(rows):
                        raise RuntimeError(f"{'direct' if direct else 'staged'}: stored {stored} of {len(rows)}")
                rates[direct].append(rate)
                print(f"round {round_ + 1}: {'direct ' if direct else 'staged '} {rate:>9,.0f} events/s", flush=True)
    finally:
        with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
    direct_rate, staged_rate = statistics.median(rates[True]), statistics.median(rates[False])
    ratio = staged_rate / direct_rate
    print(f"median: direct {direct_rate:,.0f}, staged {staged_rate:,.0f} events/s; staged / direct {ratio:.2f}")


if __name__ == "__main__":
    main()
