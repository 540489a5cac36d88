"""An executor built without sink= records to the process-wide writer: Focal's code needs no change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import llm_ledger
from llm_ledger import ConfigurationError, LLMExecutor, LLMMessage, execution_context
from llm_ledger.executor.sink import set_default_sink
from llm_ledger.store.settings import StoreSettings
from llm_ledger.store.store import EventStore

ROOT = Path(__file__).resolve().parents[2]


async def test_without_a_sink_events_go_to_the_configured_store(
    postgres_migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_LEDGER_DATABASE_URL", postgres_migrated_url)
    monkeypatch.setenv("LLM_LEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    set_default_sink(None)
    executor = LLMExecutor("mock/default-writer?p50_ms=0", step_name="generation")
    with execution_context(tenant_id="tenant-default-writer", session_id="s-dw"):
        response = await executor.generate([LLMMessage(role="user", content="hello")])
    await llm_ledger.aclose()
    stored = EventStore(postgres_migrated_url).read_stream(response.execution_id)
    assert [e.event_type for e in stored] == [
        "ExecutionStarted",
        "AttemptStarted",
        "AttemptSucceeded",
        "ExecutionSucceeded",
    ]


def test_the_embedded_default_is_created_migrated_and_flushed_at_exit(tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from llm_ledger import LLMExecutor, LLMMessage, execution_context\n"
        "async def main():\n"
        "    executor = LLMExecutor('mock/m?p50_ms=0')\n"
        "    with execution_context(tenant_id='local'):\n"
        "        for _ in range(3):\n"
        "            await executor.generate([LLMMessage(role='user', content='hi')])\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LEDGER_")}
    env.update(LLM_LEDGER_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    store = EventStore(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    assert store.count() == 12, "every event of the 3 executions, written at interpreter exit"


@pytest.mark.parametrize("variable", ["LLM_LEDGER_SPOOL_DIR", "LLM_LEDGER_HOME"])
async def test_an_unusable_directory_is_a_configuration_error_naming_the_variable_and_the_path(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory under a regular file cannot be made, by root or anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unusable = blocker / "ledger"
    for name in [name for name in os.environ if name.startswith("LLM_LEDGER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LLM_LEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(variable, str(unusable))
    set_default_sink(None)
    executor = LLMExecutor("mock/unusable?p50_ms=0")
    try:
        for _ in range(2):  # every call says it, not only the first
            with pytest.raises(ConfigurationError) as raised:
                await executor.generate([LLMMessage(role="user", content="hello")])
            assert variable in str(raised.value) and str(unusable) in str(raised.value)
    finally:
        set_default_sink(None)


async def test_an_unknown_durability_mode_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_LEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLM_LEDGER_DURABILITY", "sometimes")
    set_default_sink(None)
    try:
        with pytest.raises(ConfigurationError, match="LLM_LEDGER_DURABILITY"):
            await LLMExecutor("mock/unusable?p50_ms=0").generate([LLMMessage(role="user", content="hello")])
    finally:
        set_default_sink(None)


async def test_an_unknown_writer_kind_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_LEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLM_LEDGER_WRITER", "fibers")
    set_default_sink(None)
    try:
        with pytest.raises(ConfigurationError, match="LLM_LEDGER_WRITER"):
            await LLMExecutor("mock/unusable?p50_ms=0").generate([LLMMessage(role="user", content="hello")])
    finally:
        set_default_sink(None)


def test_postgresql_gets_a_writer_process_and_sqlite_the_thread_writer_unless_asked(tmp_path: Path) -> None:
    home = {"LLM_LEDGER_HOME": str(tmp_path)}
    postgres = {**home, "LLM_LEDGER_DATABASE_URL": "postgresql://u@h/db"}
    assert StoreSettings.from_env(postgres).writer_kind == "process"
    assert StoreSettings.from_env(home).writer_kind == "thread"
    assert StoreSettings.from_env({**postgres, "LLM_LEDGER_WRITER": "thread"}).writer_kind == "thread"
    assert StoreSettings.from_env({**home, "LLM_LEDGER_WRITER": "process"}).writer_kind == "process"
