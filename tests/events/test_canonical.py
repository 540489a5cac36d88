"""Canonical JSON must equal RFC 8785 byte for byte, so an auditor can recompute hashes elsewhere."""

import math
import struct
from typing import Any, TypeAlias

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_ledger.events import CanonicalizationError, canonical_json
from llm_ledger.events.canonical import orjson_canonical

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8", max_codepoint=0xFFFF)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec="utf-8", max_codepoint=0xFFFF), max_size=5), children, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_matches_an_independent_rfc8785_implementation(value: Json) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_floats_that_python_writes_with_an_exponent_are_written_as_ecmascript_does() -> None:
    for value in [1e-7, 1.5e-7, 1e21, 1.2345678901234567e20, 1e16, -2.5e-9, 5e-324, 1.7976931348623157e308]:
        assert canonical_json([value]) == rfc8785.dumps([value]), value


def test_random_bit_patterns_of_floats_match() -> None:
    import random

    rng = random.Random(1)
    for _ in range(20_000):
        (value,) = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))
        if math.isfinite(value):
            assert canonical_json([value]) == rfc8785.dumps([value])


# Strings that hold what a float looks like (a UUID's "...3e-4...", text with "60.0,"), next to floats that
# must be rewritten and floats that need not be.
number_like_text = st.sampled_from(
    ["01a250da-655e-7477-8e4f-3e9a1b2c3d4e", "x:1.5e-7", "[60.0]", "a,1.0}", "-2.0", "7E+3", "1e+5 ", ".0"]
)
floats_to_rewrite = st.sampled_from([60.0, -0.0, 1e-7, 1.5e21, 1e16, -2.5e-9, 0.5, 12.25])


@settings(max_examples=400, deadline=None)
@given(st.lists(number_like_text | floats_to_rewrite | st.integers(-(2**53) + 1, 2**53 - 1), max_size=6))
def test_number_like_strings_beside_floats_match_rfc8785(values: list[Json]) -> None:
    assert canonical_json(values) == rfc8785.dumps(values)
    assert canonical_json({"v": values}) == rfc8785.dumps({"v": values})


def test_orjson_output_is_taken_as_it_stands_when_only_strings_look_like_floats() -> None:
    # The check for floats to rewrite looks where a number can stand: a UUID in an event's envelope (one event
    # in eight has a "<digit>e-<digit>") does not send it down the rewriting path.
    record: dict[str, Any] = {
        "event_id": "01a250da-655e-7477-8e4f-3e9a1b2c3d4e",
        "message": "took 60.0, then 1e-5 s",
        "n": 3,
    }
    assert orjson_canonical(record) == canonical_json(record) == rfc8785.dumps(record)
    for value in [60.0, 1e-7, 1e16, -0.0]:
        assert orjson_canonical({**record, "x": value}) is None
        assert orjson_canonical([value]) is None
    assert orjson_canonical({**record, "x": 0.5}) == rfc8785.dumps({**record, "x": 0.5})


def test_keys_are_sorted_and_there_is_no_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, 2.5, "é"]}) == '{"a":[1,2.5,"é"],"b":1}'.encode()


@pytest.mark.parametrize("value", [object(), "\ud800", {1: "x"}, 2**70])
def test_values_without_a_canonical_form_are_rejected_clearly(value: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_event_payloads_reject_numbers_json_cannot_hold(value: float) -> None:
    from pydantic import ValidationError

    from llm_ledger.events import RequestParameters

    with pytest.raises(ValidationError):
        RequestParameters(temperature=value)
