"""Structured output: asking for JSON that follows a pydantic schema, and checking the answer."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llm_ledger.executor.errors import InvalidOutputError

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n\s*```\s*$", re.DOTALL)


def schema_instruction(schema: dict[str, Any]) -> str:
    """The instruction appended to the system prompt; it works the same on every provider."""
    return (
        "Answer with a single JSON value that validates against this JSON Schema, and nothing else "
        "(no prose, no code fence):\n" + json.dumps(schema, separators=(",", ":"))
    )


def parse_structured(text: str, schema: type[T], *, model: str, provider: str) -> T:
    """Validate a model's answer against ``schema``, or raise InvalidOutputError saying what is wrong."""
    match = _FENCE.match(text)
    body = match.group("body") if match else text.strip()
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidOutputError(
            f"response does not validate against {schema.__name__}: {problems}", model=model, provider=provider
        ) from None
