"""Turns what happens in one execution into its chained event stream."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from llm_ledger.events import Event, Payload, StreamHeader, StreamSealer
from llm_ledger.executor.sink import EventSink

log = logging.getLogger("llm_ledger.executor")


class StreamRecorder:
    """Seals each event of one stream (position, ``prev_hash``, hash) and emits it to the sink at once,
    so that a process dying mid-call still leaves ``ExecutionStarted`` behind for the auditors."""

    __slots__ = ("_sealer", "_sink", "events")

    _sink_failures = 0

    def __init__(self, header: StreamHeader, sink: EventSink) -> None:
        self._sealer = StreamSealer(header)
        self._sink = sink
        self.events: list[Event] = []

    def record(
        self, event_type: str, payload: Payload, *, trace_id: str | None = None, span_id: str | None = None
    ) -> Event:
        event: Event = self._sealer.seal(  # type: ignore[assignment]
            event_type, payload, occurred_at=datetime.now(UTC), trace_id=trace_id, span_id=span_id
        )
        self.events.append(event)
        try:
            self._sink.emit(event)
        except Exception:
            # A broken sink must not fail the LLM call it records; say so loudly, once.
            if StreamRecorder._sink_failures == 0:
                log.exception("llm-ledger: the event sink failed; events are being lost")
            StreamRecorder._sink_failures += 1
        return event
