"""Structured output: asking for JSON that follows a pydantic schema, and checking the answer."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llm_ledger.executor.errors import InvalidOutputError

T = TypeVar("T", bound=BaseModel)


def schema_instruction(schema: dict[str, Any]) -> str:
    """The instruction appended to the system prompt; it works the same on every provider."""
    return (
        "Answer with a single JSON value that validates against this JSON Schema, and nothing else "
        "(no prose, no code fence):\n" + json.dumps(schema, separators=(",", ":"))
    )


def _unfenced(text: str) -> str:
    """The answer without the Markdown code fence a model may put around it (a first line of three
    backticks, optionally followed by "json", and a last line of three backticks), else stripped. String
    methods, linear in the answer: the regular expression this replaces backtracked in cubic time (three
    backticks and 10,000 blank lines took 294 s of CPU, on the event loop, where no timeout interrupts it)."""
    body = text.strip()
    if not (body.startswith("```") and body.endswith("```")):
        return body
    opening, newline, rest = body[3:].partition("\n")
    if not newline or opening.rstrip() not in ("", "json"):
        return body
    inside, newline, closing = rest.rpartition("\n")
    return inside if newline and closing.strip() == "```" else body


def parse_structured(text: str, schema: type[T], *, model: str, provider: str) -> T:
    """Validate a model's answer against ``schema``, or raise InvalidOutputError saying what is wrong."""
    body = _unfenced(text)
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidOutputError(
            f"response does not validate against {schema.__name__}: {problems}", model=model, provider=provider
        ) from None
