"""The demo's tools keep to the capture policy: when the order service is down, the failure the ledger
stores names no argument the model passed, whose text the policy ``hash`` keeps as a digest (and the
error's own message names none either, for a ledger kept under ``full``)."""

from __future__ import annotations

import asyncio

import pytest
from agno.run.base import RunContext

from llm_ledger import InMemorySink, execution_context, set_default_sink
from llm_ledger.demo import agno_agent
from llm_ledger.demo.tools import OrderServiceDown, execute_tool_calls
from llm_ledger.executor import ToolCall

ORDER = "A-4711-private"


def test_the_demo_tool_executors_failed_lookup_stores_no_argument() -> None:
    sink = InMemorySink()
    call = ToolCall(
        id="call-1", name="lookup_order", arguments={"order_id": ORDER}, arguments_json=f'{{"order_id": "{ORDER}"}}'
    )
    set_default_sink(sink)
    try:
        with execution_context(tenant_id="acme"):
            [answer] = asyncio.run(execute_tool_calls([call], outage=True))
    finally:
        set_default_sink(None)
    [failed] = [event for event in sink.events if event.event_type == "ToolCallFailed"]
    assert failed.payload.model_dump()["message"] and ORDER not in failed.payload.model_dump_json()
    assert answer.content.startswith("error: ")


def test_the_demo_agents_failed_lookup_names_no_argument() -> None:
    context = RunContext(run_id="r", session_id="s", session_state={"tenant_id": "acme", "order_service_down": True})
    with pytest.raises(OrderServiceDown) as raised:
        agno_agent.lookup_order(context, ORDER)
    assert ORDER not in str(raised.value)
