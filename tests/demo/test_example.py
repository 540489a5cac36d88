"""``examples/focal_pipeline.py`` runs as is, and its turn is in the ledger as four whole executions."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from llm_ledger.demo import STEPS
from llm_ledger.store import EventStore

ROOT = Path(__file__).resolve().parents[2]


def test_the_focal_example_runs_one_recorded_turn(clean_environment: Callable[..., dict[str, str]]) -> None:
    env = clean_environment()
    result = subprocess.run(
        [sys.executable, "examples/focal_pipeline.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    session = re.search(r"as session (session-[0-9a-f]+)", result.stdout)
    assert session is not None, result.stdout
    assert re.search(
        r"^rule_filtering +mock/anthropic-claude-3-haiku +3 attempt\(s\) \(fell back\)", result.stdout, re.M
    )

    store = EventStore(f"sqlite:///{Path(env['HOME']) / '.llm-ledger' / 'ledger.db'}")
    try:
        events = store.read_session(session.group(1))
        streams = {event.stream_id for event in events}
        for stream_id in streams:
            assert store.verify(stream_id).ok
    finally:
        store.close()
    starts = [event for event in events if event.event_type == "ExecutionStarted"]
    assert [event.step for event in starts] == list(STEPS)
    assert len(streams) == len(STEPS)
    assert {(e.tenant_id, e.agent_id, e.turn_id) for e in events} == {("acme", "support", "turn-1")}
    assert [getattr(e.payload, "operation", None) for e in starts] == [
        "generate",
        "generate",
        "generate_stream",
        "generate_structured",
    ]
    # acme's support agent writes with Anthropic: the tenant+agent override of pipeline.toml.
    assert starts[2].payload.chain[0] == "mock/anthropic-claude-3.5-sonnet"
    fallbacks = [e for e in events if e.event_type == "FallbackTriggered"]
    assert [(e.step, getattr(e.payload, "reason", "")) for e in fallbacks] == [("rule_filtering", "rate_limit")]
    assert sum(e.event_type in ("ExecutionSucceeded", "ExecutionFailed") for e in events) == len(STEPS)
