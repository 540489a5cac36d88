"""The private event loop of the sync forms (``SyncBridge``) lives as long as its model."""

from __future__ import annotations

import gc
import threading
import time

from agno.agent import Agent

from llm_ledger.agno import AuditedModel
from llm_ledger.executor import InMemorySink, MockBehaviour, register_mock

BRIDGE_THREAD = "llm-ledger-agno-sync"


def _bridge_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == BRIDGE_THREAD]


def test_a_models_private_loop_and_thread_end_when_the_model_is_gone() -> None:
    """An Agent (and its AuditedModel) built per request, as Agno's examples do, run with ``Agent.run``:
    each model's private loop and its thread go with the model, instead of piling up for the life of the
    process (a thread, a loop and whatever sockets its clients held, per request)."""
    register_mock("agno-bridge", MockBehaviour(p50_ms=0, reply="ok"))
    before = set(_bridge_threads())
    for _ in range(5):
        agent = Agent(name="a", model=AuditedModel("mock/agno-bridge", sink=InMemorySink()), telemetry=False)
        assert agent.run("hi", session_state={"tenant_id": "acme"}).content == "ok"
        del agent
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(_bridge_threads()) - before:
        time.sleep(0.01)
    assert not set(_bridge_threads()) - before, "a private loop outlived its model"


def test_copies_of_a_model_keep_the_shared_loop_running() -> None:
    register_mock("agno-bridge-copies", MockBehaviour(p50_ms=0, reply="ok"))
    model = AuditedModel("mock/agno-bridge-copies", sink=InMemorySink())
    agent = Agent(name="a", model=model, telemetry=False)
    assert agent.run("hi", session_state={"tenant_id": "acme"}).content == "ok"
    copy = agent.deep_copy()
    del agent
    gc.collect()
    assert copy.run("again", session_state={"tenant_id": "acme"}).content == "ok"
    assert model._bridge._thread is not None and model._bridge._thread.is_alive()
