"""Canonical JSON (RFC 8785 style): the byte form that event hashes are computed over.

Sorted keys, no insignificant whitespace, UTF-8, and numbers written the way ECMAScript writes them,
so that an auditor can recompute a hash with any RFC 8785 implementation. ``json.dumps`` already
matches RFC 8785 for strings, integers and floats written without an exponent; only the rare float
that Python writes with an exponent takes a slower path. Hashing sits on every LLM call, and a
pure-Python RFC 8785 serializer measured 5x slower than this.

Object keys are sorted by code point, which equals RFC 8785's UTF-16 order for every key without a
character above U+FFFF; event field names are ASCII.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

_encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
_encode_string = _encoder.encode


class CanonicalizationError(ValueError):
    """Raised when a value has no canonical JSON form (NaN, infinity, lone surrogates, non-JSON types)."""


class _NeedsSlowPath(Exception):
    pass


def es6_number_text(value: float) -> str:
    """ECMAScript ``Number::toString`` of a finite float, built from Python's shortest round-trip digits."""
    if math.isnan(value) or math.isinf(value):
        raise CanonicalizationError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    shortest = repr(abs(value))
    sign = "-" if value < 0 else ""
    if "e" not in shortest:
        return sign + shortest
    coeff, _, exp_text = shortest.partition("e")
    digits = coeff.replace(".", "").rstrip("0") or "0"
    n = int(exp_text) + 1  # where the decimal point falls relative to the digit string
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exponent = f"e+{e}" if e >= 0 else f"e-{-e}"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return sign + mantissa + exponent


def _normalize(value: Any) -> Any:
    """Map the value onto types that ``json`` writes canonically; raise _NeedsSlowPath if impossible."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CanonicalizationError(f"{value!r} has no JSON form")
        if value.is_integer() and abs(value) < 1e16:
            return int(value)
        if "e" in repr(value):
            raise _NeedsSlowPath
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalizationError(f"object key {key!r} is not a string")
            out[key] = _normalize(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_normalize(item) for item in value]
    raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def _write(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        out.append(_encode_string(value))
    elif isinstance(value, float):
        out.append(es6_number_text(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise CanonicalizationError(f"object key {key!r} is not a string")
            if index:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of ``value`` (a tree of dicts, lists, str, int, float, bool, None)."""
    try:
        try:
            text = _encoder.encode(_normalize(value))
        except _NeedsSlowPath:
            parts: list[str] = []
            _write(value, parts)
            text = "".join(parts)
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError(f"string is not valid Unicode: {exc.reason}") from exc
    except RecursionError as exc:
        raise CanonicalizationError("value is nested too deeply") from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
