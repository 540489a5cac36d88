"""The ledger the dashboard reads: whether it can be read at all, and bringing its read models up to
date before a view queries them."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError

from llm_ledger.dashboard.view import DashboardView
from llm_ledger.errors import LedgerError
from llm_ledger.projections import CatchUpResult, Projector
from llm_ledger.store import StoreConfigurationError, StoreUnavailableError, migrate
from llm_ledger.store.scoping import PROJECTOR_ROLE

CATCH_UP_SECONDS = 2.0
"""A view waits at most this long for the projector; a backlog larger than that is caught up over the
next loads (and the sidebar says so)."""
LOCK_WAIT_SECONDS = 0.5
"""How long to wait for a projector running elsewhere (``llm-ledger project --follow``) before showing
what is already projected."""

UPGRADE_COMMAND = "llm-ledger db upgrade"
DEMO_COMMAND = "llm-ledger demo"
VERIFY_COMMAND = "llm-ledger audit verify"
SEAL_COMMAND = "llm-ledger audit seal"
REBUILD_COMMAND = "llm-ledger project --rebuild"

_UNREACHABLE = (
    StoreUnavailableError,
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class LedgerNotReadyError(LedgerError):
    """Raised when the dashboard's database cannot be read yet; ``str()`` says why and what to do, in words
    an operator acts on."""


@dataclass(slots=True)
class LedgerSource:
    """A read-only view of the ledger and, unless catching up is turned off, a projector."""

    view: DashboardView
    projector: Projector | None
    checker: Projector | None = None
    """Asks whether an older projector built the read models: the login's projector whether it catches up
    or not; None when the login may not project (``llm-ledger project``, run as the projector, says so)."""
    _is_known_current: bool = False

    @classmethod
    def open(cls, database_url: str, *, bound_tenant: str | None, catch_up: bool) -> LedgerSource:
        """``catch_up`` is also off when the login may not take ``llm_ledger_projector`` (a reader's or an
        auditor's login, as the README prescribes for the dashboard): ``llm-ledger project --follow``,
        run as the projector, keeps its figures current."""
        view = DashboardView(database_url, bound_tenant=bound_tenant)
        projector = Projector(view.engine) if _may_project(view.engine) else None
        return cls(view, projector if catch_up else None, projector)

    def catch_up(self) -> CatchUpResult | None:
        """Apply the events recorded since the last view, for at most ``CATCH_UP_SECONDS``."""
        if self.projector is None:
            return None
        return self.projector.catch_up(timeout=CATCH_UP_SECONDS, wait_seconds=LOCK_WAIT_SECONDS)

    def is_built_by_an_older_projector(self) -> bool:
        """Whether the read models hold rows an older projector made (``Projector.is_built_by_an_older_projector``).
        Asked until the answer is no: this version's projector never makes such rows, so once they are
        rebuilt the question is never asked again in this process; until then the warning goes as soon
        as someone runs ``REBUILD_COMMAND``."""
        if self._is_known_current or self.checker is None:
            return False
        if self.checker.is_built_by_an_older_projector():
            return True
        self._is_known_current = True
        return False


_MAY_PROJECT = text(
    "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :role AND pg_has_role(session_user, oid, 'MEMBER'))"
)


def _may_project(engine: Engine) -> bool:
    """Whether this login may take the projector's role (always on SQLite, which has no roles)."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as connection:
        return bool(connection.execute(_MAY_PROJECT, {"role": PROJECTOR_ROLE}).scalar())


def is_unreachable(exc: BaseException) -> bool:
    """Whether an error means the database is out of reach (rather than a bug worth a traceback)."""
    return isinstance(exc, _UNREACHABLE)


def check_schema(database_url: str, shown_url: str) -> None:
    """Raise ``LedgerNotReadyError`` unless the database is at the schema this version reads."""
    try:
        current = migrate.current(database_url)
    except StoreConfigurationError as exc:
        raise LedgerNotReadyError(str(exc)) from None
    if current == migrate.head():
        return
    if current is None:
        raise LedgerNotReadyError(
            f"There is no ledger at {shown_url} yet. Record some executions into it with `{DEMO_COMMAND}`, "
            f"or create its tables with `{UPGRADE_COMMAND}` (same LLM_LEDGER_DATABASE_URL), then reload."
        )
    state = f"is at schema revision {current}"
    raise LedgerNotReadyError(
        f"The ledger database {shown_url} {state}; this dashboard reads revision {migrate.head()}. "
        f"Bring it up to date with `{UPGRADE_COMMAND}` (same LLM_LEDGER_DATABASE_URL), then reload."
    )
