"""Turns what happens in one execution into its chained event stream."""

from __future__ import annotations

import logging
from collections.abc import Callable

from llm_ledger.events import EventDraft, Payload, StreamHeader, StreamSealer
from llm_ledger.events.values import JsonPayload
from llm_ledger.executor.clock import Clock, StreamClock, system_clock
from llm_ledger.executor.sink import EventSink

log = logging.getLogger("llm_ledger.executor")


class StreamRecorder:
    """Emits each event of one execution to the sink as it happens (a draft, sealed by whoever
    consumes it), so that a process dying mid-call still leaves ``ExecutionStarted`` behind. Its events
    are stamped by ``clock`` in UTC, in order (``StreamClock``)."""

    __slots__ = ("_clock", "_sealer", "_sink")

    _sink_failures = 0

    def __init__(self, header: StreamHeader, sink: EventSink, clock: Clock = system_clock) -> None:
        self._sealer = StreamSealer(header)
        self._sink = sink
        self._clock = StreamClock(clock)

    def record(
        self,
        event_type: str,
        payload: Payload | Callable[[], Payload] | JsonPayload,
        *,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> EventDraft:
        event = self._sealer.draft(event_type, payload, occurred_at=self._clock(), trace_id=trace_id, span_id=span_id)
        try:
            self._sink.emit(event)
        except Exception:
            # A broken sink must not fail the LLM call it records; say so loudly, once.
            if StreamRecorder._sink_failures == 0:
                log.exception("llm-ledger: the event sink failed; events are being lost")
            StreamRecorder._sink_failures += 1
        return event
