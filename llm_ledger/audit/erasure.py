"""Erasure by crypto-shredding: ``llm-ledger erase`` destroys the data keys of a session or a subject, so the
content they encrypt can never be read again, while every event, chain and seal stays as it was.

First a plan, read as ``llm_ledger_eraser`` scoped to the tenant (the keys by the key table's session or
subject index), shown for confirmation before anything is locked; then one transaction that deletes the
keys and records the erasure (what, when, by whom; never content). On PostgreSQL that transaction is one
call of ``llm_ledger_erase`` (migration 0011), which the eraser may execute but not bypass: it holds no
DELETE on the keys, so no key goes without its record. It takes the lock the key store takes for the same
session or subject, so a key is either stored before it (and deleted with the rest) or stored after it and
checked against its record. SQLite: one writer at a time, the erasure's DELETE keeps key stores out.

Destroying keys erases only what they encrypt. Texts of the same sessions stored in plain (recorded in full
before content was encrypted, and failed tools' exception texts recorded before ``error_text``, in their
``message``) stay readable: the erasure counts them (``Erasure.plain``), and ``llm-ledger erase`` says so.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import orjson
from sqlalchemy import Connection, text

from llm_ledger.audit.errors import AuditError
from llm_ledger.events import uuid7
from llm_ledger.events.encryption import content_fields, key_ids, tool_error_in_plain
from llm_ledger.store import EventStore
from llm_ledger.store.schema import erasures
from llm_ledger.store.scoping import ERASER_ROLE, scope_transaction


class NothingToEraseError(AuditError):
    """The session or subject has events but no key to destroy (capture hash/none, or erased already)."""


class UnknownErasureTargetError(AuditError):
    """No such tenant, session or subject in the ledger."""


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """What an erasure is about to destroy."""

    tenant_id: str
    session_id: str | None
    subject_id: str | None
    key_ids: tuple[str, ...]
    sessions: tuple[str | None, ...]

    @property
    def target(self) -> str:
        what = f"session {self.session_id!r}" if self.session_id is not None else f"subject {self.subject_id!r}"
        return f"{what} of tenant {self.tenant_id!r}"


@dataclass(frozen=True, slots=True)
class PlainTexts:
    """The texts of an erasure's sessions stored in plain, which destroying keys cannot erase."""

    captured: int = 0
    """Places of captured content recorded in full before content was encrypted."""
    tool_errors: int = 0
    """Failed tools' exception texts recorded in full before ``error_text`` existed: plain in ``message``."""

    @property
    def total(self) -> int:
        return self.captured + self.tool_errors


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure done, as recorded in ``llm_ledger_erasures``; and the texts of its sessions it could not
    erase, stored in plain (counted in the erasure's transaction, not recorded in the table)."""

    erasure_id: str
    plan: ErasurePlan
    events_affected: int
    plain: PlainTexts = PlainTexts()

    @property
    def key_count(self) -> int:
        return len(self.plan.key_ids)


def erase(
    store: EventStore,
    tenant_id: str,
    *,
    session_id: str | None = None,
    subject_id: str | None = None,
    confirm: Callable[[ErasurePlan], bool] = lambda plan: True,
) -> Erasure | None:
    """Destroy the keys of one session or one subject of ``tenant_id`` and record it; None if ``confirm``
    said no (nothing is changed then). Raises ``UnknownErasureTargetError`` or ``NothingToEraseError``.

    ``confirm`` is asked before the erasure's transaction opens (a person may take minutes to answer: no
    lock is held meanwhile); the erasure then destroys and records exactly the keys it deleted, which
    include any key stored since the plan."""
    if (session_id is None) == (subject_id is None):
        raise ValueError("erase one session or one subject")
    with _eraser_transaction(store, tenant_id) as connection:
        plan = _plan(connection, tenant_id, session_id, subject_id)
    if not confirm(plan):
        return None
    with _eraser_transaction(store, tenant_id) as connection:
        if store.engine.dialect.name == "postgresql":
            done = _erase_postgresql(connection, plan)
        else:
            done = _erase_sqlite(connection, plan)
        if done is None:  # erased by another erasure since the plan
            _nothing_to_erase(connection, plan)
        plain = plain_texts(_session_events(connection, plan.tenant_id, done.plan.sessions))
    return dataclasses.replace(done, plain=plain)


@contextmanager
def _eraser_transaction(store: EventStore, tenant_id: str) -> Iterator[Connection]:
    with store.transaction(scoped=False) as connection:
        if store.engine.dialect.name == "postgresql":
            scope_transaction(connection, tenant_id, ERASER_ROLE)
        yield connection


def _owner(plan: ErasurePlan) -> tuple[str, str | None]:
    return ("session_id", plan.session_id) if plan.session_id is not None else ("subject_id", plan.subject_id)


def _plan(connection: Connection, tenant_id: str, session_id: str | None, subject_id: str | None) -> ErasurePlan:
    plan = ErasurePlan(tenant_id, session_id, subject_id, (), ())
    owner, value = _owner(plan)
    found = connection.execute(
        text(
            f"SELECT CAST(key_id AS text) AS key_id, session_id FROM llm_ledger_content_keys"
            f" WHERE tenant_id = :tenant AND {owner} = :value ORDER BY key_id"
        ),
        {"tenant": tenant_id, "value": value},
    ).all()
    if not found:
        _nothing_to_erase(connection, plan)
    return _with_keys(plan, [(row.key_id, row.session_id) for row in found])


def _with_keys(plan: ErasurePlan, keys: Sequence[tuple[str, str | None]]) -> ErasurePlan:
    return ErasurePlan(
        plan.tenant_id,
        plan.session_id,
        plan.subject_id,
        tuple(key for key, _ in keys),
        tuple(dict.fromkeys(session for _, session in keys)),
    )


def _erase_postgresql(connection: Connection, plan: ErasurePlan) -> Erasure | None:
    """``llm_ledger_erase`` (migration 0011): under the lock the key store takes too, it deletes the keys,
    counts the events they encrypted and records exactly the keys deleted, in one step; the eraser holds no
    DELETE of its own."""
    done = connection.execute(
        text(
            "SELECT CAST(erasure_id AS text) AS erasure_id, key_ids, events_affected"
            " FROM llm_ledger_erase(:tenant, :session, :subject)"
        ),
        {"tenant": plan.tenant_id, "session": plan.session_id, "subject": plan.subject_id},
    ).first()
    if done is None:
        return None
    return Erasure(
        str(done.erasure_id),
        ErasurePlan(plan.tenant_id, plan.session_id, plan.subject_id, tuple(done.key_ids), plan.sessions),
        int(done.events_affected),
    )


def _erase_sqlite(connection: Connection, plan: ErasurePlan) -> Erasure | None:
    """One local file, one writer at a time: the DELETE's write lock keeps any key store out until the
    record is committed with it, and a key stored since the plan is deleted (and recorded) too."""
    owner, value = _owner(plan)
    gone = connection.execute(
        text(
            f"DELETE FROM llm_ledger_content_keys WHERE tenant_id = :tenant AND {owner} = :value"
            " RETURNING key_id, session_id"
        ),
        {"tenant": plan.tenant_id, "value": value},
    ).all()
    if not gone:
        return None
    done = _with_keys(plan, sorted((str(row.key_id), row.session_id) for row in gone))
    affected = _events_affected(connection, done)
    erasure_id = str(uuid7())
    # Through the model, whose DateTime writes the form the key table's times are compared in.
    connection.execute(
        erasures.insert().values(
            erasure_id=erasure_id,
            tenant_id=plan.tenant_id,
            subject_id=plan.subject_id,
            session_id=plan.session_id,
            key_ids=list(done.key_ids),
            key_count=len(done.key_ids),
            events_affected=affected,
            erased_at=datetime.now(UTC),
            erased_by=getpass.getuser(),
        )
    )
    return Erasure(erasure_id, done, affected)


def _session_events(connection: Connection, tenant_id: str, sessions: Sequence[str | None]) -> list[Any]:
    """The streams, event types and payloads of a tenant's sessions, by the events' session index."""
    rows: list[Any] = []
    for session in sessions:
        condition = "session_id = :session" if session is not None else "session_id IS NULL"
        rows += connection.execute(
            text(
                "SELECT CAST(stream_id AS text) AS stream_id, event_type, payload FROM llm_ledger_events"
                f" WHERE tenant_id = :tenant AND {condition}"
            ),
            {"tenant": tenant_id, "session": session},
        ).all()
    return rows


def _payload(value: Any) -> dict[str, Any]:
    found = orjson.loads(value) if isinstance(value, (str, bytes)) else value
    return dict(found)


def _events_affected(connection: Connection, plan: ErasurePlan) -> int:
    destroyed = set(plan.key_ids)
    return sum(
        1
        for row in _session_events(connection, plan.tenant_id, plan.sessions)
        if key_ids(row.event_type, _payload(row.payload)) & destroyed
    )


def _nothing_to_erase(connection: Connection, plan: ErasurePlan) -> NoReturn:
    """Raise the reason there is no key to destroy."""
    owner, value = _owner(plan)
    earlier = connection.execute(
        text(
            f"SELECT erased_at, erased_by FROM llm_ledger_erasures WHERE tenant_id = :tenant AND {owner} = :value"
            " ORDER BY erased_at DESC LIMIT 1"
        ),
        {"tenant": plan.tenant_id, "value": value},
    ).first()
    if earlier is not None:
        raise NothingToEraseError(
            f"nothing to erase: the content of {plan.target} was erased already ({earlier.erased_at} by"
            f" {earlier.erased_by})"
        )
    any_event = connection.execute(
        text("SELECT 1 FROM llm_ledger_events WHERE tenant_id = :tenant LIMIT 1"), {"tenant": plan.tenant_id}
    ).first()
    if any_event is None:
        raise UnknownErasureTargetError(f"tenant {plan.tenant_id!r} has no events in this ledger")
    if plan.session_id is None:
        raise UnknownErasureTargetError(
            f"no content of subject {plan.subject_id!r} is kept in tenant {plan.tenant_id!r}"
            " (no data key names that subject)"
        )
    events = _session_events(connection, plan.tenant_id, [plan.session_id])
    if not events:
        raise UnknownErasureTargetError(f"tenant {plan.tenant_id!r} has no session {plan.session_id!r}")
    if plain_texts(events).total:
        raise NothingToEraseError(
            f"nothing to erase by destroying keys: {plan.target} keeps its content in plain text (recorded in full"
            " before content was encrypted); crypto-shredding cannot erase it"
        )
    raise NothingToEraseError("nothing to erase: these events keep no content (capture hash/none)")


def plain_texts(rows: Sequence[Any]) -> PlainTexts:
    """The texts stored in plain among some events (rows of ``stream_id``, ``event_type``, ``payload``): the
    places of captured content that hold their text itself, and the failed tools' exception texts kept in
    ``message`` (``tool_error_in_plain``: the capture of the stream's ``ToolCallStarted`` tells)."""
    payloads = [(row.stream_id, row.event_type, _payload(row.payload)) for row in rows]
    captures = {stream: payload.get("capture") for stream, kind, payload in payloads if kind == "ToolCallStarted"}
    captured = sum(_plain_places(kind, payload) for _, kind, payload in payloads)
    tool_errors = sum(
        tool_error_in_plain(kind, payload, _text(captures.get(stream))) for stream, kind, payload in payloads
    )
    return PlainTexts(captured, tool_errors)


def _plain_places(event_type: str, payload: dict[str, Any]) -> int:
    """How many places of a payload keep captured text in plain (recorded in full before content was
    encrypted)."""
    return sum(record.get(kind) is not None for _, record, kind in content_fields(event_type, payload))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
