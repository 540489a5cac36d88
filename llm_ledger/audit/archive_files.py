"""The retention archive on disk: one directory per archived partition, holding one Parquet file per tenant and
a ``manifest.json`` that names each file's SHA-256, size and counts, the seals covering it and their manifest
rows. Pure file IO: no database here.

A file holds the tenant's rows as stored, every column of the events table, in stream order; ``payload`` is
the stored JSON text, so that each event's hash recomputes from the file as it does from the database, and
``tx_id`` with ``global_position`` is the read cursor, which places each event among its seal's leaves.

pyarrow is imported on first use: it is the ``archive`` extra, not a core dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from llm_ledger.audit.errors import AuditConfigurationError, AuditError

FORMAT = "llm-ledger-archive/1"
MANIFEST = "manifest.json"
ROW_GROUP = 50_000
"""Rows per Parquet row group (and per batch read back)."""

COLUMNS: tuple[tuple[str, str], ...] = (
    ("global_position", "int64"),
    ("tx_id", "int64"),
    ("tenant_id", "string"),
    ("event_id", "string"),
    ("event_type", "string"),
    ("schema_version", "int16"),
    ("stream_id", "string"),
    ("stream_position", "int32"),
    ("agent_id", "string"),
    ("session_id", "string"),
    ("turn_id", "string"),
    ("step", "string"),
    ("occurred_at", "timestamp"),
    ("trace_id", "string"),
    ("span_id", "string"),
    ("payload", "string"),
    ("prev_hash", "string"),
    ("hash", "string"),
    ("recorded_at", "timestamp"),
)
"""Every column of ``llm_ledger_events``, ``tx_id`` as the number the audit's cursor uses."""
LEAF_COLUMNS = ("tx_id", "global_position", "hash", "occurred_at")


def pyarrow() -> tuple[ModuleType, ModuleType]:
    """``pyarrow`` and ``pyarrow.parquet``, or a clear error naming the extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise AuditConfigurationError(
            "the retention archive is Parquet, read and written with pyarrow: pip install 'llm-ledger[archive]'"
        ) from None
    return pa, pq


def damaged_file_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged file raises: pyarrow's own errors, and what a file whose columns are not what
    they should be makes of the code that reads them."""
    pa, _ = pyarrow()
    return (pa.ArrowException, OSError, ValueError, KeyError, TypeError)


def _schema(pa: ModuleType) -> Any:
    types = {
        "int64": pa.int64(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, types[kind], nullable=True) for name, kind in COLUMNS])


def tenant_file_name(tenant_id: str) -> str:
    """A file name for any tenant id (ids are stored text: never a path); the manifest names the tenant."""
    return f"tenant-{hashlib.sha256(tenant_id.encode()).hexdigest()[:16]}.parquet"


def sha256_bytes(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A tenant's file once written, fsynced and read back."""

    tenant_id: str
    name: str
    sha256: str
    bytes: int
    events: int
    streams: int


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a file or directory just made in it) durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_tenant_file(directory: Path, tenant_id: str, batches: Iterable[Sequence[Mapping[str, Any]]]) -> WrittenFile:
    """Write the tenant's rows (batches of mappings with ``COLUMNS``, in stream order) to its file: to a
    temporary name, fsynced, renamed, the directory fsynced; then read back, and refused unless it holds
    the same events in the same order (the SHA-256 of their hashes) as were written."""
    pa, pq = pyarrow()
    schema = _schema(pa)
    name = tenant_file_name(tenant_id)
    final, partial = directory / name, directory / f"{name}.partial"
    written = hashlib.sha256()
    events = streams = 0
    last_stream: str | None = None
    with partial.open("wb") as handle:
        writer = pq.ParquetWriter(handle, schema, compression="zstd")
        for batch in batches:
            if not batch:
                continue
            columns = {column: [row[column] for row in batch] for column, _ in COLUMNS}
            for stream_id, event_hash in zip(columns["stream_id"], columns["hash"], strict=True):
                written.update(event_hash.encode())
                if stream_id != last_stream:
                    streams, last_stream = streams + 1, stream_id
            events += len(batch)
            writer.write_table(pa.table(columns, schema=schema), row_group_size=ROW_GROUP)
        writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    partial.rename(final)
    fsync_directory(directory)
    read_back = hashlib.sha256()
    count = 0
    for hashes in read_columns(final, ("hash",)):
        for event_hash in hashes["hash"]:
            read_back.update(event_hash.encode())
            count += 1
    if count != events or read_back.hexdigest() != written.hexdigest():
        raise OSError(f"{final} does not read back as written ({count:,} of {events:,} events): disk or filesystem")
    return WrittenFile(tenant_id, name, file_sha256(final), final.stat().st_size, events, streams)


NOT_NULL = frozenset(
    {
        *("global_position", "tx_id", "tenant_id", "event_id", "event_type", "schema_version", "stream_id"),
        *("stream_position", "occurred_at", "payload", "hash", "recorded_at"),
    }
)
"""The columns the events table declares NOT NULL: a null in one of them was never written from it."""


def read_columns(path: Path, columns: Iterable[str] | None = None) -> Iterator[dict[str, list[Any]]]:
    """The file's columns (all of ``COLUMNS`` by default) in batches of ``ROW_GROUP`` rows, as Python lists
    (timestamps aware, in UTC). A column missing, of another type than ``COLUMNS`` gives it, or holding a null
    where the events table holds none is ``ValueError`` naming it: the code that reads the values relies on
    them (a damaged file is a finding, never a traceback)."""
    pa, pq = pyarrow()
    parquet = pq.ParquetFile(path)
    wanted = list(columns) if columns else [name for name, _ in COLUMNS]
    expected, found = _schema(pa), parquet.schema_arrow
    for name in wanted:
        if found.get_field_index(name) < 0:
            raise ValueError(f"no {name!r} column")
        kind, expected_kind = found.field(name).type, expected.field(name).type
        if kind != expected_kind:
            raise ValueError(f"its {name!r} column is {kind}, not {expected_kind}")
    for batch in parquet.iter_batches(batch_size=ROW_GROUP, columns=wanted):
        for name in NOT_NULL.intersection(wanted):
            if nulls := batch.column(name).null_count:
                raise ValueError(f"its {name!r} column holds {nulls:,} null(s): the events table holds none")
        yield {name: batch.column(name).to_pylist() for name in wanted}


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The file's rows as mappings, in the file's (stream) order; ``payload`` as its stored JSON text, as the
    verify's stream query reads a live one, so that the verify parses both with the same code (orjson, and
    json.loads for what orjson reads differently or not at all: ``verify.check_stream``)."""
    for batch in read_columns(path):
        names = list(batch)
        for values in zip(*(batch[name] for name in names), strict=True):
            yield dict(zip(names, values, strict=True))


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> str:
    """Write ``manifest.json`` (fsynced, like the files) and return its SHA-256, which the run records."""
    body = json.dumps(manifest, indent=2, sort_keys=True, default=_json_default).encode()
    partial = directory / f"{MANIFEST}.partial"
    with partial.open("wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    partial.rename(directory / MANIFEST)
    fsync_directory(directory)
    return sha256_bytes(body)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


class ManifestShapeError(AuditError, ValueError):
    """A manifest that is JSON but not of the shape ``retention apply`` writes: what is wrong with it."""


def manifest_key(manifest: Any) -> tuple[str, str]:
    """The run and partition a manifest names; ``ManifestShapeError`` naming what is wrong."""
    if not isinstance(manifest, dict):
        raise ManifestShapeError(f"expected a JSON object, not {_json_kind(manifest)}")
    for field_name in ("run_id", "partition"):
        if not isinstance(manifest.get(field_name), str):
            raise ManifestShapeError(f"{field_name!r}: expected a string, not {_json_kind(manifest.get(field_name))}")
    return manifest["run_id"], manifest["partition"]


def manifest_tenants(manifest: dict[str, Any]) -> list[str]:
    """The tenant ids a manifest's ``tenants`` entries name; ``ManifestShapeError`` naming what is wrong."""
    entries = manifest.get("tenants")
    if not isinstance(entries, list):
        raise ManifestShapeError(f"'tenants': expected a list of objects, not {_json_kind(entries)}")
    tenants = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ManifestShapeError(f"'tenants'[{index}]: expected an object, not {_json_kind(entry)}")
        if not isinstance(entry.get("tenant_id"), str):
            raise ManifestShapeError(
                f"'tenants'[{index}].tenant_id: expected a string, not {_json_kind(entry.get('tenant_id'))}"
            )
        tenants.append(entry["tenant_id"])
    return tenants


def _json_kind(value: Any) -> str:
    if value is None:
        return "null (or nothing)"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def find_manifests(roots: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``manifest.json`` in the archive directories given (each directory itself, or one level down)."""
    found: list[Path] = []
    for root in roots:
        base = Path(root)
        if not base.is_dir():
            raise AuditConfigurationError(f"--archive {base}: not a directory")
        found += [base / MANIFEST] if (base / MANIFEST).is_file() else sorted(base.glob(f"*/{MANIFEST}"))
    return found
