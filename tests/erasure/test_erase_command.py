"""``llm-ledger erase`` as an operator runs it: under the eraser login on PostgreSQL, what it prints, how it
exits, and that ``audit verify`` stays clean after it."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.pool import NullPool

from llm_ledger.audit import erasure
from llm_ledger.store import EventStore, create_store_engine
from tests.cli.conftest import Outcome, llm_ledger  # noqa: F401  (a fixture, registered here by import)
from tests.erasure.conftest import Logins, read_back, record, record_plain_tool_failure, rewrite_payloads
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
    record_plain_tool_failure(logins.writer, tenant, "one")

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


def test_a_payload_that_cannot_be_read_does_not_stop_the_erasure_and_is_reported(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    """Stored payloads tampered with in the erased session (an ``ExecutionStarted`` without its ``input``, a
    ``ToolCallSucceeded`` that is no JSON object): the count of plain texts cannot read them, and says so,
    failing; the keys are destroyed and the erasure recorded all the same (it made the erasure roll back)."""
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full", "two": "full"}, executions=1)
    no_input = rewrite_payloads(
        logins,
        tenant,
        "session_id = 'one' AND event_type = 'ExecutionStarted'",
        postgresql="payload - 'input'",
        sqlite="json_remove(payload, '$.input')",
    )
    no_object = rewrite_payloads(
        logins,
        tenant,
        "session_id = 'one' AND event_type = 'ToolCallSucceeded'",
        postgresql="'[1, 2]'::jsonb",
        sqlite="'[1, 2]'",
    )
    assert (no_input, no_object) == (1, 1)

    erased = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--yes", "--database-url", logins.eraser)

    assert erased.status == 1, erased.out + erased.err
    assert f"erased session 'one' of tenant '{tenant}': destroyed 1 data key(s)" in erased.out
    assert erased.err.strip() == (
        "llm-ledger: NOT CHECKED: 2 event(s) could not be read for plain text (a payload that is not of its event"
        f" type's form: altered or damaged, see llm-ledger audit verify), in session 'one' of tenant '{tenant}':"
        " they may keep texts stored in plain that crypto-shredding cannot erase"
    )
    engine = create_store_engine(logins.superuser, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            keys = connection.execute(
                text("SELECT session_id FROM llm_ledger_content_keys WHERE tenant_id = :t"), {"t": tenant}
            ).scalars()
            assert sorted(keys) == ["two"], "the erased session's key is gone, the other one kept"
            recorded = connection.execute(
                text("SELECT session_id, key_count FROM llm_ledger_erasures WHERE tenant_id = :t"), {"t": tenant}
            ).all()
            assert [tuple(row) for row in recorded] == [("one", 1)]
    finally:
        engine.dispose()


class _Terminal(io.StringIO):
    """Standard input as a person at a terminal gives it: the answers they type."""

    def isatty(self) -> bool:
        return True


def test_the_question_before_the_keys_go_says_which_texts_will_stay_readable(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    """Asked on a terminal, the erasure says before destroying anything that the session's plain texts will
    stay (it said so only after the keys were gone); answered no, it destroys nothing."""
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full"}, executions=1)
    store = EventStore(logins.writer)
    try:  # a tool failure recorded in full before encryption: its arguments and its message in plain
        store.append(
            tool_stream(
                Context(tenant, session_id="one"),
                tool_name="refund",
                started_at=datetime.now(UTC),
                outcome="failed",
                message="no refund for one: card 4111 is blocked",
                capture="full",
            )
        )
    finally:
        store.close()
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))

    declined = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--database-url", logins.eraser)

    assert declined.status == 0, declined.out + declined.err
    assert declined.out == (
        f"destroy 1 data key(s) of session 'one' of tenant '{tenant}'? The content they encrypt can never be read"
        " again; but 2 text(s) of it are stored in plain text (1 captured text(s) recorded in full before content"
        " was encrypted; 1 tool error message(s) recorded before exception texts were encrypted (ToolCallFailed"
        " message)), which crypto-shredding cannot erase: they stay readable [y/N] nothing erased\n"
    )
    assert all(not hidden for _, _, hidden in read_back(logins.keyholder, tenant)), "no key destroyed"


def test_a_count_that_fails_after_the_erasure_is_said_and_the_erasure_stands(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    """The plain texts are counted again once the keys are destroyed and recorded: a database error there
    (made here on that second count) is reported, failing, and the erasure is not undone."""
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full"}, executions=1)
    counts: list[int] = []
    count = erasure.plain_texts_of

    def failing_after_the_commit(connection: Connection, plan: erasure.ErasurePlan) -> erasure.PlainTexts:
        counts.append(1)
        if len(counts) == 2:
            connection.execute(text("SELECT no_such_column FROM llm_ledger_events"))
        return count(connection, plan)

    monkeypatch.setattr(erasure, "plain_texts_of", failing_after_the_commit)

    erased = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--yes", "--database-url", logins.eraser)

    assert erased.status == 1 and len(counts) == 2, erased.out + erased.err
    assert f"erased session 'one' of tenant '{tenant}': destroyed 1 data key(s)" in erased.out
    assert erased.err.startswith(
        f"llm-ledger: NOT CHECKED: the texts of session 'one' of tenant '{tenant}' stored in plain could not be"
        " counted after the erasure ("
    ), erased.err
    assert "no_such_column" in erased.err and "Traceback" not in erased.err
    assert all(
        hidden for event, _, hidden in read_back(logins.keyholder, tenant) if event.event_type == "ToolCallStarted"
    )


@pytest.mark.parametrize("logins", ["sqlite"], indirect=True)  # a jsonb value is always valid UTF-8
def test_a_payload_that_is_not_utf_8_does_not_stop_the_erasure(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    """An SQLite payload whose bytes are no UTF-8 (``json_valid`` takes it): read as text, the driver raised on
    fetching it, which stopped the plan and, in the events-affected count, rolled the erasure back. It is one
    unreadable event, said, and the key goes."""
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full"}, executions=1)
    not_utf_8 = rewrite_payloads(
        logins,
        tenant,
        "session_id = 'one' AND event_type = 'ToolCallSucceeded'",
        postgresql="payload",
        sqlite="CAST(X'7B22726573756C74223A22FF227D' AS TEXT)",  # {"result":"\xff"}
    )
    assert not_utf_8 == 1

    erased = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--yes", "--database-url", logins.eraser)

    assert erased.status == 1, erased.out + erased.err
    assert f"erased session 'one' of tenant '{tenant}': destroyed 1 data key(s)" in erased.out
    assert erased.err.startswith("llm-ledger: NOT CHECKED: 1 event(s) could not be read for plain text"), erased.err
    engine = create_store_engine(logins.superuser, poolclass=NullPool)
    try:  # read_back cannot read that event either: the tables themselves
        with engine.connect() as connection:
            keys = connection.execute(
                text("SELECT count(*) FROM llm_ledger_content_keys WHERE tenant_id = :t"), {"t": tenant}
            ).scalar()
            recorded = connection.execute(
                text("SELECT session_id FROM llm_ledger_erasures WHERE tenant_id = :t"), {"t": tenant}
            ).scalars()
            assert (keys, list(recorded)) == (0, ["one"]), "the session's key is destroyed, and recorded"
    finally:
        engine.dispose()


def test_a_count_that_fails_before_the_question_is_said_and_does_not_stop_the_erasure(
    logins: Logins,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm_ledger: Callable[..., Outcome],  # noqa: F811
) -> None:
    """The count with the plan fails (a database error, made here on that first count): the question says
    the texts could not be counted, and, answered yes, the keys go (the error stopped the erasure)."""
    record(logins.writer, tmp_path / "spool", tenant, {"one": "full"}, executions=1)
    counts: list[int] = []
    count = erasure.plain_texts_of

    def failing_with_the_plan(connection: Connection, plan: erasure.ErasurePlan) -> erasure.PlainTexts:
        counts.append(1)
        if len(counts) == 1:
            connection.execute(text("SELECT no_such_column FROM llm_ledger_events"))
        return count(connection, plan)

    monkeypatch.setattr(erasure, "plain_texts_of", failing_with_the_plan)
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))

    erased = llm_ledger("erase", "--tenant", tenant, "--session", "one", "--database-url", logins.eraser)

    assert erased.status == 0 and len(counts) == 2, erased.out + erased.err
    question, _, said = erased.out.partition("[y/N] ")
    assert question.startswith(
        f"destroy 1 data key(s) of session 'one' of tenant '{tenant}'? The content they encrypt can never be read"
        " again; but its texts stored in plain could not be counted ("
    ), question
    assert "no_such_column" in question and "crypto-shredding cannot erase such texts" in question
    assert said.startswith(f"erased session 'one' of tenant '{tenant}': destroyed 1 data key(s)"), said
    assert all(
        hidden for event, _, hidden in read_back(logins.keyholder, tenant) if event.event_type == "ToolCallStarted"
    )
