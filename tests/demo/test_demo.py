"""``llm-ledger demo`` through the real CLI, on PostgreSQL and SQLite: the ledger it leaves is whole,
its projections equal the SQL ground truth, and its options and bad input behave."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from llm_ledger.audit import verify_ledger
from llm_ledger.cli import main
from llm_ledger.demo import STEPS, TENANT_AGENTS
from llm_ledger.demo.command import AfterStep, DemoOptions, run_demo
from llm_ledger.projections import Projector
from llm_ledger.store import create_store_engine, migrate
from tests.audit.conftest import seal_all
from tests.demo.ledger import check_streams
from tests.projections.ground_truth import assert_read_models_equal_truth
from tests.projections.projecting import project_all

FAST = ["--latency-scale", "0"]  # the mock models answer at once; the workload is the same
ANCHORED = ["--anchor", "2026-03-11T17:00Z"]
"""The end of the default history (a week): which sessions fall in the incident hour, where openai's models
are rate-limited, depends on its hour, not on the hour the test runs in."""
# Enough turns that tool calls both succeed and fail.
SESSIONS = 30


def test_the_demo_fills_a_whole_ledger_whose_projections_equal_the_ground_truth(
    empty_ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = ["demo", "--sessions", str(SESSIONS), "--seed", "7", "--database-url", empty_ledger_url, *ANCHORED]
    status = main([*demo, *FAST])
    out = capsys.readouterr().out
    assert status == 0, out

    assert migrate.current(empty_ledger_url) == migrate.head()
    shape = check_streams(empty_ledger_url)
    assert shape.sessions == SESSIONS
    assert shape.tenants == set(TENANT_AGENTS)
    assert shape.agents == {(tenant, agent) for tenant, agents in TENANT_AGENTS.items() for agent in agents}
    assert shape.turns >= 2 * SESSIONS
    # A generation step whose model asks for tools makes a second execution, with the tools' results.
    assert {step: n for step, n in shape.steps.items() if step != "generation"} == {
        step: shape.turns for step in STEPS if step != "generation"
    }
    assert shape.steps["generation"] > shape.turns
    assert set(shape.operations) == {"generate", "generate_stream", "generate_structured"}
    assert {tool for tool, _ in shape.tool_calls} == {"lookup_order", "check_policy"}
    assert {ending for _, ending in shape.tool_calls} == {"ToolCallSucceeded", "ToolCallFailed"}
    assert f"{sum(shape.tool_calls.values()):,} tool calls" in out
    assert shape.retries > 0
    assert sum(shape.fallback_reasons.values()) > 0
    assert shape.failed > 0
    assert (
        f"{shape.executions:,} executions, {sum(shape.tool_calls.values()):,} tool calls, {shape.events:,} events"
        in out
    )
    assert "verify_chain: " in out and "chain intact" in out

    # The demo sealed what it could and ran audit verify; the ledger verifies clean, and once every event
    # can be sealed (other tests' open transactions on the cluster hold PostgreSQL's horizon), all are.
    assert "\nseals:\n" in out and "\naudit verify:\n" in out and "  OK: 3 tenants," in out
    seal_all(empty_ledger_url)
    report = verify_ledger(empty_ledger_url, record=False)
    assert report.ok, report.to_text()
    assert (report.streams, report.events) == (shape.executions + sum(shape.tool_calls.values()), shape.events)
    assert (report.incomplete_streams, report.unsealed_events) == (0, 0)
    assert report.seals >= len(TENANT_AGENTS)

    projector = Projector(empty_ledger_url)
    try:
        project_all(projector)
        assert_read_models_equal_truth(projector.engine, sorted(shape.tenants))
    finally:
        projector.close()


def test_the_summary_table_counts_by_step_and_tenant(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--sessions", "6", "--database-url", sqlite_url, *ANCHORED, *FAST]) == 0
    out = capsys.readouterr().out
    shape = check_streams(sqlite_url)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1]}
    for step in STEPS:
        assert rows[step][0] == str(shape.steps[step])
    assert rows["all"][:2] == [str(shape.executions), str(shape.failed)]
    assert rows["all"][3:5] == [str(sum(shape.fallback_reasons.values())), str(shape.retries)]
    assert {tenant for tenant in TENANT_AGENTS if tenant in rows} == set(TENANT_AGENTS)
    assert "llm-ledger dashboard" in out and "llm-ledger audit verify" in out
    assert f'sqlite3 {sqlite_url.removeprefix("sqlite:///")} "SELECT' in out
    projector = Projector(sqlite_url)
    try:
        assert projector.status().pending == 0, "the demo catches the dashboard's read models up"
        assert projector.status().events_applied == shape.events
    finally:
        projector.close()


@pytest.mark.parametrize("passes", [True, False])
def test_the_steps_after_the_workload_decide_the_exit_status(
    passes: bool, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def check(url: str) -> bool:
        seen.append(url)
        print("  checked")
        return passes

    options = DemoOptions(sessions=1, database_url=sqlite_url, latency_scale=0, after=[AfterStep("the check", check)])
    assert run_demo(options) == (0 if passes else 1)
    assert seen == [sqlite_url]
    out = capsys.readouterr().out
    assert "\nthe check:\n  checked\n" in out
    assert out.index("dashboard read models:") < out.index("the check:") < out.index("what to run next:")


def test_the_same_seed_makes_the_same_calls_and_another_seed_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shapes = []
    for run, seed in enumerate((11, 11, 12)):
        url = f"sqlite:///{tmp_path / f'run{run}.db'}"
        demo = ["demo", "--sessions", "5", "--seed", str(seed), "--history", "0", "--database-url", url, *FAST]
        assert main(demo) == 0
        shapes.append(check_streams(url))
    capsys.readouterr()
    first, again, other = shapes
    # Each session meets mock models of its own: which call fails, falls back or asks for tools is the
    # same however the concurrent sessions interleave (tests/demo/test_history.py: with history too).
    assert first == again
    assert (other.turns, other.operations) != (first.turns, first.operations)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--sessions", "0"], "argument --sessions: must be at least 1, got 0"),
        (["--sessions", "many"], "argument --sessions: 'many' is not a whole number"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--history", "7w"], "argument --history: history must be a number of days or hours like 7d or 36h, or 0"),
        (["--history", "31d"], "argument --history: history must be at most 30d (the dashboard's longest window)"),
        (
            ["--anchor", "2026-03-11T17:00"],
            "argument --anchor: the anchor must be an ISO date-time with its offset like 2026-03-11T17:00Z,"
            " got '2026-03-11T17:00'",
        ),
        (["--anchor", "5pm"], "argument --anchor: the anchor must be an ISO date-time with its offset"),
    ],
)
def test_bad_options_are_named(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", *arguments])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("postgresql://postgres@127.0.0.1:1/ledger", 3, "llm-ledger: the event store cannot be reached"),
        ("mysql://root@127.0.0.1/ledger", 2, "llm-ledger: unsupported database 'mysql'"),
        ("sqlite:////dev/null/ledger.db", 2, "llm-ledger: sqlite:////dev/null/ledger.db: cannot create /dev/null"),
    ],
)
def test_a_ledger_it_cannot_use_is_a_clear_error_without_traceback(
    url: str, status: int, message: str, clean_environment: Callable[..., dict[str, str]]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_ledger.cli", "demo", "--sessions", "1", "--database-url", url, *FAST],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_without_the_dashboard_extra_it_says_how_to_install_it(
    sqlite_url: str, clean_environment: Callable[..., dict[str, str]]
) -> None:
    # None in sys.modules is how Python itself marks a module as not importable.
    program = (
        "import sys; sys.modules['streamlit'] = None; from llm_ledger.cli import main; "
        f"sys.exit(main(['demo', '--sessions', '1', '--dashboard', '--database-url', {sqlite_url!r}, *{FAST!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], env=clean_environment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'llm-ledger[dashboard]' && llm-ledger dashboard" in result.stdout
    assert "the dashboard needs Streamlit: pip install 'llm-ledger[dashboard]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert check_streams(sqlite_url).sessions == 1


def test_the_demo_signs_its_seals_and_verifies_them_against_the_pinned_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llm_ledger.audit import PUBLIC_KEY_VARIABLE, SEAL_KEY_VARIABLE, SigningKey

    key = SigningKey.generate()
    monkeypatch.setenv(PUBLIC_KEY_VARIABLE, key.public_key.text())
    unsigned = f"sqlite:///{tmp_path / 'unsigned.db'}"
    assert main(["demo", "--sessions", "1", "--database-url", unsigned, *FAST]) == 1, "unsigned seals, key pinned"
    assert "seal_unsigned" in capsys.readouterr().out

    monkeypatch.setenv(SEAL_KEY_VARIABLE, key.text())
    signed = f"sqlite:///{tmp_path / 'signed.db'}"
    assert main(["demo", "--sessions", "1", "--database-url", signed, *FAST]) == 0
    out = capsys.readouterr().out
    assert ", signed\n" in out and "\n  OK: " in out


def test_into_postgresql_without_the_digest_secret_it_is_refused_before_any_event(
    empty_postgres_url: str, clean_environment: Callable[..., dict[str, str]]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_ledger.cli",
            "demo",
            "--sessions",
            "1",
            "--database-url",
            empty_postgres_url,
            *FAST,
        ],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "LLM_LEDGER_DIGEST_KEY is not set" in result.stderr and "audit digest-key --new" in result.stderr
    assert "Traceback" not in result.stderr
    engine = create_store_engine(empty_postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM llm_ledger_events")).scalar_one() == 0
    finally:
        engine.dispose()
