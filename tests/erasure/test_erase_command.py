"""``llm-ledger erase`` as an operator runs it: under the eraser login on PostgreSQL, what it prints, how it
exits, and that ``audit verify`` stays clean after it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llm_ledger.store import EventStore
from tests.cli.conftest import Outcome, llm_ledger  # noqa: F401  (a fixture, registered here by import)
from tests.erasure.conftest import Logins, read_back, record
from tests.events.tool_streams import Context, tool_stream


def test_erase_prints_what_it_destroyed_and_verify_stays_clean(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full", "two": "full", "hashed": "hash"})
    erased = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--yes", "--database-url", logins.eraser)
    assert erased.status == 0, erased.err
    assert f"erased session 'one' of tenant '{tenant}': destroyed 1 data key(s)" in erased.out
    # Two executions of three events with content each, and two tool runs of two (one failed).
    assert "the content of 10 event(s) can no longer be read" in erased.out
    for event, _, hidden in read_back(logins.keyholder, tenant):
        assert bool(hidden) == (event.session_id == "one" and event.event_type != "AttemptStarted"), event

    nothing = llm_ledger("erase", "--tenant", tenant, "--session", "hashed", "--yes", "--database-url", logins.eraser)
    assert (nothing.status, nothing.err.strip()) == (
        1,
        "llm-ledger: nothing to erase: these events keep no content (capture hash/none)",
    )
    unknown = llm_ledger("erase", "--tenant", tenant, "--session", "zzz", "--yes", "--database-url", logins.eraser)
    assert unknown.status == 2 and f"tenant '{tenant}' has no session 'zzz'" in unknown.err
    verified = llm_ledger("audit", "verify", "--tenant", tenant, "--no-record", "--database-url", logins.auditor)
    assert verified.status == 0, verified.out + verified.err


@pytest.mark.parametrize("target", [(), ("--session", "a", "--subject", "b")])
def test_erase_names_one_session_or_one_subject(
    target: tuple[str, ...],
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    outcome = llm_ledger("erase", "--tenant", "t", *target, "--yes")
    assert outcome.status == 2 and ("--session" in outcome.err or "one of the arguments" in outcome.err)


def test_erase_without_yes_and_no_terminal_is_refused(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    outcome = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--database-url", logins.eraser)
    assert outcome.status == 2 and "pass --yes" in outcome.err


def test_erase_says_loudly_which_texts_of_the_session_are_plain_and_stay(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    """A session with encrypted content and a tool failure recorded in full before ``error_text`` existed
    (its exception's text plain in ``message``, its arguments plain too): the erasure destroys the key, and
    says, failing, that those two texts stay readable."""
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full"}, executions=1)
    old_form = tool_stream(
        Context(tenant, session_id="one"),
        tool_name="refund",
        started_at=datetime.now(UTC),
        outcome="failed",
        message="no refund for one: card 4111 is blocked",
        capture="full",
    )
    store = EventStore(logins.writer)
    try:
        store.append(old_form)
    finally:
        store.close()

    erased = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--yes", "--database-url", logins.eraser)

    assert erased.status == 1, erased.out + erased.err
    assert f"erased session 'one' of tenant '{tenant}': destroyed 1 data key(s)" in erased.out
    assert erased.err.strip() == (
        f"llm-ledger: NOT ERASED: 2 text(s) of session 'one' of tenant '{tenant}' are stored in plain text (1 captured"
        " text(s) recorded in full before content was encrypted; 1 tool error message(s) recorded before exception"
        " texts were encrypted (ToolCallFailed message)): crypto-shredding cannot erase them, and they stay readable"
        " to whoever may read the events"
    )
    messages = {
        values["message"] for e, values, _ in read_back(logins.keyholder, tenant) if e.event_type == "ToolCallFailed"
    }
    assert "no refund for one: card 4111 is blocked" in messages, "still there: what the message said is true"
