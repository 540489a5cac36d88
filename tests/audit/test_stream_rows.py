"""``stored_chain_holds`` (the verify's check of a stream straight from its columns) gives the verdict of
``events.chain_holds`` over the same stream's records, and passes nothing ``verify_chain`` would not: for
every change tests/events/test_chain.py makes to a stream, and for column values only rows can hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, update

from llm_ledger.audit.stream_rows import StoredRow, stored_chain_holds
from llm_ledger.audit.timeline import ExecutionView, session_activity
from llm_ledger.events import chain_holds, verify_chain
from llm_ledger.store.schema import READ_COLUMNS, events
from tests.audit.conftest import Ledger
from tests.events.test_chain import _CAUTIOUS, _mutations, _rehashed, _stream


def rows_of(records: list[dict[str, Any]], *, payload_as_text: bool = True) -> list[StoredRow]:
    """The rows the stream query would read for these stored records: the payload as its JSON text (or its
    values, as an archive's reader gives them), the time as an aware datetime."""
    rows = []
    for index, record in enumerate(records):
        values = {**record, "global_position": index + 1}
        values["occurred_at"] = datetime.fromisoformat(record["occurred_at"].replace("Z", "+00:00"))
        if payload_as_text:
            values["payload"] = json.dumps(record["payload"])
        rows.append(StoredRow(**{name: values.get(name) for name in StoredRow._fields}))
    return rows


def fresh() -> list[dict[str, Any]]:
    return [json.loads(json.dumps(e.to_record())) for e in _stream(4)]


def test_its_columns_are_the_stream_querys() -> None:
    assert StoredRow._fields == tuple(column.name for column in READ_COLUMNS)


@pytest.mark.parametrize("payload_as_text", [True, False], ids=["payload as text", "payload as values"])
@pytest.mark.parametrize(("change", "records"), _mutations(), ids=[name for name, _ in _mutations()])
def test_it_gives_the_verdict_of_chain_holds(change: str, records: list[dict[str, Any]], payload_as_text: bool) -> None:
    holds = stored_chain_holds(rows_of(records, payload_as_text=payload_as_text))

    assert holds == chain_holds(records), change
    assert holds == (verify_chain(records).ok and change not in _CAUTIOUS)


def test_an_intact_stream_holds_in_any_time_zone_the_database_reads_it_in() -> None:
    rows = [
        row._replace(occurred_at=row.occurred_at.astimezone(timezone(timedelta(hours=-5)))) for row in rows_of(fresh())
    ]
    naive = [row._replace(occurred_at=row.occurred_at.astimezone(UTC).replace(tzinfo=None)) for row in rows_of(fresh())]

    assert stored_chain_holds(rows)
    assert stored_chain_holds(naive)  # SQLite gives UTC times back without their zone


@pytest.mark.parametrize(
    "value",
    ['sup"port', "sup\\port", "line\nbreak", "caf\u00e9 \u00a0", "\u202e", "\U0001f600"],
    ids=["quote", "backslash", "control", "non-ASCII", "not printable", "astral"],
)
def test_a_text_value_is_written_as_canonical_json_writes_it(value: str) -> None:
    records = fresh()
    for record in records:
        record["agent_id"] = value
    _rehashed(records, 0)

    assert verify_chain(records).ok
    assert stored_chain_holds(rows_of(records))


def test_a_text_value_that_could_forge_the_canonical_form_is_not_read_as_two_fields() -> None:
    # A value closing its own string would, written unescaped, give the bytes of another record.
    records = fresh()
    records[1]["session_id"] = 's-1","span_id":null,"step":"gen'
    records[1]["step"] = None
    rows = rows_of(records)

    assert not verify_chain(records).ok
    assert not stored_chain_holds(rows)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("agent_id", 7),
        ("schema_version", "1"),
        ("stream_position", True),
        ("hash", None),
        ("occurred_at", "2026-12-08T00:00:00Z"),
        ("payload", "{not json"),
        ("session_id", "\ud800"),
    ],
    ids=[
        "number for text",
        "text for a number",
        "bool position",
        "no hash",
        "time as text",
        "not JSON",
        "lone surrogate",
    ],
)
def test_a_column_value_of_another_type_sends_the_stream_to_the_records_check(column: str, value: Any) -> None:
    rows = rows_of(fresh())
    rows[1] = rows[1]._replace(**{column: value})

    assert not stored_chain_holds(rows)


def test_an_archived_row_with_its_columns_as_a_mapping_is_read_by_name() -> None:
    class Archived:
        def __init__(self, mapping: dict[str, Any]) -> None:
            self._mapping = mapping

    rows = rows_of(fresh(), payload_as_text=False)
    archived = [Archived({k: v for k, v in row._asdict().items() if k != "global_position"}) for row in rows]

    assert [StoredRow.of(row) for row in archived] == [row._replace(global_position=None) for row in rows]
    assert stored_chain_holds([StoredRow.of(row) for row in archived])


def test_a_payload_stored_as_a_json_string_of_its_text_is_broken_on_the_session_page_as_in_verify(
    ledger: Ledger,
) -> None:
    # The session page reads the payload as the column's type does: a JSON string of the payload's text reads
    # as that text, which must not be parsed again into the object it spells (the hash still matches that).
    [row, *_] = [row for row in ledger.rows() if row.session_id is not None and row.event_type == "ExecutionStarted"]

    def payload_made_a_string(connection: Connection) -> None:
        text_of_payload = json.dumps(row.payload)
        connection.execute(update(events).where(events.c.event_id == row.event_id).values(payload=text_of_payload))

    ledger.tamper(payload_made_a_string)

    assert ("invalid", str(row.event_id)) in {(f.kind, f.event_id) for f in ledger.verify().findings}
    with ledger.engine.connect() as connection:
        [shown] = [
            item
            for item in session_activity(connection, row.tenant_id, row.session_id)
            if isinstance(item, ExecutionView) and item.execution_id == str(row.stream_id)
        ]
    assert shown.integrity.status == "broken", shown.integrity.summary
