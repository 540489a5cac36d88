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
``message``) stay readable: the plan counts them (``ErasurePlan.plain``, shown before the confirmation),
the erasure counts them again once committed (``Erasure.plain``), and ``llm-ledger erase`` says so. The
count reads stored payloads, whatever they hold: one it cannot read is counted apart (``unreadable``), never
an error, and a count that fails, with the plan or after the commit, is reported (``not_counted``): no
payload and no count can stop or undo the destruction of the keys.
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
from llm_ledger.events.encryption import content_fields, tool_error_in_plain
from llm_ledger.store import EventStore
from llm_ledger.store.schema import erasures
from llm_ledger.store.scoping import ERASER_ROLE, scope_transaction


class NothingToEraseError(AuditError):
    """The session or subject has events but no key to destroy (capture hash/none, or erased already)."""


class UnknownErasureTargetError(AuditError):
    """No such tenant, session or subject in the ledger."""


@dataclass(frozen=True, slots=True)
class PlainTexts:
    """The texts of an erasure's sessions stored in plain, which destroying keys cannot erase."""

    captured: int = 0
    """Places of captured content recorded in full before content was encrypted."""
    tool_errors: int = 0
    """Failed tools' exception texts recorded in full before ``error_text`` existed: plain in ``message``."""
    unreadable: int = 0
    """Events whose payload could not be read for plain text (not a JSON object, or not of its event type's
    form: altered or damaged): they may keep texts in plain that no one counted."""
    not_counted: str | None = None
    """Why the texts could not be counted at all (a database error after the erasure's commit), if so."""

    @property
    def total(self) -> int:
        return self.captured + self.tool_errors

    @property
    def all_clear(self) -> bool:
        """Whether the count ran, read every payload and found no text in plain."""
        return not self.total and not self.unreadable and self.not_counted is None


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """What an erasure is about to destroy."""

    tenant_id: str
    session_id: str | None
    subject_id: str | None
    key_ids: tuple[str, ...]
    sessions: tuple[str | None, ...]
    plain: PlainTexts = PlainTexts()
    """The texts of those sessions stored in plain when the plan was read (``plain_texts_of``)."""

    @property
    def target(self) -> str:
        what = f"session {self.session_id!r}" if self.session_id is not None else f"subject {self.subject_id!r}"
        return f"{what} of tenant {self.tenant_id!r}"


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure done, as recorded in ``llm_ledger_erasures``; and the texts of its sessions it could not
    erase, stored in plain (counted after the erasure's commit, not recorded in the table)."""

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
    plan = dataclasses.replace(plan, plain=_plain_counted(store, plan))
    if not confirm(plan):
        return None
    with _eraser_transaction(store, tenant_id) as connection:
        if store.engine.dialect.name == "postgresql":
            done = _erase_postgresql(connection, plan)
        else:
            done = _erase_sqlite(connection, plan)
        if done is None:  # erased by another erasure since the plan
            _nothing_to_erase(connection, plan)
    return dataclasses.replace(done, plain=_plain_counted(store, done.plan))


def _plain_counted(store: EventStore, plan: ErasurePlan) -> PlainTexts:
    """The plain texts, counted in a transaction of its own, with the plan and again once the keys are
    destroyed and recorded: the erasure's transaction (and, on PostgreSQL, its lock, which holds the
    sessions' key stores) is not kept open for the scan of the sessions' events, and nothing the count meets
    can stop the erasure before (a failed count is said in the question) or undo it after."""
    try:
        with _eraser_transaction(store, plan.tenant_id) as connection:
            return plain_texts_of(connection, plan)
    except Exception as exc:  # noqa: BLE001  (the keys are gone and recorded: say the count failed, never hide that)
        return PlainTexts(not_counted=f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")


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
    found = _keys_of(connection, plan)
    if not found:
        _nothing_to_erase(connection, plan)
    return _with_keys(plan, found)


def _keys_of(connection: Connection, plan: ErasurePlan) -> list[tuple[str, str | None]]:
    """The ids and sessions of the keys of the plan's session or subject, by the key table's index."""
    owner, value = _owner(plan)
    found = connection.execute(
        text(
            f"SELECT CAST(key_id AS text) AS key_id, session_id FROM llm_ledger_content_keys"
            f" WHERE tenant_id = :tenant AND {owner} = :value ORDER BY key_id"
        ),
        {"tenant": plan.tenant_id, "value": value},
    ).all()
    return [(row.key_id, row.session_id) for row in found]


def _with_keys(plan: ErasurePlan, keys: Sequence[tuple[str, str | None]]) -> ErasurePlan:
    return dataclasses.replace(
        plan, key_ids=tuple(key for key, _ in keys), sessions=tuple(dict.fromkeys(session for _, session in keys))
    )


def _erase_postgresql(connection: Connection, plan: ErasurePlan) -> Erasure | None:
    """``llm_ledger_erase`` (migration 0011): under the lock the key store takes too, it deletes the keys,
    counts the events they encrypted and records exactly the keys deleted, in one step; the eraser holds no
    DELETE of its own.

    It returns the key ids, not their sessions, which the count of plain texts after the commit needs (a
    key stored since the plan may be of a session the plan does not name): they are read first, under the
    same lock, taken here before the call (the call takes it again, held already), so that no key of the
    session or subject is stored between that read and the DELETE."""
    owner, value = _owner(plan)
    connection.execute(
        text("SELECT pg_advisory_xact_lock(llm_ledger_erasure_lock(:tenant, :kind, :value))"),
        {"tenant": plan.tenant_id, "kind": owner.removesuffix("_id"), "value": value},
    )
    session_of = dict(_keys_of(connection, plan))
    done = connection.execute(
        text(
            "SELECT CAST(erasure_id AS text) AS erasure_id, key_ids, events_affected"
            " FROM llm_ledger_erase(:tenant, :session, :subject)"
        ),
        {"tenant": plan.tenant_id, "session": plan.session_id, "subject": plan.subject_id},
    ).first()
    if done is None:
        return None
    # Every key deleted was read under the lock; were one not, its session would be unknown, taken as none:
    # its sessionless streams (those that name it) are counted, and nothing here may undo the erasure.
    keys = [(str(key), session_of.get(str(key))) for key in done.key_ids]
    return Erasure(str(done.erasure_id), _with_keys(plan, keys), int(done.events_affected))


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
    """The streams, event types and payloads (as JSON text, on both dialects: a JSONB string would come back
    as a Python str, indistinguishable from SQLite's text of an object) of a tenant's sessions, by the
    events' session index. SQLite's as bytes: its text may hold bytes that are no UTF-8 (``json_valid``
    takes them), on which the driver's decoding raises, which would stop the scan and the erasure with it;
    ``orjson`` reads bytes and calls such a payload no JSON."""
    as_json_text = "CAST(payload AS text)" if connection.dialect.name == "postgresql" else "CAST(payload AS BLOB)"
    rows: list[Any] = []
    for session in sessions:
        condition = "session_id = :session" if session is not None else "session_id IS NULL"
        rows += connection.execute(
            text(
                f"SELECT CAST(stream_id AS text) AS stream_id, event_type, {as_json_text} AS payload"
                f" FROM llm_ledger_events WHERE tenant_id = :tenant AND {condition}"
            ),
            {"tenant": tenant_id, "session": session},
        ).all()
    return rows


def _payload(value: Any) -> Any:
    """A stored payload's JSON text parsed, whatever it holds; None for text that is no JSON."""
    try:
        return orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return None


def named_key_ids(payload: Any) -> set[str]:
    """The key ids a stored payload names, wherever they are and whatever else it holds: every ``key_id`` of
    an ``encrypted`` value at any depth, as ``llm_ledger_erase`` counts affected events on PostgreSQL
    (``lax $.**.encrypted.key_id``). Never an error: a payload that is not of its event type's form names
    what it names."""
    found: set[str] = set()
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending += value
        elif isinstance(value, dict):
            encrypted = value.get("encrypted")
            for record in encrypted if isinstance(encrypted, list) else [encrypted]:
                if isinstance(record, dict) and isinstance(record.get("key_id"), str):
                    found.add(record["key_id"])
            pending += value.values()
    return found


def _events_affected(connection: Connection, plan: ErasurePlan) -> int:
    destroyed = set(plan.key_ids)
    return sum(
        1
        for row in _session_events(connection, plan.tenant_id, plan.sessions)
        if named_key_ids(_payload(row.payload)) & destroyed
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
    plain = plain_texts(events)
    if plain.total:
        raise NothingToEraseError(
            f"nothing to erase by destroying keys: {plan.target} keeps its content in plain text (recorded in full"
            " before content was encrypted); crypto-shredding cannot erase it"
        )
    if plain.unreadable:
        raise NothingToEraseError(
            f"nothing to erase by destroying keys: {plan.target} has no data key, and {plain.unreadable} of its"
            " event(s) could not be read for plain text (altered or damaged: see llm-ledger audit verify)"
        )
    raise NothingToEraseError("nothing to erase: these events keep no content (capture hash/none)")


def plain_texts_of(connection: Connection, plan: ErasurePlan) -> PlainTexts:
    """The texts stored in plain that can be attributed to what ``plan`` erases.

    Events carry no subject: a key's session says whose events they are. A key with a session: every event
    of that session. A key without one (a subject's content recorded outside any session, so only a subject
    erasure has it): not every sessionless event of the tenant, which would count other subjects' texts as
    this subject's, but the sessionless streams that name one of the plan's keys. A stream is one subject's
    (its header's), and a stream of this subject recorded since content is encrypted names its key in its
    ciphertexts; its texts in plain (a failed tool's message recorded before ``error_text``) are counted. A
    sessionless stream recorded wholly before encryption names no key and no subject: it cannot be
    attributed, and is not counted (the count is then a floor; docs/AUDIT.md lists such texts by tenant)."""
    rows = _session_events(connection, plan.tenant_id, [s for s in plan.sessions if s is not None])
    if None in plan.sessions:
        rows += _streams_naming(_session_events(connection, plan.tenant_id, [None]), set(plan.key_ids))
    return plain_texts(rows)


def _streams_naming(rows: Sequence[Any], key_ids: set[str]) -> list[Any]:
    """The rows of the streams in which some event names one of ``key_ids``."""
    streams = {row.stream_id for row in rows if named_key_ids(_payload(row.payload)) & key_ids}
    return [row for row in rows if row.stream_id in streams]


def plain_texts(rows: Sequence[Any]) -> PlainTexts:
    """The texts stored in plain among some events (rows of ``stream_id``, ``event_type``, ``payload`` as
    JSON text or its bytes): the places of captured content that hold their text itself, and the failed
    tools' exception texts kept in ``message`` (``tool_error_in_plain``: the capture of the stream's
    ``ToolCallStarted`` tells). A payload that is not a JSON object, or not of its event type's form (a
    field missing or of another type: altered or damaged), is counted apart as ``unreadable``, never raised:
    this count runs on whatever the database holds, and one such event must not stop an erasure."""
    payloads: list[tuple[str, str, dict[str, Any]]] = []
    unreadable = 0
    for row in rows:
        payload = _payload(row.payload)
        if isinstance(payload, dict):
            payloads.append((row.stream_id, row.event_type, payload))
        else:
            unreadable += 1
    captures = {stream: payload.get("capture") for stream, kind, payload in payloads if kind == "ToolCallStarted"}
    captured = tool_errors = 0
    for stream, kind, payload in payloads:
        try:
            places = _plain_places(kind, payload)
            in_message = tool_error_in_plain(kind, payload, _text(captures.get(stream)))
        # What reading a JSON object of the wrong form raises: a field missing (KeyError), a list indexed by a
        # name or a number iterated (TypeError), a string where a record should be (AttributeError).
        except (LookupError, TypeError, AttributeError):
            unreadable += 1
            continue
        captured += places
        tool_errors += in_message
    return PlainTexts(captured, tool_errors, unreadable)


def _plain_places(event_type: str, payload: dict[str, Any]) -> int:
    """How many places of a payload keep captured text in plain (recorded in full before content was
    encrypted)."""
    return sum(record.get(kind) is not None for _, record, kind in content_fields(event_type, payload))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
