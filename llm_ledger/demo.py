"""``llm-ledger demo``: one audited execution on mock models, printed with its event stream."""

from __future__ import annotations

from llm_ledger.events import Event, verify_chain
from llm_ledger.executor import (
    FanOutSink,
    InMemorySink,
    LLMExecutor,
    LLMMessage,
    MockBehaviour,
    RetryPolicy,
    execution_context,
    get_default_sink,
    register_mock,
)
from llm_ledger.lifecycle import aclose
from llm_ledger.store import StoreSettings, normalize_url


def _describe(event: Event) -> str:
    p = event.payload
    match event.event_type:
        case "ExecutionStarted":
            return f"chain={' -> '.join(getattr(p, 'chain', ()))}"
        case "AttemptStarted":
            return f"attempt {getattr(p, 'attempt', '')} on {getattr(p, 'model', '')} (retry {getattr(p, 'retry', 0)})"
        case "AttemptFailed":
            return (
                f"{getattr(p, 'error_type', '')} after {getattr(p, 'latency_ms', 0):.1f} ms"
                f" -> {getattr(p, 'next_action', '')}"
            )
        case "AttemptSucceeded":
            usage = getattr(p, "usage", None)
            tokens = f", {usage.total_tokens} tokens" if usage else ""
            return f"{getattr(p, 'latency_ms', 0):.1f} ms{tokens}"
        case "FallbackTriggered":
            return f"{getattr(p, 'from_model', '')} -> {getattr(p, 'to_model', '')} ({getattr(p, 'reason', '')})"
        case "ExecutionSucceeded":
            return f"answered by {getattr(p, 'model', '')} after {getattr(p, 'attempts', 0)} attempts"
        case _:
            return f"{getattr(p, 'error_type', '')}: {getattr(p, 'message', '')}"


async def run_quick_demo(*, seed: int = 7) -> int:
    """Run a rule_filtering step whose primary is throttled and whose first fallback fails."""
    register_mock("openrouter-haiku", MockBehaviour(p50_ms=30, rate_limit=1.0, retry_after=0.05, seed=seed))
    register_mock("anthropic-haiku", MockBehaviour(p50_ms=60, server_error=1.0, seed=seed))
    register_mock("openai-mini", MockBehaviour(p50_ms=40, p99_ms=90, seed=seed))
    memory = InMemorySink()
    # The events go to the process-wide store writer too (LLM_LEDGER_DATABASE_URL, else the embedded
    # SQLite file), as they would for any executor built without sink=.
    sink = FanOutSink([memory, get_default_sink()])
    executor = LLMExecutor(
        "mock/openrouter-haiku",
        fallback_models=["mock/anthropic-haiku", "mock/openai-mini"],
        step_name="rule_filtering",
        max_retries=1,
        sink=sink,
        retry_policy=RetryPolicy(base_delay=0.05),
    )
    with execution_context(tenant_id="acme", agent_id="support", session_id="session-1", turn_id="turn-1"):
        response = await executor.generate(
            [
                LLMMessage(role="system", content="You decide which rules apply to the customer's message."),
                LLMMessage(role="user", content="My order arrived broken, I want a refund."),
            ],
            max_tokens=256,
            temperature=0.2,
        )
    print(f"response   {response.content}")
    print(f"model      {response.model} (fallback used: {response.fallback_used})")
    print(f"usage      {response.usage}")
    print(f"execution  {response.execution_id}\n")
    events = memory.stream(response.execution_id)
    print(f"{'pos':>3}  {'event':<19} {'hash':<12} detail")
    for event in events:
        print(f"{event.stream_position:>3}  {event.event_type:<19} {event.hash[:10]:<12} {_describe(event)}")
    first = events[0]
    print(
        f"\nevery event carries tenant={first.tenant_id} agent={first.agent_id} "
        f"session={first.session_id} turn={first.turn_id} step={first.step}"
    )
    report = verify_chain(events)
    print(f"verify_chain: {report}")
    await aclose()
    settings = StoreSettings.from_env()
    where = normalize_url(settings.database_url).render_as_string(hide_password=True)
    print(f"\nstored in  {where}")
    print("query it   SELECT stream_position, event_type, payload->>'model' AS model, payload->>'error_type' AS error")
    print(f"           FROM llm_ledger_events WHERE stream_id = '{response.execution_id}' ORDER BY stream_position;")
    print("dashboard  llm-ledger dashboard   (needs pip install 'llm-ledger[dashboard]')")
    return 0 if report.ok else 1
