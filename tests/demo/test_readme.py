"""The README's "Try it" commands work in a newcomer's shell: a new HOME, nothing configured."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from llm_ledger.demo import TENANT_AGENTS
from tests.demo.ledger import check_streams

ROOT = Path(__file__).resolve().parents[2]
LLM_LEDGER = Path(sys.executable).parent / "llm-ledger"


def try_it_commands() -> list[list[str]]:
    """The arguments of every ``llm-ledger`` command in the section's shell blocks (not the test command)."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for marker, block in re.findall(r"(<!-- test-command -->\n)?```bash\n(.*?)```", section, re.S):
        if marker:
            continue
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0].endswith("/llm-ledger"):
                    commands.append(words[1:])
    return commands


def test_the_try_it_commands_run_from_a_clean_home(clean_environment: Callable[..., dict[str, str]]) -> None:
    commands = try_it_commands()
    assert commands[0][0] == "demo" and ["dashboard"] in commands
    env = clean_environment()
    for arguments in commands:
        if arguments == ["dashboard"]:
            continue  # it serves until stopped: tests/dashboard run it
        if arguments[0] == "demo":
            arguments = [*arguments, "--sessions", "4", "--latency-scale", "0"]
        result = subprocess.run(
            [str(LLM_LEDGER), *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (arguments, result.stdout, result.stderr)
        if arguments[0] == "demo":
            assert "llm-ledger dashboard" in result.stdout.split("what to run next:")[1]

    ledger = Path(env["HOME"]) / ".llm-ledger" / "ledger.db"
    shape = check_streams(f"sqlite:///{ledger}")
    assert shape.sessions == 4 and shape.tenants == set(TENANT_AGENTS)


def _python_block(section: str) -> str:
    """The first ``python`` block of a README section (``## `` or ``### `` heading)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = re.split(rf"\n#+ {re.escape(section)}\n", text, maxsplit=1)[1]
    match = re.search(r"```python\n(.*?)```", body, re.S)
    assert match, f"README section {section!r} has no python block"
    return match.group(1)


def _run_async(code: str, namespace: dict[str, object]) -> dict[str, object]:
    """Run a README block that uses ``await`` at its top level, as it would run in an async function."""
    import asyncio
    import textwrap

    source = "async def _block():\n" + textwrap.indent(code, "    ") + "\n    return locals()\n"
    exec(compile(source, "README.md", "exec"), namespace)
    block = namespace["_block"]
    assert callable(block)
    result = asyncio.run(block())
    assert isinstance(result, dict)
    return result


def test_the_readme_tool_calling_code_runs_and_records_the_tool() -> None:
    from llm_ledger import InMemorySink, LLMExecutor, LLMMessage, LLMResponse, execution_context

    sink = InMemorySink()
    executor = LLMExecutor("mock/readme-tools?p50_ms=0&tool_use=1", sink=sink)
    namespace: dict[str, object] = {"executor": executor, "messages": [LLMMessage(role="user", content="A1?")]}
    with execution_context(tenant_id="acme"):
        result = _run_async(_python_block("Tools"), namespace)
    answer = result["answer"]
    assert isinstance(answer, LLMResponse)
    assert answer.tool_calls == () and answer.content
    kinds = sorted(sink.stream(sid)[0].event_type for sid in sink.stream_ids())
    assert kinds == ["ExecutionStarted", "ExecutionStarted", "ToolCallStarted"]


def test_the_readme_agno_agent_code_runs_on_the_ledger() -> None:
    from agno.agent import Agent
    from agno.run.agent import RunOutput
    from agno.run.base import RunStatus

    from llm_ledger import InMemorySink, set_default_sink

    code = _python_block("Agno Agents and Workflows")
    models = re.findall(r'"((?:openrouter|anthropic)/[^"]+)"', code)
    assert models == ["openrouter/anthropic/claude-3-haiku", "anthropic/claude-3-haiku"]
    # The same code on mock models (no network here): the first throttled, the second calls the tool.
    code = code.replace(models[0], "mock/readme-primary?p50_ms=0&rate_limit=1").replace(
        models[1], "mock/readme-fallback?p50_ms=0&tool_use=1"
    )

    def lookup_order(order_id: str) -> str:
        """The status of an order."""
        return f"{order_id}: shipped"

    sink = InMemorySink()
    set_default_sink(sink)
    try:
        result = _run_async(code, {"Agent": Agent, "lookup_order": lookup_order})
    finally:
        set_default_sink(None)
    output = result["output"]
    assert isinstance(output, RunOutput)
    assert output.status == RunStatus.completed, output.content
    streams = [sink.stream(sid) for sid in sink.stream_ids()]
    assert sorted(s[0].event_type for s in streams) == ["ExecutionStarted", "ExecutionStarted", "ToolCallStarted"]
    assert {s[0].tenant_id for s in streams} == {"acme"}
    assert all(
        "FallbackTriggered" in [e.event_type for e in s] for s in streams if s[0].event_type == "ExecutionStarted"
    )


def test_the_readme_names_every_page_of_the_dashboard() -> None:
    from llm_ledger.dashboard import PAGES

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = text.split("\n## Projections and the dashboard\n", 1)[1].split("\nPages: ", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"(?:^|, | and )(\w+)(?= \(|,| and |$)", pages.replace("\n", " "))
    assert [title for title in PAGES.values() if title not in named] == []
