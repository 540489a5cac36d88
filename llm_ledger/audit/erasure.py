"""Erasure by crypto-shredding: ``llm-ledger erase`` destroys the data keys of a session or a subject, so the
content they encrypt can never be read again, while every event, chain and seal stays as it was.

One transaction: find the keys (by the key table's session or subject index), count the events whose
content they encrypt (the events of those sessions, by the events' session index), delete the keys, and
record the erasure (what, when, by whom; never content). On PostgreSQL it runs as ``llm_ledger_eraser``,
scoped to the tenant: the only role that may delete a key, and only inside an erasure (the key table's
trigger wants the transaction's ``llm_ledger.erasing`` setting).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from llm_ledger.audit.errors import AuditError
from llm_ledger.events import uuid7
from llm_ledger.events.encryption import key_ids
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
class Erasure:
    """An erasure done, as recorded in ``llm_ledger_erasures``."""

    erasure_id: str
    plan: ErasurePlan
    events_affected: int

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
    said no (nothing is changed then). Raises ``UnknownErasureTargetError`` or ``NothingToEraseError``."""
    if (session_id is None) == (subject_id is None):
        raise ValueError("erase one session or one subject")
    postgresql = store.engine.dialect.name == "postgresql"
    with store.transaction(scoped=False) as connection:
        if postgresql:
            scope_transaction(connection, tenant_id, ERASER_ROLE)
            connection.execute(text("SELECT set_config('llm_ledger.erasing', 'on', true)"))
        owner = "session_id" if session_id is not None else "subject_id"
        value = session_id if session_id is not None else subject_id
        found = connection.execute(
            text(
                f"SELECT CAST(key_id AS text) AS key_id, session_id FROM llm_ledger_content_keys"
                f" WHERE tenant_id = :tenant AND {owner} = :value ORDER BY created_at, key_id"
            ),
            {"tenant": tenant_id, "value": value},
        ).all()
        plan = ErasurePlan(
            tenant_id,
            session_id,
            subject_id,
            tuple(row.key_id for row in found),
            tuple(dict.fromkeys(row.session_id for row in found)),
        )
        if not found:
            _nothing_to_erase(connection, plan, owner)
        if not confirm(plan):
            return None
        affected = _events_affected(connection, plan)
        connection.execute(
            text(f"DELETE FROM llm_ledger_content_keys WHERE tenant_id = :tenant AND {owner} = :value"),
            {"tenant": tenant_id, "value": value},
        )
        erasure_id = str(uuid7())
        record: dict[str, Any] = {
            "id": erasure_id,
            "tenant": tenant_id,
            "subject": subject_id,
            "session": session_id,
            "keys": orjson.dumps(list(plan.key_ids)).decode(),
            "count": len(plan.key_ids),
            "affected": affected,
        }
        if postgresql:
            connection.execute(
                text(
                    "INSERT INTO llm_ledger_erasures (erasure_id, tenant_id, subject_id, session_id, key_ids,"
                    " key_count, events_affected, erased_by) VALUES (CAST(:id AS uuid), :tenant, :subject, :session,"
                    " CAST(:keys AS jsonb), :count, :affected, session_user)"
                ),
                record,
            )
        else:  # through the model, whose DateTime writes the form the key table's times are compared in
            connection.execute(
                erasures.insert().values(
                    erasure_id=erasure_id,
                    tenant_id=tenant_id,
                    subject_id=subject_id,
                    session_id=session_id,
                    key_ids=list(plan.key_ids),
                    key_count=len(plan.key_ids),
                    events_affected=affected,
                    erased_at=datetime.now(UTC),
                    erased_by=getpass.getuser(),
                )
            )
    return Erasure(erasure_id, plan, affected)


def _session_events(connection: Connection, tenant_id: str, sessions: Sequence[str | None]) -> list[Any]:
    """The event types and payloads of a tenant's sessions, by the events' session index."""
    rows: list[Any] = []
    for session in sessions:
        condition = "session_id = :session" if session is not None else "session_id IS NULL"
        rows += connection.execute(
            text(f"SELECT event_type, payload FROM llm_ledger_events WHERE tenant_id = :tenant AND {condition}"),
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


def _nothing_to_erase(connection: Connection, plan: ErasurePlan, owner: str) -> None:
    """Raise the reason there is no key to destroy."""
    value = plan.session_id if plan.session_id is not None else plan.subject_id
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
    if any(_plain_full(row.event_type, _payload(row.payload)) for row in events):
        raise NothingToEraseError(
            f"nothing to erase by destroying keys: {plan.target} keeps its content in plain text (recorded in full"
            " before content was encrypted); crypto-shredding cannot erase it"
        )
    raise NothingToEraseError("nothing to erase: these events keep no content (capture hash/none)")


def _plain_full(event_type: str, payload: dict[str, Any]) -> bool:
    if event_type == "ExecutionStarted":
        return payload.get("input", {}).get("messages") is not None
    if event_type in ("AttemptSucceeded", "ExecutionSucceeded"):
        return payload.get("output", {}).get("text") is not None
    return False
