"""``seal_ledger``: per tenant, one new seal over the events not sealed yet, checked against the sealer's
witness when it keeps one (``witness.SealerWitness``)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from llm_ledger.audit.errors import SealRefusedError
from llm_ledger.audit.heads import WITNESS_FILE, HeadLog, locked, resolve
from llm_ledger.audit.keys import SigningKey
from llm_ledger.audit.queries import AuditQueries, SealRange
from llm_ledger.audit.roles import audit_engine, scoped_connection
from llm_ledger.audit.seals import Seal, digest_range, manifest_digest
from llm_ledger.audit.witness import SealerWitness
from llm_ledger.store import START
from llm_ledger.store.scoping import SEALER_ROLE


def _seal_tenant(
    connection: Connection,
    queries: AuditQueries,
    tenant_id: str,
    signing_key: SigningKey | None,
    witness: SealerWitness | None,
) -> Seal | None:
    queries.lock_tenant_sealing(connection, tenant_id)
    previous_row = queries.last_seal(connection, tenant_id)
    previous = Seal.from_row(previous_row) if previous_row is not None else None
    if witness is not None and not witness.allows(connection, queries, tenant_id, previous):
        return None
    after = previous.through if previous is not None else START
    through = queries.sealable_through(connection, tenant_id, after)
    if through is None:
        return None
    sealed = SealRange(tenant_id, after, through)
    digest = digest_range(queries.leaves(connection, sealed))
    assert digest.first_occurred_at is not None and digest.last_occurred_at is not None
    sequence = previous.sequence + 1 if previous is not None else 1
    queries.insert_manifest(connection, sealed, sequence)
    manifest, streams = manifest_digest(queries.manifest(connection, tenant_id, sequence))
    unsigned = Seal(
        tenant_id=tenant_id,
        sequence=sequence,
        after=after,
        through=through,
        event_count=digest.count,
        stream_count=streams,
        first_occurred_at=digest.first_occurred_at,
        last_occurred_at=digest.last_occurred_at,
        merkle_root=digest.root,
        manifest_digest=manifest,
        sealed_at=datetime.now(UTC),
        prev_seal_hash=previous.seal_hash if previous is not None else None,
        seal_hash="",
    )
    own_hash = unsigned.computed_hash()
    seal = replace(
        unsigned,
        seal_hash=own_hash,
        public_key=signing_key.public_key.text() if signing_key is not None else None,
        signature=signing_key.sign(own_hash) if signing_key is not None else None,
    )
    queries.insert_seal(connection, seal.to_row())
    return seal


def _seal_tenants(
    engine: Engine,
    queries: AuditQueries,
    tenants: list[str],
    signing_key: SigningKey | None,
    witness: SealerWitness | None,
) -> list[Seal]:
    made: list[Seal] = []
    for tenant in tenants:
        with scoped_connection(engine, SEALER_ROLE) as connection:
            seal = _seal_tenant(connection, queries, tenant, signing_key, witness)
        if seal is not None:
            # After the commit: a seal recorded but never committed would look like a removed one. A stop
            # between the two leaves a signed seal the next run recovers (``SealerWitness``).
            if witness is not None:
                witness.record(seal)
            made.append(seal)
    return made


def seal_ledger(
    database_url: str | URL | Engine,
    *,
    signing_key: SigningKey | str | None = None,
    tenant_id: str | None = None,
    witness: str | os.PathLike[str] | None = None,
    adopt: bool = False,
) -> list[Seal]:
    """Seal, per tenant (or only ``tenant_id``), the events not sealed yet; returns the new seals (none for a
    tenant with nothing new). Each tenant's seal is its own transaction, as ``llm_ledger_sealer`` on
    PostgreSQL. ``signing_key`` may be given in any form ``LLM_LEDGER_SEAL_KEY`` takes.

    With ``witness`` (a file, or a directory holding ``witness.jsonl``), a tenant whose newest seal in the
    database is not the head the witness recorded is not sealed, and ``SealRefusedError`` names it after the
    other tenants are sealed. A witness is started on a database that has no seal yet; on one already sealed,
    ``adopt`` starts it by trusting the database's current heads (refused when the witness holds any).
    """
    if isinstance(signing_key, str):
        signing_key = SigningKey.parse(signing_key)
    with audit_engine(database_url) as engine:
        queries = AuditQueries(engine.dialect.name)
        if witness is None:
            with scoped_connection(engine, SEALER_ROLE) as connection:
                tenants = queries.tenants(connection, tenant_id)
            return _seal_tenants(engine, queries, tenants, signing_key, None)
        path = resolve(witness, WITNESS_FILE)
        with locked(path):
            log = HeadLog.read(path, signing_key.public_key if signing_key else None)
            problems = [problem.detail for problem in log.problems if problem.severity == "broken"]
            if problems:
                raise SealRefusedError([f"the witness is not as this sealer wrote it: {p}" for p in problems], [])
            guard = SealerWitness(log, signing_key)
            with scoped_connection(engine, SEALER_ROLE) as connection:
                every_tenant = sorted({*queries.tenants(connection, None), *queries.sealed_tenants(connection)})
                if adopt:
                    if not guard.is_new():
                        raise SealRefusedError([f"--adopt starts a new witness; {path} already records heads"], [])
                    guard.adopt(connection, queries, every_tenant)
                elif guard.is_new() and queries.sealed_tenants(connection):
                    raise SealRefusedError(
                        [
                            f"the database is sealed already and the witness {path} records nothing: to trust the"
                            " database's current seals, start it with `llm-ledger audit seal --adopt` once"
                        ],
                        [],
                    )
            known = sorted({*every_tenant, *log.heads()})
            tenants = [tenant for tenant in known if tenant_id is None or tenant == tenant_id]
            made = _seal_tenants(engine, queries, tenants, signing_key, guard)
            if guard.refusals:
                raise SealRefusedError(guard.refusals, made)
            return made
