"""Projecting while others write, and several projectors at once: nothing skipped, nothing counted
twice, and executions whose events land in different batches still counted right."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from llm_ledger.events import Event
from llm_ledger.projections import CatchUpResult, Projector
from llm_ledger.store import BufferedWriter, EventStore
from tests.projections import workload
from tests.projections.conftest import store_events
from tests.projections.ground_truth import Projected, Truth, assert_read_models_equal_truth
from tests.projections.projecting import project_all, project_in_batches, stored_events


def run_in_threads(*targets: Callable[[], object]) -> list[object]:
    """Run each target in its own thread, started together; their results, or the first error raised."""
    results: list[object] = [None] * len(targets)
    errors: list[Exception] = []
    barrier = threading.Barrier(len(targets))

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = targets[index]()
        except Exception as exc:  # noqa: BLE001  (re-raised in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    # Joined without a bound of its own: a fixed one (it was 60 s) ran out on a loaded machine while the
    # writers still wrote, and the test then failed on a missing result. The suite's per-test timeout ends
    # a thread that never finishes.
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_four_writers_appending_while_the_projector_follows_skip_nothing_and_count_nothing_twice(
    fresh_postgres_url: str, tmp_path: Path, tenants: tuple[str, ...], engine_of: Callable[[str], Engine]
) -> None:
    url = fresh_postgres_url
    stop = threading.Event()
    follower = Projector(url, batch_size=40)
    following = threading.Thread(target=follower.follow, kwargs={"poll_seconds": 0.01, "stop": stop})
    following.start()

    def writer(index: int) -> Callable[[], object]:
        def write() -> object:
            store = EventStore(url)
            sink = BufferedWriter(store, tmp_path / f"spool-{index}", batch_size=7, flush_interval=0.005)
            calls = [
                workload.Call(c.tenant, c.agent, c.step, c.session, f"w{index}-{c.turn}")
                for c in workload.calls_for(tenants, 90, seed=100 + index)
            ]
            try:
                asyncio.run(workload.run_calls(sink, calls[: len(calls) // 2], concurrency=8))
                # The rest only once the follower has applied something: it follows while they write, however
                # long a loaded machine (or another suite's open transaction, which holds its horizon) takes.
                while follower.status().events_applied == 0:
                    time.sleep(0.05)
                asyncio.run(workload.run_calls(sink, calls[len(calls) // 2 :], concurrency=8))
            finally:
                stats = sink.close(timeout=30)
                store.close()
            return stats

        return write

    try:
        stats = run_in_threads(*(writer(i) for i in range(4)))
    finally:
        stop.set()
        following.join(30)
    assert not following.is_alive()
    for writer_stats in stats:
        assert writer_stats.written == writer_stats.accepted > 0  # type: ignore[attr-defined]
    assert follower.status().events_applied > 0, "the follower applied events while the writers wrote"

    project_all(follower)
    follower.close()

    assert_read_models_equal_truth(engine_of(url), tenants)


def test_two_projectors_catching_up_at_once_give_the_ground_truth(
    workload_url: str, tenants: tuple[str, ...], engine_of: Callable[[str], Engine]
) -> None:
    first, second = Projector(workload_url, batch_size=150), Projector(workload_url, batch_size=150)
    try:
        results = run_in_threads(first.catch_up, second.catch_up)
        project_all(first)
        applied = first.status().events_applied
        stored = stored_events(first)
    finally:
        first.close()
        second.close()

    assert all(isinstance(result, CatchUpResult) and not result.busy for result in results)
    assert sum(result.events for result in results) <= stored  # type: ignore[attr-defined]
    assert applied == stored
    assert_read_models_equal_truth(engine_of(workload_url), tenants)


def test_three_project_commands_in_separate_processes_give_the_ground_truth(
    workload_url: str, tenants: tuple[str, ...], engine_of: Callable[[str], Engine]
) -> None:
    # Separate processes, as in a deployment with several projector replicas: small batches so that
    # they take turns on the checkpoint's lock many times.
    command = [sys.executable, "-m", "llm_ledger.cli", "project", "--batch-size", "50", "--database-url", workload_url]
    environment = dict(os.environ, AGNO_TELEMETRY="false")
    processes = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    applied = [int(out.split("applied ")[1].split(" events")[0].replace(",", "")) for out, _ in outputs]
    projector = Projector(workload_url)
    try:
        stored = stored_events(projector)
        project_all(projector)
        assert projector.status().events_applied == stored
    finally:
        projector.close()
    assert sum(applied) <= stored, "no event was applied by two of them"
    assert_read_models_equal_truth(engine_of(workload_url), tenants)


def test_a_projector_that_cannot_get_the_lock_in_time_says_it_is_busy(ledger_url: str) -> None:
    holder, waiter = Projector(ledger_url), Projector(ledger_url)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder._store.transaction() as connection:  # the lock a batch holds, kept open on purpose
            assert holder._database.lock_checkpoint(connection, None) is not None
            locked.set()
            release.wait(30)

    holding = threading.Thread(target=hold)
    holding.start()
    try:
        assert locked.wait(60)
        result = waiter.catch_up(wait_seconds=0.2)
    finally:
        release.set()
        holding.join(30)
        holder.close()

    try:
        assert result.busy and not result.caught_up and result.events == 0
        assert waiter.catch_up(wait_seconds=5).caught_up
    finally:
        waiter.close()


def small_workload(recorded: list[Event]) -> list[Event]:
    """A twentieth of the workload's executions, plus some that fell back and then succeeded and every one
    that fell back and still failed."""
    types: dict[object, set[str]] = collections.defaultdict(set)
    for event in recorded:
        types[event.stream_id].add(event.event_type)
    kept = {
        stream
        for index, (stream, seen) in enumerate(types.items())
        if index % 20 == 0 or ("FallbackTriggered" in seen and ("ExecutionFailed" in seen or index % 4 == 0))
    }
    return [event for event in recorded if event.stream_id in kept]


@pytest.mark.parametrize(
    ("batch_size", "fresh_projector_per_batch"), [(1, False), (3, True)], ids=["batch-of-1", "batch-of-3-fresh"]
)
def test_fallbacks_count_right_when_an_execution_spans_batches(
    ledger_url: str,
    recorded_events: list[Event],
    tenants: tuple[str, ...],
    engine_of: Callable[[str], Engine],
    batch_size: int,
    fresh_projector_per_batch: bool,
) -> None:
    events = small_workload(recorded_events)
    store_events(ledger_url, events)

    batches = project_in_batches(ledger_url, batch_size, fresh_projector_per_batch=fresh_projector_per_batch)

    assert batches >= len(events) // batch_size
    engine = engine_of(ledger_url)
    truth = Truth(engine, tenants)
    fallbacks = truth.fallback_stats(60)
    assert any(succeeded for _, succeeded in fallbacks.values())
    assert any(n > succeeded for n, succeeded in fallbacks.values())
    assert Projected(engine, tenants).fallback_stats(60) == fallbacks
    assert_read_models_equal_truth(engine, tenants)
