"""Every ```sql block of docs/AUDIT.md, run with psql against the audited demo ledger on PostgreSQL as the
doc says to run it: as the login its Connecting section tells an administrator to make (not a superuser),
in the auditor's view and, for the tenant-scoped ones, in a tenant's reader view too (same rows). Each
block returns rows where the dataset implies rows, and the figures the events imply; a block added to the
doc without an expectation here fails. What each kind of login sees (the section's table) is checked
row by row."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import text

from llm_ledger.events import DigestSecret, canonical_json
from llm_ledger.store import create_store_engine
from tests.audit_sql import truth
from tests.audit_sql.auditdoc import (
    AUDIT_MD,
    PsqlError,
    SqlBlock,
    psql_url,
    run_psql,
    run_psql_on_after_errors,
    sql_blocks,
)
from tests.audit_sql.conftest import AuditedLedger
from tests.audit_sql.ledger import DIGEST_MESSAGES, DIGEST_TENANT
from tests.digests import key_id, keyed, tenant_key

Rows = list[dict[str, str]]
BLOCKS = sql_blocks(AUDIT_MD.read_text(encoding="utf-8"))
ROOT = AUDIT_MD.parents[1]
AGENT = "support"


@dataclass(frozen=True)
class Facts:
    """What a block's result is checked against."""

    ledger: AuditedLedger
    variables: dict[str, str]

    def executions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        rows = truth.executions(self.ledger.events).values()
        return [row for row in rows if tenant is None or row["tenant_id"] == tenant]

    def attempts(self, tenant: str) -> list[dict[str, Any]]:
        return [row for row in truth.attempts(self.ledger.events).values() if row["tenant_id"] == tenant]

    def fallbacks(self, tenant: str) -> list[dict[str, Any]]:
        return [row for row in truth.fallbacks(self.ledger.events) if row["tenant_id"] == tenant]

    def tool_calls(self, tenant: str) -> list[dict[str, Any]]:
        return [row for row in truth.tool_calls(self.ledger.events).values() if row["tenant_id"] == tenant]

    @property
    def tenant(self) -> str:
        return self.variables["tenant"]


Check = Callable[[Rows, Facts], None]
Kind = Literal["login", "auditor_session", "reader_session", "tenant", "all_tenants", "retention", "erasure"]
"""``retention``: run by ``tests/audit/test_retention.py`` on a ledger with an archived month, as the auditor."""


@dataclass(frozen=True)
class Expect:
    """How a block is run: ``tenant`` blocks as the auditor and as the tenant's reader (the same rows);
    ``all_tenants`` blocks as the auditor (several tenants) and as the reader (its tenant only);
    ``check`` then holds the auditor's rows to the events. ``erasure`` blocks run on a ledger with erasures,
    in tests/erasure/test_erasure.py."""

    kind: Kind
    check: Check | None = None


def ids(rows: Rows, column: str = "execution_id") -> list[str]:
    return sorted(row[column] for row in rows)


def total(rows: Rows, column: str) -> int:
    return sum(int(row[column]) for row in rows)


def _sent_by_agent(rows: Rows, facts: Facts) -> None:
    attempts = [row for row in facts.attempts(facts.tenant) if row["agent_id"] == AGENT]
    assert total(rows, "attempts") == len(attempts)
    # An execution counts once under each model it called.
    assert total(rows, "executions") == len({(row["execution_id"], row["model"]) for row in attempts})
    assert {(row["provider"], row["model"]) for row in rows} == {(a["provider"], a["model"]) for a in attempts}


def _executions_of_agent(rows: Rows, facts: Facts) -> None:
    expected = [row["execution_id"] for row in facts.executions(facts.tenant) if row["agent_id"] == AGENT]
    assert ids(rows) == sorted(expected)


def _the_digest_execution(rows: Rows, facts: Facts) -> None:
    assert ids(rows) == [str(facts.ledger.extras.digest_execution)]


def _the_tenant_s_key_ids(rows: Rows, facts: Facts) -> None:
    """One key id: the tenant's, under the one secret the dataset was written with."""
    assert [row["input_key_id"] for row in rows] == [key_id(tenant_key(facts.tenant))]


def _the_legacy_execution(rows: Rows, facts: Facts) -> None:
    """The plain SHA-256 of the messages (or the answer) finds the execution recorded before keyed digests,
    never the one that sent the same messages with a keyed digest."""
    assert ids(rows) == [str(facts.ledger.extras.legacy_execution)]


def _fallbacks(rows: Rows, facts: Facts) -> None:
    expected = facts.fallbacks(facts.tenant)
    assert len(rows) == len(expected)
    assert {str(stream) for stream in facts.ledger.extras.failed_over} <= set(ids(rows))
    assert Counter(row["succeeded_after"] for row in rows) == Counter(
        {True: "t", False: "f"}[row["succeeded_after"]] for row in expected
    )


def _fallback_chains(rows: Rows, facts: Facts) -> None:
    expected = facts.fallbacks(facts.tenant)
    assert total(rows, "fallbacks") == len(expected)
    assert total(rows, "succeeded_after") == sum(row["succeeded_after"] for row in expected)


def _rate_limits(rows: Rows, facts: Facts) -> None:
    expected = [row for row in facts.attempts(facts.tenant) if row["error_type"] == "rate_limit"]
    assert total(rows, "rate_limited") == len(expected) > 0
    assert total(rows, "retried") + total(rows, "fell_back") == len(expected) - sum(
        row["next_action"] == "fail" for row in expected
    )


def _failed_executions(rows: Rows, facts: Facts) -> None:
    expected = [row for row in facts.executions(facts.tenant) if row["outcome"] == "failed"]
    assert ids(rows) == sorted(row["execution_id"] for row in expected)
    assert {row["error_type"] for row in rows} <= {"all_models_failed", "stream_interrupted", "deadline_exceeded"}


def _failure_rates(rows: Rows, facts: Facts) -> None:
    assert total(rows, "failed_attempts") == sum(row["outcome"] == "failed" for row in facts.attempts(facts.tenant))


def _incomplete(rows: Rows, facts: Facts) -> None:
    extras = facts.ledger.extras
    assert {row["execution_id"]: row["kind"] for row in rows} == {
        **{str(stream): "execution" for stream in extras.incomplete},
        **{str(stream): "tool_call" for stream in extras.incomplete_tool_calls},
    }
    assert {(row["kind"], row["last_event_type"]) for row in rows} == {
        ("execution", "ExecutionStarted"),
        ("tool_call", "ToolCallStarted"),
    }


def _session_tool_calls(rows: Rows, facts: Facts) -> None:
    expected = [row for row in facts.tool_calls(facts.tenant) if row["session_id"] == facts.variables["session"]]
    assert ids(rows, "tool_execution_id") == sorted(row["tool_execution_id"] for row in expected)
    # Each tool execution of the session, one that no execution asked for too (an inner join dropped it).
    assert str(facts.ledger.extras.unasked_tool_call) in ids(rows, "tool_execution_id")
    assert [row["started_at"] for row in rows] == sorted(row["started_at"] for row in rows)
    executions = truth.executions(facts.ledger.events)
    for row in rows:
        asked = executions[row["execution_id"]]["outcome"] if row["execution_id"] else ""
        assert row["execution_outcome"] == asked


def _tool_calls_per_step(rows: Rows, facts: Facts) -> None:
    expected = Counter((row["step"], row["tool_name"], row["outcome"]) for row in facts.tool_calls(facts.tenant))
    for outcome in ("failed", "incomplete"):
        counted = {(r["step"], r["tool_name"]): int(r[outcome]) for r in rows if int(r[outcome])}
        assert counted == {(step, tool): n for (step, tool, o), n in expected.items() if o == outcome}
    assert {(r["step"], r["tool_name"]): int(r["calls"]) for r in rows} == {
        (step, tool): sum(n for (s, t, _), n in expected.items() if (s, t) == (step, tool))
        for step, tool, _ in expected
    }


def _unsuccessful_tool_calls(rows: Rows, facts: Facts) -> None:
    expected = [row for row in facts.tool_calls(facts.tenant) if row["outcome"] != "succeeded"]
    assert ids(rows, "tool_call_id") == sorted(row["tool_call_id"] for row in expected)
    assert {"call_refund", "call_lookup"} <= {row["tool_call_id"] for row in rows}  # the digest execution's
    assert {row["outcome"] for row in rows} == {"failed", "incomplete"}


def _one_stream(rows: Rows, facts: Facts) -> None:
    execution = truth.executions(facts.ledger.events)[facts.variables["execution"]]
    assert [int(row["stream_position"]) for row in rows] == list(range(execution["events"]))
    assert {row["linked"] for row in rows} == {"t"}
    assert rows[-1]["hash"] == execution["head_hash"]


def _session_timeline(rows: Rows, facts: Facts) -> None:
    expected = [row for row in facts.attempts(facts.tenant) if row["session_id"] == facts.variables["session"]]
    assert len(rows) == len(expected)


def _models_used(rows: Rows, facts: Facts) -> None:
    attempts = facts.attempts(facts.tenant)
    assert total(rows, "attempts") == len(attempts)
    assert total(rows, "succeeded") == sum(row["outcome"] == "succeeded" for row in attempts)


def _tenants_at_a_glance(rows: Rows, facts: Facts) -> None:
    expected = Counter(row["tenant_id"] for row in facts.executions())
    assert {row["tenant_id"]: int(row["executions"]) for row in rows} == expected
    assert total(rows, "incomplete") == len(facts.ledger.extras.incomplete)


def _tenant_events(facts: Facts) -> int:
    return sum(event.tenant_id == facts.tenant for event in facts.ledger.events)


def _seals(rows: Rows, facts: Facts) -> None:
    assert rows, "the ledger was sealed"
    assert [int(row["sequence"]) for row in rows] == list(range(1, len(rows) + 1))
    assert total(rows, "event_count") == _tenant_events(facts)


def _verify_runs(rows: Rows, facts: Facts) -> None:
    newest = rows[0]
    assert newest["ok"] == "t" and newest["broken_streams"] == "0" and newest["unsealed_events"] == "0"
    assert int(newest["events"]) == _tenant_events(facts)
    # Every stream: the executions and the tools' executions.
    assert int(newest["streams"]) == len(
        {event.stream_id for event in facts.ledger.events if event.tenant_id == facts.tenant}
    )


def _newest_findings(rows: Rows, facts: Facts) -> None:
    # The ledger is intact: what the run found are the streams left without a terminal event.
    assert {row["severity"] for row in rows} == {"incomplete"}
    extras = facts.ledger.extras
    assert sorted(row["stream_id"] for row in rows) == sorted(
        str(s) for s in (*extras.incomplete, *extras.incomplete_tool_calls)
    )


EXPECTED: dict[str, Expect] = {
    "Connecting [1]": Expect("login"),
    "Connecting [2]": Expect("auditor_session"),
    "Connecting [3]": Expect("reader_session"),
    "What did tenant X's agent Y send to which providers in the last seven days? [1]": Expect("tenant", _sent_by_agent),
    "What did tenant X's agent Y send to which providers in the last seven days? [2]": Expect(
        "tenant", _executions_of_agent
    ),
    "Is this the prompt that was sent? [1]": Expect("tenant", _the_digest_execution),
    "Is this the prompt that was sent? [2]": Expect("tenant", _the_digest_execution),
    "Is this the prompt that was sent? [3]": Expect("tenant", _the_tenant_s_key_ids),
    "Executions recorded before keyed digests [1]": Expect("tenant", _the_legacy_execution),
    "Executions recorded before keyed digests [2]": Expect("tenant", _the_legacy_execution),
    "Which executions failed over, and why? [1]": Expect("tenant", _fallbacks),
    "Which executions failed over, and why? [2]": Expect("tenant", _fallback_chains),
    "Which attempts hit a rate limit? [1]": Expect("tenant", _rate_limits),
    "Failed executions and their last error [1]": Expect("tenant", _failed_executions),
    "Failed executions and their last error [2]": Expect("tenant", _failure_rates),
    "Incomplete executions [1]": Expect("all_tenants", _incomplete),
    "One execution's full event stream, with its hashes [1]": Expect("tenant", _one_stream),
    "A session's timeline [1]": Expect("tenant", _session_timeline),
    "Tool calls [1]": Expect("tenant", _session_tool_calls),
    "Tool calls [2]": Expect("tenant", _tool_calls_per_step),
    "Tool calls [3]": Expect("tenant", _unsuccessful_tool_calls),
    "Who used which model, when [1]": Expect("tenant", _models_used),
    "Tenants at a glance [1]": Expect("all_tenants", _tenants_at_a_glance),
    "The seals of a tenant [1]": Expect("tenant", _seals),
    "The last verify runs over a tenant [1]": Expect("tenant", _verify_runs),
    "The last verify runs over a tenant [2]": Expect("all_tenants", _newest_findings),
    "What left the database, when, by whom, to which files [1]": Expect("retention"),
    # Run on a ledger with erasures, by tests/erasure/test_erasure.py (this dataset captures no content).
    "Erasure [1]": Expect("erasure"),
    "Erasure [2]": Expect("erasure"),
    "Erasure [3]": Expect("erasure"),
}


def block_of(kind: Kind) -> SqlBlock:
    (block,) = (block for block in BLOCKS if EXPECTED.get(block.key, Expect("tenant")).kind == kind)
    return block


def block_of_heading(heading: str) -> str:
    """The SQL of the one block under ``heading``."""
    (block,) = (block for block in BLOCKS if block.heading == heading)
    return block.sql


@pytest.fixture(scope="module")
def facts(audited_postgresql: AuditedLedger) -> Facts:
    """The ledger and the psql variables: the tenant that holds the digest check, its busiest session,
    and an execution that fell back and failed."""
    sessions = Counter(
        event.session_id for event in audited_postgresql.events if event.tenant_id == DIGEST_TENANT and event.session_id
    )
    variables = {
        "tenant": DIGEST_TENANT,
        "agent": AGENT,
        "session": sessions.most_common(1)[0][0],
        "execution": str(audited_postgresql.extras.failed_over[0]),
        "messages": json.dumps([{"role": role, "content": content} for role, content in DIGEST_MESSAGES]),
        "response": audited_postgresql.extras.digest_response,
        # What `llm-ledger audit digest` prints with the tenant's key (test_the_digest_commands_...).
        "prompt_digest": keyed(DIGEST_TENANT, canonical_json([{"role": r, "content": c} for r, c in DIGEST_MESSAGES])),
        "response_digest": keyed(DIGEST_TENANT, audited_postgresql.extras.digest_response.encode()),
    }
    return Facts(audited_postgresql, variables)


@pytest.fixture(scope="module")
def logins(facts: Facts) -> Iterator[Callable[..., str]]:
    """Makes logins of the cluster's own (``logins("llm_ledger_reader")``: granted that role only; no
    role: may only connect; ``created=False``: only a name, for a test that creates it), all dropped at
    the end."""
    made: list[str] = []

    def make(*roles: str, created: bool = True) -> str:
        name = f"llm_ledger_test_login_{uuid.uuid4().hex[:8]}"
        made.append(name)
        if created:
            grants = "".join(f'GRANT {role} TO "{name}";' for role in roles)
            run_psql(psql_url(facts.ledger.url), f'CREATE ROLE "{name}" LOGIN;{grants}', {})
        return name

    yield make
    for name in made:
        run_psql(psql_url(facts.ledger.url), f'DROP ROLE IF EXISTS "{name}";', {})


@pytest.fixture(scope="module")
def person(facts: Facts, logins: Callable[..., str]) -> str:
    """A login made as the doc tells an administrator to make one (its login block, run as the superuser)."""
    name = logins(created=False)
    run_psql(psql_url(facts.ledger.url), block_of("login").sql, {"login": name})
    return name


def psql(facts: Facts, *blocks: str, user: str | None = None, **more: str) -> Rows:
    return run_psql(psql_url(facts.ledger.url, user), "\n".join(blocks), {**facts.variables, **more})


def test_every_sql_block_of_the_audit_doc_has_an_expectation() -> None:
    keys = [block.key for block in BLOCKS]
    assert len(keys) == len(set(keys))
    assert not set(keys) - set(EXPECTED), "blocks of docs/AUDIT.md that no test runs: add them to EXPECTED"
    assert not set(EXPECTED) - set(keys), "EXPECTED names blocks that docs/AUDIT.md no longer has"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.key for block in BLOCKS])
def test_each_block_uses_only_the_variables_the_doc_explains(block: SqlBlock) -> None:
    explained = {
        "tenant", "agent", "session", "execution", "messages", "response", "login", "prompt_digest", "response_digest"
    }  # fmt: skip
    assert block.variables() <= explained


TENANTS = "SELECT DISTINCT tenant_id FROM audit_executions ORDER BY tenant_id;"
WHO = "SELECT current_user AS role, current_setting('llm_ledger.tenant_id', true) AS tenant;"


def tenants_seen(facts: Facts, *blocks: str, user: str | None) -> list[str]:
    return [row["tenant_id"] for row in psql(facts, *blocks, TENANTS, user=user)]


def every_tenant(facts: Facts) -> list[str]:
    return sorted({row["tenant_id"] for row in facts.executions()})


def test_the_login_block_makes_a_login_that_reads_as_the_auditor(facts: Facts, logins: Callable[..., str]) -> None:
    login = logins(created=False)
    with pytest.raises(PsqlError, match=f'role "{login}" does not exist'):
        psql(facts, block_of("auditor_session").sql, user=login)

    psql(facts, block_of("login").sql, login=login)

    assert psql(facts, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user;", user=login) == [{"rolsuper": "f"}]
    count = "SELECT count(*) AS executions FROM audit_executions;"
    assert psql(facts, block_of("auditor_session").sql, count, user=login) == [
        {"executions": str(len(facts.executions()))}
    ]


def _scram_verifies(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` is of ``password``
    (RFC 5802 / 7677)."""
    mechanism, parameters, keys = verifier.split("$")
    iterations, salt = parameters.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return mechanism == "SCRAM-SHA-256" and (
        base64.b64encode(hashlib.sha256(client_key).digest()).decode(),
        base64.b64encode(hmac.digest(salted, b"Server Key", "sha256")).decode(),
    ) == (stored_key, server_key)


def test_the_password_recipe_sets_the_password_typed(facts: Facts, logins: Callable[..., str]) -> None:
    connecting = AUDIT_MD.read_text(encoding="utf-8").split("## Connecting", 1)[1].split("\n## ", 1)[0]
    assert "`\\password alice`" in connecting
    login, password = logins(created=False), f"{uuid.uuid4().hex} x'\""
    psql(facts, block_of("login").sql, login=login)

    # What the administrator types at psql's prompt: the command, then the password twice.
    run_psql(psql_url(facts.ledger.url), f"\\password {login}\n{password}\n{password}\n", {})

    [row] = psql(facts, "SELECT rolpassword FROM pg_authid WHERE rolname = :'login';", login=login)
    assert _scram_verifies(row["rolpassword"], password)
    assert not _scram_verifies(row["rolpassword"], password + "!")


@pytest.mark.parametrize(
    ("kind", "role", "tenant"),
    [("auditor_session", "llm_ledger_auditor", ""), ("reader_session", "llm_ledger_reader", DIGEST_TENANT)],
)
def test_the_session_blocks_take_their_role(facts: Facts, person: str, kind: Kind, role: str, tenant: str) -> None:
    assert psql(facts, block_of(kind).sql, WHO, user=person) == [{"role": role, "tenant": tenant}]


# --- the table "What each kind of login sees" ---------------------------------------------------------------


def test_the_doc_s_login_sees_every_tenant_as_it_connects_and_one_in_the_tenant_view(facts: Facts, person: str) -> None:
    assert tenants_seen(facts, user=person) == every_tenant(facts)
    assert tenants_seen(facts, block_of("auditor_session").sql, user=person) == every_tenant(facts)
    assert tenants_seen(facts, block_of("reader_session").sql, user=person) == [facts.tenant]
    # ROLLBACK ends the tenant view: back to the login's own.
    assert tenants_seen(facts, block_of("reader_session").sql, "ROLLBACK;", user=person) == every_tenant(facts)


def test_a_reader_login_sees_no_tenant_without_the_setting(facts: Facts, logins: Callable[..., str]) -> None:
    reader = logins("llm_ledger_reader")
    assert tenants_seen(facts, user=reader) == []
    assert psql(facts, block_of_heading("Tenants at a glance"), user=reader) == []
    # Not only the views: no table or view of the ledger shows a tenant's row to it.
    engine = create_store_engine(psql_url(facts.ledger.url, reader))
    try:
        seen = {}
        with engine.connect() as connection:
            relations = connection.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
                    " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v')"
                    " AND a.attname = 'tenant_id' AND has_table_privilege(c.oid, 'SELECT')"
                )
            ).scalars()
            for relation in relations:
                seen[relation] = connection.execute(text(f"SELECT count(*) FROM {relation}")).scalar_one()
    finally:
        engine.dispose()
    assert "llm_ledger_events" in seen and "audit_executions" in seen
    assert {relation: rows for relation, rows in seen.items() if rows} == {}


def test_a_reader_login_sees_the_tenant_it_sets_and_cannot_take_the_auditor_role(
    facts: Facts, logins: Callable[..., str]
) -> None:
    reader = logins("llm_ledger_reader")
    assert tenants_seen(facts, "SET llm_ledger.tenant_id = :'tenant';", user=reader) == [facts.tenant]
    assert tenants_seen(facts, block_of("reader_session").sql, user=reader) == [facts.tenant]
    with pytest.raises(PsqlError, match="permission denied to set role"):
        psql(facts, block_of("auditor_session").sql, user=reader)


def test_a_login_without_a_ledger_role_reads_nothing(facts: Facts, logins: Callable[..., str]) -> None:
    nobody = logins()
    with pytest.raises(PsqlError, match="permission denied for view audit_executions"):
        psql(facts, TENANTS, user=nobody)
    with pytest.raises(PsqlError, match="permission denied to set role"):
        psql(facts, block_of("reader_session").sql, TENANTS, user=nobody)


def test_a_superuser_sees_every_tenant_until_it_takes_a_role(facts: Facts) -> None:
    assert tenants_seen(facts, user=None) == every_tenant(facts)
    assert tenants_seen(facts, block_of("auditor_session").sql, user=None) == every_tenant(facts)
    assert tenants_seen(facts, block_of("reader_session").sql, user=None) == [facts.tenant]


def test_the_tenant_view_fails_closed_for_a_login_that_may_not_take_the_reader_role(
    facts: Facts, logins: Callable[..., str]
) -> None:
    """An auditor's login without the reader role, at psql's prompt (which goes on after an error): the
    queries after the refused role fail too, rather than list every tenant as the login's own view."""
    auditor = logins("llm_ledger_auditor")
    script = "\n".join([block_of("reader_session").sql, TENANTS, block_of_heading("Tenants at a glance")])
    done = run_psql_on_after_errors(psql_url(facts.ledger.url, auditor), script, facts.variables)

    assert "permission denied to set role" in done.stderr
    assert "current transaction is aborted" in done.stderr
    assert not [tenant for tenant in every_tenant(facts) if tenant in done.stdout], done.stdout


QUERIES = [block for block in BLOCKS if EXPECTED.get(block.key, Expect("tenant")).kind in ("tenant", "all_tenants")]


def ordered(rows: Rows) -> list[tuple[tuple[str, str], ...]]:
    return sorted(tuple(row.items()) for row in rows)


@pytest.mark.parametrize("block", QUERIES, ids=[block.key for block in QUERIES])
def test_each_query_answers_as_the_events_say(facts: Facts, person: str, block: SqlBlock) -> None:
    expect = EXPECTED[block.key]
    as_auditor = psql(facts, block_of("auditor_session").sql, block.sql, user=person)
    as_reader = psql(facts, block_of("reader_session").sql, block.sql, user=person)

    assert as_auditor, "no rows, where the dataset has some"
    if expect.kind == "tenant":
        assert ordered(as_reader) == ordered(as_auditor)
    else:
        assert len({row["tenant_id"] for row in as_auditor}) > 1
        assert {row["tenant_id"] for row in as_reader} == {facts.tenant}
    if expect.check is not None:
        expect.check(as_auditor, facts)


# --- "Is this the prompt that was sent?": the commands that compute a keyed digest -------------------------


def _digest_commands() -> str:
    """The ```bash block of the section: the key printed by its holder, the digests computed with it."""
    text = AUDIT_MD.read_text(encoding="utf-8")
    section = text.split("### Is this the prompt that was sent?", 1)[1].split("\n#### ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return str(block)


def _run_digest_commands(directory: Path, secret: str | None) -> subprocess.CompletedProcess[str]:
    """The block run by bash as the doc shows it (``llm-ledger`` is this tree's CLI), in ``directory``
    holding the doc's files: the digest tenant's messages and answer, with the writers' ``secret``."""
    messages = [{"role": role, "content": content} for role, content in DIGEST_MESSAGES]
    (directory / "prompt.json").write_text(json.dumps(messages), encoding="utf-8")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "AGNO_TELEMETRY": "false"}
    env |= {"LLM_LEDGER_HOME": str(directory / "home"), "PYTHON": sys.executable}
    if secret is not None:
        env["LLM_LEDGER_DIGEST_KEY"] = secret
    script = 'set -euo pipefail\nllm-ledger() { "$PYTHON" -m llm_ledger.cli "$@"; }\n' + _digest_commands()
    return subprocess.run(
        ["bash", "-c", script], cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _keyed_blocks() -> list[str]:
    """The section's queries of executions by digest (not the one of the tenant's key ids)."""
    return [
        block.sql
        for block in BLOCKS
        if block.heading == "Is this the prompt that was sent?" and "execution_id" in block.sql
    ]


def _key_ids_block() -> str:
    (sql,) = (b.sql for b in BLOCKS if b.heading == "Is this the prompt that was sent?" and "DISTINCT" in b.sql)
    return sql


def test_the_digest_commands_with_the_tenant_s_key_confirm_the_prompt_and_the_answer(
    facts: Facts, person: str, tmp_path: Path
) -> None:
    (tmp_path / "response.txt").write_bytes(facts.ledger.extras.digest_response.encode())
    done = _run_digest_commands(tmp_path, os.environ["LLM_LEDGER_DIGEST_KEY"])
    assert done.returncode == 0, done.stderr
    prompt_digest, response_digest = done.stdout.split()
    assert (prompt_digest, response_digest) == (facts.variables["prompt_digest"], facts.variables["response_digest"])
    digests = {"prompt_digest": prompt_digest, "response_digest": response_digest}
    for sql in _keyed_blocks():
        rows = psql(facts, block_of("auditor_session").sql, sql, user=person, **digests)
        assert ids(rows) == [str(facts.ledger.extras.digest_execution)]
    # The key id the holder's command printed is the one the rows name.
    [row] = psql(facts, block_of("auditor_session").sql, _keyed_blocks()[0], user=person, **digests)
    assert f"key id {row['input_key_id']}" in done.stderr
    # And the doc's first check finds it among the tenant's key ids.
    key_ids = [r["input_key_id"] for r in psql(facts, block_of("auditor_session").sql, _key_ids_block(), user=person)]
    assert [key for key in key_ids if f"key id {key}" in done.stderr] == [row["input_key_id"]]


def test_without_the_tenant_s_key_nothing_confirms_the_prompt(facts: Facts, person: str, tmp_path: Path) -> None:
    (tmp_path / "response.txt").write_bytes(facts.ledger.extras.digest_response.encode())
    # Another secret's key (a guess at the key, or a secret made anywhere else): digests that match nothing.
    done = _run_digest_commands(tmp_path, DigestSecret.generate().text())
    assert done.returncode == 0, done.stderr
    prompt_digest, response_digest = done.stdout.split()
    assert prompt_digest != facts.variables["prompt_digest"]
    # The doc's first check tells it: the key id printed is none of the tenant's.
    key_ids = [r["input_key_id"] for r in psql(facts, block_of("auditor_session").sql, _key_ids_block(), user=person)]
    assert key_ids and not [key for key in key_ids if f"key id {key}" in done.stderr]
    for sql in _keyed_blocks():
        rows = psql(
            facts, block_of("auditor_session").sql, sql, user=person,
            prompt_digest=prompt_digest, response_digest=response_digest,
        )  # fmt: skip
        assert rows == []
    # No secret at all: no key is printed, and the block stops there.
    (tmp_path / "acme.key").unlink()
    refused = _run_digest_commands(tmp_path, None)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "no digest secret" in refused.stderr and not (tmp_path / "home").exists()
    # And the plain SHA-256 of the very messages finds only the execution recorded before keyed digests
    # (the EXPECTED of the section "Executions recorded before keyed digests"): not the keyed one.
    (legacy,) = (b.sql for b in BLOCKS if b.key == "Executions recorded before keyed digests [1]")
    rows = psql(facts, block_of("auditor_session").sql, legacy, user=person)
    assert str(facts.ledger.extras.digest_execution) not in ids(rows) and rows
