"""The root of the errors the library defines; a leaf module that imports nothing of the package.

Every exception class llm-ledger defines derives from ``LedgerError`` (``tests/test_errors.py`` checks it), so one
``except LedgerError`` catches every error the library raises as its own. It does not catch what is raised as a
builtin's or a dependency's error:

- ``ValueError`` for an argument that cannot be used: ``RetryPolicy(...)``, ``ExecutionContext`` and
  ``set_execution_context``, a capture policy not one of none/hash/full, ``generate([])``,
  ``Projector(batch_size=0)``, a ``Window`` without a time zone, ``OTEL_EXPORTER_OTLP_PROTOCOL`` not grpc or
  http/protobuf (from ``configure_tracing``, and so from ``aclose``);
- pydantic's ``ValidationError`` (a ``ValueError``) from its models: ``LLMMessage``, ``TokenUsage``, the events;
- SQLAlchemy's errors from the store and the read models for anything but a database out of reach (that is
  ``StoreUnavailableError``), such as the ``ProgrammingError`` of a PostgreSQL database never migrated;
- ``RuntimeError`` from ``Projector.rebuild`` when the projection lock cannot be taken; ``TypeError`` for an
  argument of the wrong type.
"""

from __future__ import annotations


class LedgerError(Exception):
    """The base of every exception class llm-ledger defines: catch this to catch the errors it raises as its own
    (this module's docstring lists what it raises otherwise)."""
