"""Before ``retention apply`` drops a month: its archive proved from the files just written, by the checks
``audit verify --archive`` runs once the month is gone, so that a month whose archive would not verify is
never dropped.

Reading the files back proves they hold what was written; it cannot prove that what was written is the
month (a hashed column written wrong, an event's cursor moved among its seal's leaves; ``recorded_at``, in
no hash and no seal, is proved by nothing: docs/AUDIT.md, "Which columns the proof covers"). So, per
tenant of the month, as the verify after the drop will: each of its archived streams' hash chain and shape
(``verify.check_stream``), and each seal covering the month (``verify.check_seal_content``) with its Merkle
root and count recomputed from its other live leaves merged with the archived ones, and its manifest's
streams of the month held against the files. The month's events still in the database are left out of
the seals' leaves, as they will be once it is dropped. A seal that also covers a month archived earlier
needs that month's files too: they are looked for in the same archive directory, and a seal they are
missing from refuses the drop (it could not be proved).

The cost is one more pass over the seals covering the month (their live leaves and manifests) and over the
month's files: what ``audit verify --archive`` spends on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Engine

from llm_ledger.audit.queries import AuditQueries
from llm_ledger.audit.report import Finding, TenantResult
from llm_ledger.audit.retired import Retired, RetiredTenant
from llm_ledger.audit.roles import scoped_connection
from llm_ledger.audit.seals import Seal
from llm_ledger.audit.verify import check_seal_content, check_stream
from llm_ledger.store.scoping import RETENTION_ROLE


class _GoneStream(NamedTuple):
    """A seal's manifest row of a stream of the month, as ``manifest_differences`` gives it once the month
    is dropped: sealed, and no longer live."""

    sealed_stream: str
    sealed_first: int
    sealed_last: int
    sealed_count: int
    sealed_head: str
    actual_stream: None = None


def prove_before_drop(
    engine: Engine, root: Path, run: Mapping[str, Any], files: Sequence[Mapping[str, Any]]
) -> list[Finding]:
    """What stands against dropping the month that ``run`` (the row about to be recorded, ``files`` its
    files' rows) archived under ``root``: every broken finding of the proof, and each seal covering the
    month that could not be proved. Empty: the archive verifies from its files."""
    queries = AuditQueries(engine.dialect.name)
    with scoped_connection(engine, RETENTION_ROLE) as connection:
        retired = Retired.before_drop(connection, root, run, files)
        problems = [finding for finding in retired.findings if finding.severity == "broken"]
        for tenant in sorted({str(file["tenant_id"]) for file in files}):
            result = TenantResult(tenant)
            archived = retired.of(tenant)
            (month,) = (m for m in archived.months if m.run_id == run["run_id"])
            chain = [Seal.from_row(row) for row in queries.seals_of(connection, tenant)]
            archived.use_seals(chain)
            for seal in chain:
                if seal.sequence not in month.seal_sequences:
                    continue
                check_seal_content(connection, queries, result, seal, archived)
                for row in queries.manifest(connection, tenant, seal.sequence):
                    if month.holds(str(row.stream_id)):
                        gone = _GoneStream(
                            str(row.stream_id), row.first_position, row.last_position, row.event_count, row.head_hash
                        )
                        archived.explains(seal, gone, result)
            # The month's own streams only: the months archived before it were proved when they left.
            RetiredTenant(tenant, [month], with_archive=True).check_streams(result, check_stream)
            problems += [
                finding
                for finding in result.findings
                if finding.severity == "broken" or finding.kind == "archived_not_checked"
            ]
    return problems
