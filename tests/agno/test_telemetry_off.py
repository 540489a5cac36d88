"""Nothing phones home from an Agent on ``AuditedModel``: importing ``llm_ledger.agno`` turns Agno's
telemetry off (unless the application set ``AGNO_TELEMETRY`` itself), which Agno reads when a run starts
and again before it sends anything, even where no provider client of the executor's was ever made (a
mock model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
from llm_ledger.agno import AuditedModel
from llm_ledger.executor import InMemorySink
from agno.agent import Agent
agent = Agent(name="support", model=AuditedModel("mock/m?p50_ms=0", sink=InMemorySink()))
output = agent.run("hi", session_state={"tenant_id": "acme"})
print(output.status, agent.telemetry)
"""


@pytest.mark.parametrize(
    ("environment", "expected"), [(None, "RunStatus.completed False"), ("true", "RunStatus.completed True")]
)
def test_an_agent_built_after_the_import_sends_no_telemetry_unless_asked(
    environment: str | None, expected: str
) -> None:
    env = {name: value for name, value in os.environ.items() if name != "AGNO_TELEMETRY"}
    if environment is not None:
        env["AGNO_TELEMETRY"] = environment
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == expected
