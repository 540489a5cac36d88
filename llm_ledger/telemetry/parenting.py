"""Where a span hangs, for both tracers: a ``SpanRef`` (the current agent run, or the execution that asked
for a tool) made into the parent ``SpanContext`` of OpenTelemetry, and the memory of the agent runs and
turns that were sampled out.

A run hands out its ids even when it is sampled out (they parent its executions and tools, and go into
no event); the ref built from them says nothing of that, so the tracer that made the run remembers it
here, and a child of a sampled-out run is sampled out too: a trace is kept or dropped whole. A turn,
which its children find as OpenTelemetry's current span, is remembered alike: a sampled-out current span
that is not in this memory (a remote parent, one of the application's) is left to the sampler.
"""

from __future__ import annotations

import os
import random
import threading

from opentelemetry.trace import SpanContext, TraceFlags

from llm_ledger.executor.tracing import SpanRef

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)

ids = random.Random(os.urandom(16))
"""Span and trace ids, off the ``random`` module's shared generator (which an application may seed)."""


def new_span_id() -> int:
    return ids.getrandbits(64) or 1


def new_trace_id() -> int:
    return ids.getrandbits(128) or 1


class SampledOutRuns:
    """The span ids (hex) of the agent runs and turns a tracer sampled out and that have not ended: the last
    ``limit`` of them at most, so that a run that never ends cannot grow it without bound."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest goes first when full
        self._lock = threading.Lock()

    def add(self, span_id: str) -> None:
        with self._lock:
            self._ids[span_id] = None
            if len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]

    def discard(self, span_id: str) -> None:
        with self._lock:
            self._ids.pop(span_id, None)

    def __contains__(self, span_id: str) -> bool:
        return span_id in self._ids  # a dict lookup is atomic; no lock on the call path

    def __len__(self) -> int:
        return len(self._ids)


def parent_context(ref: SpanRef, sampled_out: SampledOutRuns) -> SpanContext:
    """The parent a child of ``ref`` is made under: a non-recording ``SpanContext`` with the same ids,
    sampled unless ``ref`` says it is not or it is a run this tracer sampled out."""
    sampled = ref.sampled and (not sampled_out or ref.span_id not in sampled_out)
    return SpanContext(
        int(ref.trace_id, 16), int(ref.span_id, 16), is_remote=False, trace_flags=SAMPLED if sampled else NOT_SAMPLED
    )
