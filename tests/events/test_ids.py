"""UUIDv7 event and execution ids."""

import os
import uuid

from llm_ledger.events import uuid7, uuid7_time_ms


def test_ids_are_version_7_rfc_variant_and_equal_to_their_parsed_form() -> None:
    value = uuid7()
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert uuid.UUID(str(value)) == value and hash(uuid.UUID(str(value))) == hash(value)


def test_ids_are_unique_and_sorted_in_creation_order() -> None:
    ids = [uuid7() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert abs(uuid7_time_ms(ids[-1]) - uuid7_time_ms(ids[0])) < 60_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid7()  # fill the parent's buffer of random bits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, str(uuid7()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = uuid.UUID(os.read(read, 64).decode())
    parent = uuid7()
    assert (child.int & ((1 << 62) - 1)) != (parent.int & ((1 << 62) - 1))
