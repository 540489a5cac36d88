"""The demo's tools: two lookups the generation step offers its model, and the small tool executor that
runs the calls an answer asks for, as Focal's ToolExecutor does, each recorded with ``run_tool_call``.

The order service is down for some turns (drawn from the turn, so a seed gives the same outages): the
call fails, is recorded as failed, and the model is told so in the tool's result."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from llm_ledger.demo.plan import TurnPlan
from llm_ledger.errors import LedgerError
from llm_ledger.executor import LLMMessage, ToolCall, ToolSpec, run_tool_call


def lookup_order(order_id: str) -> dict[str, str]:
    """The status and carrier of one of the customer's orders."""
    return {"order_id": order_id, "status": "shipped", "carrier": "DHL"}


def check_policy(topic: str) -> str:
    """The tenant's policy on a topic: refunds, delivery, billing or accounts."""
    return f"{topic}: handled within 14 days, no questions asked"


class OrderServiceDown(LedgerError, ConnectionError):
    """The order service did not answer (the demo's stand-in for a tool's own failure; a LedgerError as
    every class the package defines is, and a ConnectionError as a real client's would be)."""


ORDER_SERVICE_DOWN = "the order service did not answer"
"""The error's message names no argument, as a tool's should (the ledger keeps a failed tool's message,
scrubbed, under capture ``full`` only; under ``hash`` and ``none`` it keeps the exception's class)."""


def _order_service_down(order_id: str) -> dict[str, str]:
    raise OrderServiceDown(ORDER_SERVICE_DOWN)


TOOL_FUNCTIONS: dict[str, Callable[..., Any]] = {"lookup_order": lookup_order, "check_policy": check_policy}
TOOL_SPECS: tuple[ToolSpec, ...] = tuple(ToolSpec.from_function(function) for function in TOOL_FUNCTIONS.values())


def order_service_is_down(turn: TurnPlan) -> bool:
    """For about one turn in four (crc32, not hash(): str hashes change between interpreter runs)."""
    return zlib.crc32(f"{turn.turn_id}:{turn.customer_message}".encode()) % 4 == 0


async def execute_tool_calls(calls: Sequence[ToolCall], *, outage: bool) -> list[LLMMessage]:
    """Run each call, recorded in the ledger, and give the ``tool`` messages that answer them."""
    answers = []
    for call in calls:
        function = _order_service_down if outage and call.name == "lookup_order" else TOOL_FUNCTIONS[call.name]
        try:
            result = await run_tool_call(call, function)
        except OrderServiceDown as exc:
            content = f"error: {exc}"
        else:
            content = result if isinstance(result, str) else json.dumps(result)
        answers.append(LLMMessage(role="tool", tool_call_id=call.id, name=call.name, content=content))
    return answers
