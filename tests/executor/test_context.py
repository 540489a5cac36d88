"""The execution context lives in a contextvar: tasks never see each other's."""

from __future__ import annotations

import asyncio

import pytest

from llm_ledger import (
    ExecutionContext,
    clear_execution_context,
    execution_context,
    get_execution_context,
    set_execution_context,
)


def test_set_get_and_clear() -> None:
    assert get_execution_context() is None
    token = set_execution_context(tenant_id="acme", agent_id="a", session_id="s", turn_id="t")
    assert get_execution_context() == ExecutionContext("acme", "a", "s", "t")
    clear_execution_context(token)
    assert get_execution_context() is None


def test_the_context_manager_restores_the_outer_context_also_on_error() -> None:
    with execution_context(tenant_id="outer"):
        with pytest.raises(RuntimeError), execution_context(tenant_id="inner"):
            assert get_execution_context() == ExecutionContext("inner")
            raise RuntimeError
        assert get_execution_context() == ExecutionContext("outer")
    assert get_execution_context() is None


async def test_concurrent_tasks_keep_their_own_context() -> None:
    async def worker(i: int) -> str:
        with execution_context(tenant_id=f"t{i}"):
            await asyncio.sleep(0.001 * (i % 3))
            context = get_execution_context()
            assert context is not None
            return context.tenant_id

    assert await asyncio.gather(*(worker(i) for i in range(50))) == [f"t{i}" for i in range(50)]


def test_a_tenant_is_required() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        ExecutionContext("")
    with pytest.raises(ValueError, match="tenant_id"):
        set_execution_context(agent_id="a")
