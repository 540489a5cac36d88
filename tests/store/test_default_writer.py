"""An executor built without sink= records to the process-wide writer: Focal's code needs no change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import llm_ledger
from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.executor.sink import set_default_sink
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
