"""Whether the streams a page shows are as they were recorded, checked when they are shown.

For each stream: the checks ``llm-ledger audit verify`` makes of a stream (``audit.verify.stream_findings``:
its hash chain, that it starts with the first event of its kind, an execution's or a tool execution's, and
ends with one terminal event of that kind, or that it has none yet), and its events against what the seals
recorded of it (``llm_ledger_seal_streams``: per seal, the positions it held and the hash of the last; and
that every event in a sealed range is one a seal holds).
The chain shows an edited, removed or reordered event; the seals show what the chain cannot, a stream
rewritten with every hash recomputed (its sealed head is no longer there), cut short after its seal, or
forged whole into sealed history. Three queries a view, over the shown streams' rows and the tenant's last
seal: cheap enough for every view of a session. What only a whole verify shows (a seal edited, dropped
or unsigned, a stream deleted whole) is on the Audit page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, select

from llm_ledger.audit.queries import AuditQueries, SealRange
from llm_ledger.audit.schema import seal_streams
from llm_ledger.audit.seals import Seal
from llm_ledger.audit.verify import stream_findings
from llm_ledger.store import START

Status = Literal["intact", "broken", "incomplete"]


@dataclass(frozen=True, slots=True)
class StreamCheck:
    """What was found of one stream: nothing (``intact``), something broken, or no terminal event."""

    broken: tuple[str, ...] = ()
    """Each thing that breaks the stream, in words (an event named by its position)."""
    incomplete: str | None = None
    """Why the stream has no outcome yet, when it has none and nothing is broken."""
    sealed: bool = False
    """Whether a seal holds events of the stream (its rewriting with recomputed hashes would show)."""

    @property
    def status(self) -> Status:
        if self.broken:
            return "broken"
        return "incomplete" if self.incomplete else "intact"

    @property
    def summary(self) -> str:
        """One line for a table cell."""
        if self.broken:
            return "; ".join(self.broken)
        if self.incomplete:
            return self.incomplete
        return "chain verified" + (", as sealed" if self.sealed else ", not sealed yet")


def check_streams(
    connection: Connection, tenant_id: str, streams: Mapping[str, Sequence[Any]]
) -> dict[str, StreamCheck]:
    """Each stream's check; ``streams`` maps a stream id to its rows (``READ_COLUMNS``, in stream order)."""
    manifests = _manifests(connection, tenant_id, list(streams))
    unheld = _unheld(connection, tenant_id, list(streams), manifests)
    checks = {}
    for stream_id, rows in streams.items():
        broken, incomplete = [], None
        for finding in stream_findings(tenant_id, rows):
            if finding.severity == "incomplete":
                incomplete = f"incomplete: {finding.detail}"
            elif finding.stream_position is not None:
                broken.append(f"{finding.kind} at position {finding.stream_position}: {finding.detail}")
            else:
                broken.append(f"{finding.kind}: {finding.detail}")
        sealed = manifests.get(stream_id, [])
        broken.extend(_seal_problems(rows, sealed))
        if stream_id in unheld:
            positions = unheld[stream_id]
            broken.append(
                f"event_inserted: {len(positions)} event(s) in the range of a seal that does not hold them"
                f" (first: position {positions[0]})"
            )
        # A stream whose sealed terminal event is gone is broken, not merely incomplete (as in verify).
        checks[stream_id] = StreamCheck(tuple(broken), None if broken else incomplete, bool(sealed))
    return checks


def _manifests(connection: Connection, tenant_id: str, stream_ids: list[str]) -> dict[str, list[Any]]:
    if not stream_ids:
        return {}
    table = seal_streams
    columns = (table.c.stream_id, table.c.seal_sequence, table.c.first_position, table.c.last_position)
    query = (
        select(*columns, table.c.head_hash)
        .where(table.c.tenant_id == tenant_id, table.c.stream_id.in_(stream_ids))
        .order_by(table.c.stream_id, table.c.seal_sequence)
    )
    found: dict[str, list[Any]] = {}
    for row in connection.execute(query):
        found.setdefault(row.stream_id, []).append(row)
    return found


def _unheld(
    connection: Connection, tenant_id: str, stream_ids: list[str], manifests: Mapping[str, Sequence[Any]]
) -> dict[str, list[int]]:
    """Per stream, the positions of its events that lie in a sealed range (at or before the last seal's end)
    without any seal holding them: a stream, or an event, inserted into sealed history."""
    queries = AuditQueries(connection.dialect.name)
    last = queries.last_seal(connection, tenant_id) if stream_ids else None
    if last is None:
        return {}
    sealed = SealRange(tenant_id, START, Seal.from_row(last).through)
    unheld: dict[str, list[int]] = {}
    for row in queries.streams_in_range(connection, sealed, stream_ids):
        held = manifests.get(row.stream_id, [])
        if not any(seal.first_position <= row.stream_position <= seal.last_position for seal in held):
            unheld.setdefault(row.stream_id, []).append(row.stream_position)
    return {stream: sorted(positions) for stream, positions in unheld.items()}


def _seal_problems(rows: Iterable[Any], sealed: Sequence[Any]) -> list[str]:
    """What differs between a stream's rows and each seal's record of it (positions held, last hash)."""
    hashes: dict[int, set[str]] = {}
    for row in rows:
        hashes.setdefault(row.stream_position, set()).add(row.hash)
    problems = []
    for seal in sealed:
        held = range(seal.first_position, seal.last_position + 1)
        missing = [position for position in held if position not in hashes]
        if missing:
            problems.append(
                f"sealed_events_missing: seal {seal.seal_sequence} holds positions {held.start}..{held.stop - 1},"
                f" {len(missing)} of them are gone (first: {missing[0]})"
            )
        elif seal.head_hash not in hashes[seal.last_position]:
            problems.append(
                f"stream_rewritten: the event at position {seal.last_position} is not the one seal"
                f" {seal.seal_sequence} holds (its hash was {seal.head_hash})"
            )
    return problems
