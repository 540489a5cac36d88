"""Structured output: an answer that does not validate is a failed attempt that falls back."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from llm_ledger import AllModelsFailedError, InMemorySink, LLMExecutor, execution_context
from llm_ledger.executor import ProviderSettings, RetryPolicy
from tests.fakes import FakeProviderServer, Reply


class Verdict(BaseModel):
    rule_ids: list[int]
    confident: bool


async def test_invalid_output_falls_back_to_a_model_that_answers_valid_json(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink, fast_retries: RetryPolicy
) -> None:
    server.script("a", Reply(text='{"rule_ids": "seven", "confident": true}'))
    server.script("b", Reply(text='```json\n{"rule_ids": [7, 9], "confident": true}\n```'))
    executor = LLMExecutor(
        "anthropic/a", fallback_models=["openai/b"], sink=sink, providers=providers, retry_policy=fast_retries
    )
    with execution_context(tenant_id="acme", agent_id="support"):
        verdict, response = await executor.generate_structured(
            "Which rules apply?", Verdict, system_prompt="You match rules."
        )

    assert verdict == Verdict(rule_ids=[7, 9], confident=True)
    assert response.model == "openai/b" and response.fallback_used
    failed = next(e for e in sink.events if e.event_type == "AttemptFailed").payload
    assert failed.error_type == "invalid_output" and failed.next_action == "fall_back"
    assert "rule_ids" in failed.message
    fallback = next(e for e in sink.events if e.event_type == "FallbackTriggered").payload
    assert fallback.reason == "invalid_output"
    started = sink.events[0].payload
    assert started.output_schema == "Verdict" and started.operation == "generate_structured"  # type: ignore[union-attr]

    sent = server.requests_for("a")[0].body
    assert sent["system"], "the schema instruction goes in the system prompt"
    assert "You match rules." in json.dumps(sent["system"]) and "rule_ids" in json.dumps(sent["system"])


async def test_when_no_model_answers_valid_json_the_execution_fails(
    server: FakeProviderServer, providers: dict[str, ProviderSettings], sink: InMemorySink
) -> None:
    server.default("a", Reply(text="I think rules 7 and 9."))
    executor = LLMExecutor("openai/a", sink=sink, providers=providers, retry_policy=RetryPolicy(base_delay=0.001))
    with execution_context(tenant_id="acme"), pytest.raises(AllModelsFailedError) as raised:
        await executor.generate_structured("Which rules apply?", Verdict)
    assert [e.error_type for e in raised.value.errors] == ["invalid_output"]
    assert sink.events[-1].event_type == "ExecutionFailed"


_PARSE_BLANK_LINES = """
import sys, time
from pydantic import BaseModel
from llm_ledger.executor.errors import InvalidOutputError
from llm_ledger.executor.structured import parse_structured

class Answer(BaseModel):
    value: int

for answer in ("```\\n" + "\\n" * 1_000_000, "```json\\n" + "\\n " * 500_000 + "x```"):
    try:
        parse_structured(answer, Answer, model="m", provider="p")
    except InvalidOutputError:
        pass
print(time.process_time())
"""


def test_an_answer_of_a_million_blank_lines_is_refused_in_linear_time() -> None:
    """A provider controls the answer, and it is parsed on the event loop, where no timeout interrupts it.
    The fence-stripping regular expression was cubic: 10,000 blank lines took 294 s of CPU (a million:
    years); linear, a megabyte takes milliseconds. The child is killed after 120 s."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PARSE_BLANK_LINES], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 30, f"the child spent {done.stdout.strip()} s of CPU"


@pytest.mark.parametrize(
    "answer",
    [
        '{"value": 3}',
        '```json\n{"value": 3}\n```',
        '  ```\n{"value": 3}\n  ```  \n',
        '```json  \n\n{"value": 3}\n\n```',
    ],
)
def test_a_fenced_or_bare_answer_is_parsed(answer: str) -> None:
    from pydantic import BaseModel

    from llm_ledger.executor.structured import parse_structured

    class Answer(BaseModel):
        value: int

    assert parse_structured(answer, Answer, model="m", provider="p").value == 3
