"""The audited dataset: the demo workload, plus what the demo never leaves behind: executions whose
process died after ``ExecutionStarted`` (incomplete streams), and an execution whose prompt holds every
character that JSON escapes differently from plain text, so that a digest check is put to the test; and,
since a seed's demo need not meet every path (and tests do not pin one), executions that
certainly fall back after a rate limit and then fail, and fall back and then succeed; and tool executions
(``tests.events.tool_streams``) of some executions, of every outcome, one of them never finished.

The executor keys its digests (HMAC-SHA-256 under the tenant's key, from the suite's digest secret); the
tool executions added are plain SHA-256, as events before keyed digests, but for the digest execution's
and the one nobody asked for, keyed; and one execution of the digest tenant is recorded as before keyed
digests (``legacy_execution``), with the digest messages too, for the doc's query of older events."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import orjson

from llm_ledger.demo import run_workload
from llm_ledger.events import (
    DigestKey,
    Event,
    RequestParameters,
    Scrubber,
    StreamHeader,
    StreamSealer,
    parse_event,
    uuid7,
)
from llm_ledger.events import values as builders
from llm_ledger.events.values import JsonPayload
from llm_ledger.executor import InMemorySink, LLMExecutor, LLMMessage, ProviderError, execution_context
from llm_ledger.executor.digest_secret import default_digest_secret
from llm_ledger.store import EventStore
from tests.events.tool_streams import Context, asked_by, tool_stream, tool_streams_for

DEMO_SESSIONS = 40
DEMO_SEED = 11

DIGEST_TENANT = "acme"
DIGEST_MESSAGES = (
    ("system", 'Règles: say "no" to refunds over 100 €\\ unless <approved>/escalated.\n\tThank you ✓ 😀'),
    ("user", "My order\x01 arrived broken\r\n« cassé »"),
)
INCOMPLETE_TENANTS = ("acme", "globex")
FAILING_OVER = (
    ("mock/audit-throttled?rate_limit=1&seed=1", "mock/audit-down?server_error=1&seed=2"),
    ("mock/audit-filtered?content_filter=1&seed=3", "mock/audit-fine?seed=4"),
)


@dataclass(frozen=True, slots=True)
class Extras:
    """What the tests added to the demo's events, and know the truth of."""

    digest_execution: UUID
    digest_response: str
    legacy_execution: UUID
    """An execution of the digest tenant that sent the digest messages, recorded with plain SHA-256."""
    incomplete: tuple[UUID, ...]
    failed_over: tuple[UUID, ...]
    tool_calls: tuple[UUID, ...]
    """The tool executions added (their stream ids), the digest execution's among them."""
    incomplete_tool_calls: tuple[UUID, ...]
    unasked_tool_call: UUID
    """A tool execution no execution asked for (``execution_id`` and ``tool_call_id`` null), in the digest
    tenant's busiest session."""


async def _execute(
    tenant: str, messages: tuple[tuple[str, str], ...], chain: tuple[str, ...] = ("mock/audit-check?seed=5",)
) -> tuple[InMemorySink, str | None]:
    sink = InMemorySink()
    executor = LLMExecutor(
        chain[0],
        fallback_models=list(chain[1:]),
        step_name="generation",
        max_retries=0,
        sink=sink,
    )
    with (
        execution_context(tenant_id=tenant, agent_id="support", session_id="audit-session", turn_id="audit-turn"),
        contextlib.suppress(ProviderError),
    ):
        response = await executor.generate([LLMMessage(role=role, content=content) for role, content in messages])
        return sink, response.content
    return sink, None


def _started_only(tenant: str) -> Event:
    """An ``ExecutionStarted`` whose process is taken to have died before anything else was recorded."""
    sink, _ = asyncio.run(_execute(tenant, (("user", f"never answered for {tenant}"),)))
    started = sink.events[0]
    assert started.event_type == "ExecutionStarted"
    return started


def fill_ledger(url: str) -> Extras:
    """Run the demo workload into the ledger at ``url`` (migrating it) and add the extras."""
    run_workload(url, sessions=DEMO_SESSIONS, seed=DEMO_SEED, latency_scale=0.01)
    sink, response = asyncio.run(_execute(DIGEST_TENANT, DIGEST_MESSAGES))
    assert response is not None
    # The same messages and answer: the keyed queries find the keyed execution only, the plain ones this one.
    legacy = legacy_execution(DIGEST_TENANT, DIGEST_MESSAGES, response)
    incomplete = [_started_only(tenant) for tenant in INCOMPLETE_TENANTS]
    failing_over = [asyncio.run(_execute(DIGEST_TENANT, (("user", "fail over"),), chain))[0] for chain in FAILING_OVER]
    tools = [*tool_streams_for(read_events(url), every=4), *_digest_tool_calls(sink.events)]
    store = EventStore(url)
    try:
        store.append(
            [*sink.events, *legacy, *incomplete, *(event for run in failing_over for event in run.events), *tools]
        )
        # A tool run nobody asked for (no execution, no call id), in the session the doc's session queries
        # read (the tenant's busiest, which these two events keep the busiest).
        unasked = _unasked_tool_call(read_events(url))
        store.append(unasked)
    finally:
        store.close()
    return Extras(
        digest_execution=sink.events[0].stream_id,
        digest_response=response,
        legacy_execution=legacy[0].stream_id,
        incomplete=tuple(event.stream_id for event in incomplete),
        failed_over=tuple(run.events[0].stream_id for run in failing_over),
        tool_calls=tuple(dict.fromkeys(event.stream_id for event in (*tools, *unasked))),
        incomplete_tool_calls=tuple(stream for stream, n in Counter(e.stream_id for e in tools).items() if n == 1),
        unasked_tool_call=unasked[0].stream_id,
    )


def _unasked_tool_call(stored: list[Event]) -> list[Event]:
    sessions = Counter(event.session_id for event in stored if event.tenant_id == DIGEST_TENANT and event.session_id)
    session = sessions.most_common(1)[0][0]
    last = max(
        (e for e in stored if e.tenant_id == DIGEST_TENANT and e.session_id == session), key=lambda e: e.occurred_at
    )
    context = Context(DIGEST_TENANT, last.agent_id, session, last.turn_id, last.step)
    return tool_stream(
        context,
        tool_name="refresh_cache",
        started_at=last.occurred_at + timedelta(milliseconds=5),
        digest_key=_tenant_key(),
    )


def _tenant_key() -> DigestKey:
    """The digest tenant's key, as the executor derives it from the suite's secret."""
    return default_digest_secret.get().tenant_key(DIGEST_TENANT)


def legacy_execution(tenant: str, messages: tuple[tuple[str, str], ...], answer: str) -> list[Event]:
    """A succeeded execution as the executor recorded one before keyed digests: its input and output digests
    plain SHA-256 (``sha256``, no ``digest``), sealed by the real ``StreamSealer`` from the real builders."""
    scrubber, model = Scrubber([]), "mock/before-keyed-digests"
    header = StreamHeader(stream_id=uuid7(), tenant_id=tenant, agent_id="support", session_id="legacy-session",
                          turn_id="legacy-turn", step="generation")  # fmt: skip
    sealer = StreamSealer(header)
    output = builders.output_values(answer, "hash", scrubber)
    payloads = [
        ("ExecutionStarted", JsonPayload(
            builders.execution_started, operation="generate", chain=(model,), max_retries=0, timeout_seconds=60.0,
            attempt_timeout_seconds=60.0, parameters=RequestParameters(),
            input=builders.input_values(messages, "hash", scrubber), output_schema=None, capture="hash")),
        ("AttemptStarted", JsonPayload(
            builders.attempt_started, attempt=1, model=model, provider="mock", fallback_index=0, retry=0,
            timeout_seconds=60.0)),
        ("AttemptSucceeded", JsonPayload(
            builders.attempt_succeeded, attempt=1, model=model, provider="mock", latency_ms=5.0, usage=None,
            finish_reason="stop", request_id=None, response_id=None, response_model=None,
            time_to_first_chunk_ms=None, output=output)),
        ("ExecutionSucceeded", JsonPayload(
            builders.execution_succeeded, model=model, provider="mock", attempts=1, fallback_used=False,
            latency_ms=6.0, usage=None, finish_reason="stop", output=output)),
    ]  # fmt: skip
    started = datetime.now(UTC)
    drafts = [
        sealer.draft(event_type, payload, occurred_at=started + timedelta(milliseconds=n))
        for n, (event_type, payload) in enumerate(payloads)
    ]
    # Through the stored form, as a reader gets them back (and the way the store takes them).
    return [parse_event(orjson.dumps(draft.event.to_record())) for draft in drafts]


def _digest_tool_calls(execution: list[Event]) -> list[Event]:
    """The digest execution's answer asked for two tools: one ran and failed, the other's process died
    while it ran (no terminal event); both name the execution and their call ids."""
    context, ended, first = asked_by(execution), execution[-1].occurred_at, execution[0]
    return [
        *tool_stream(context, tool_name="refund_policy", started_at=ended + timedelta(milliseconds=2),
                     outcome="failed", tool_call_id="call_refund", execution_id=first.stream_id,
                     trace_id=first.trace_id, digest_key=_tenant_key()),
        *tool_stream(context, tool_name="lookup_order", started_at=ended + timedelta(milliseconds=3),
                     outcome="incomplete", tool_call_id="call_lookup", execution_id=first.stream_id,
                     trace_id=first.trace_id, digest_key=_tenant_key()),
    ]  # fmt: skip


def read_events(url: str) -> list[Event]:
    """Every event of the ledger at ``url``, read through the store (as the connection's own login)."""
    store = EventStore(url)
    try:
        found: list[Event] = []
        with store.transaction() as connection:
            tenants = [row[0] for row in connection.exec_driver_sql("SELECT DISTINCT tenant_id FROM llm_ledger_events")]
        for tenant in sorted(tenants):
            found.extend(store.read_tenant(tenant))
        return found
    finally:
        store.close()
