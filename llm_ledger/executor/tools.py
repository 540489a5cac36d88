"""Tool calling: the tools offered to a model (``ToolSpec``), the calls it asks for (``ToolCall``), and
the check that turns a provider's raw calls into validated ones (a call that does not parse, or does
not match its tool's schema, is a failed attempt: ``InvalidOutputError``)."""

from __future__ import annotations

import functools
import inspect
import re
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, create_model, model_validator
from pydantic.errors import PydanticSchemaGenerationError
from pydantic.json_schema import PydanticJsonSchemaWarning
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, specification_with

from llm_ledger.events import canonical_json, sha256_hex
from llm_ledger.executor.errors import ConfigurationError, InvalidOutputError
from llm_ledger.executor.routing import ModelRoute

TOOL_CHOICES = ("auto", "none", "required")
"""``tool_choice`` is one of these, or the name of one of the offered tools (the model must call it)."""

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""What every provider accepts as a tool's name (OpenAI's rule; Anthropic's is the same)."""

_CALL_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,128}")
"""What a provider's tool call id looks like (``call_...``, ``toolu_...``, Agno's own ids)."""

_MAX_PROBLEMS = 3
"""Schema violations named in one error: enough to fix the call, short enough to read in an event."""


class ToolSpec(BaseModel):
    """A tool offered to the model: its name, what it does, and its parameters as a JSON schema (an
    object schema). Build one by hand, or from a typed function (``from_function``) or a pydantic model
    (``from_model``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> ToolSpec:
        """A tool from a typed Python function: its name, the first paragraph of its docstring, and a
        schema of its parameters (from their annotations and defaults).

        Every parameter must be annotated and passable by keyword (the call is ``function(**arguments)``):
        ``*args``, ``**kwargs``, positional-only and unannotated parameters are refused with
        ``ConfigurationError``."""
        tool_name = name if name is not None else getattr(function, "__name__", "")
        _check_name(tool_name, f"the tool of {function!r}")
        try:
            signature = inspect.signature(function)
            hints = typing.get_type_hints(_annotated(function), include_extras=True)
        except (TypeError, ValueError, NameError) as exc:
            raise ConfigurationError(f"tool {tool_name!r}: cannot read the parameters of {function!r}: {exc}") from None
        fields: dict[str, Any] = {}
        for parameter in signature.parameters.values():
            where = f"tool {tool_name!r}: parameter {parameter.name!r}"
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                raise ConfigurationError(f"{where} is *{parameter.name}; a tool's arguments are named, give each one")
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                raise ConfigurationError(f"{where} is **{parameter.name}; a tool's schema needs each argument named")
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise ConfigurationError(f"{where} is positional-only; a tool is called with keyword arguments")
            if parameter.name.startswith("_"):
                raise ConfigurationError(f"{where} starts with '_', which a tool's schema cannot name (pydantic)")
            if parameter.name not in hints:
                raise ConfigurationError(f"{where} has no type annotation, which its JSON schema is made from")
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (hints[parameter.name], default)
        try:
            with warnings.catch_warnings():
                # A parameter named like a BaseModel attribute ("json", "schema") is a fine argument name.
                warnings.filterwarnings("ignore", message="Field name .* shadows an attribute", category=UserWarning)
                arguments = create_model(f"{tool_name}_arguments", **fields)
        except (PydanticUserError, PydanticSchemaGenerationError, TypeError, NameError) as exc:
            first_line = str(exc).split("\n", 1)[0]
            raise ConfigurationError(f"tool {tool_name!r}: its parameters make no schema: {first_line}") from None
        documented = function.func if isinstance(function, functools.partial) else function
        return cls(
            name=tool_name,
            description=description if description is not None else _first_paragraph(inspect.getdoc(documented)),
            parameters=_schema_of(arguments, tool_name),
        )

    @classmethod
    def from_model(cls, model: type[BaseModel], *, name: str | None = None, description: str | None = None) -> ToolSpec:
        """A tool whose arguments are a pydantic model (its JSON schema; its docstring as description)."""
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigurationError(f"ToolSpec.from_model needs a pydantic model class, not {model!r}")
        tool_name = name if name is not None else model.__name__
        _check_name(tool_name, f"the tool of {model.__name__}")
        # The class's own docstring: inspect.getdoc would inherit BaseModel's.
        own_doc = model.__dict__.get("__doc__")
        return cls(
            name=tool_name,
            description=description if description is not None else _first_paragraph(own_doc),
            parameters=_schema_of(model, tool_name),
        )

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the tool's name, description and parameters: what the
        ledger keeps of the tool's definition."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        # Cached on the instance (a frozen model; pydantic leaves cached properties out of equality): an
        # executor offers the same specs call after call.
        return sha256_hex(
            canonical_json({"name": self.name, "description": self.description, "parameters": self.parameters})
        )

    @functools.cached_property
    def declared_keys(self) -> frozenset[str]:
        """Every property name the schema declares, at any depth (what an error may name of the arguments)."""
        return frozenset(
            key
            for node in _schema_objects(self.parameters)
            if isinstance(declared := node.get("properties"), dict)
            for key in declared
            if isinstance(key, str)
        )

    @functools.cached_property
    def arguments_validator(self) -> Validator:
        """A validator of a call's arguments against ``parameters``, made once per spec (the schema is
        checked first: ``jsonschema.SchemaError`` when it is not one; ``schema_problem`` says why)."""
        return _validator(canonical_json(self.parameters))


@functools.lru_cache(maxsize=1024)
def _validator(schema: bytes) -> Validator:
    """The validator of a schema, by its canonical JSON: checking a schema and building its validator
    measured 0.8 ms, and an Agno round trip (``llm_ledger.agno``) makes new specs of the same tools each
    time, so the validators are kept for the schemas of the process's tools, not per spec."""
    parameters = orjson.loads(schema)
    cls = validator_for(parameters, default=Draft202012Validator)
    cls.check_schema(parameters)
    _check_references(parameters, cls.META_SCHEMA)
    return cls(parameters)


_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
"""Keywords whose values are data, not schemas: a ``$ref`` or ``properties`` key inside them is data too."""


def _check_references(parameters: dict[str, Any], meta_schema: Mapping[str, Any]) -> None:
    """Every ``$ref`` of the schema resolves within it (``SchemaError`` otherwise): jsonschema resolves
    them only while validating, so an unresolvable one would fail the first call to the tool with an
    internal error, not be refused when the tool is offered; nothing is fetched from elsewhere."""
    specification = specification_with(str(meta_schema.get("$id", "")), default=DRAFT202012)
    resolver = Registry().with_resource("", specification.create_resource(parameters)).resolver()
    for node in _schema_objects(parameters):
        reference = node.get("$ref")
        if isinstance(reference, str):
            try:
                resolver.lookup(reference)
            except Unresolvable:
                raise SchemaError(f"the $ref {reference!r} resolves to nothing in the schema") from None


def _schema_objects(schema: object) -> Iterator[dict[str, Any]]:
    """Every object of a JSON schema, at any depth, outside the keywords whose values are data."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            yield node
            pending.extend(value for key, value in node.items() if key not in _DATA_KEYWORDS)


def _annotated(function: Callable[..., Any]) -> Callable[..., Any]:
    """Where the annotations of a callable are: a partial's function, a callable object's ``__call__``."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.isroutine(function) or inspect.isclass(function):
        return function
    call: Callable[..., Any] = type(function).__call__
    return call


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{what} would be named {name!r}; a tool's name is 1 to 64 letters, digits, '_' or '-' (pass name=)"
        )


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def _schema_of(model: type[BaseModel], tool_name: str) -> dict[str, Any]:
    """The arguments' JSON schema, without the titles pydantic makes up (the model's class name, each
    property's name capitalised): noise in every request, and they would change the digest."""
    try:
        with warnings.catch_warnings():
            # A default that has no JSON form is left out of the schema: the parameter is still optional.
            warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
            schema = model.model_json_schema()
    except (PydanticUserError, PydanticSchemaGenerationError, TypeError, ValueError) as exc:
        first_line = str(exc).split("\n", 1)[0]
        raise ConfigurationError(f"tool {tool_name!r}: its parameters have no JSON schema: {first_line}") from None
    schema.pop("title", None)
    schema.pop("description", None)  # the tool's description, not the parameters'
    properties: dict[str, Any] = schema.get("properties", {})
    for key, prop in properties.items():
        if isinstance(prop, dict) and prop.get("title") == key.replace("_", " ").title():
            del prop["title"]
    schema.setdefault("properties", {})
    return schema


class ToolCall(BaseModel):
    """A call the model asked for: the provider's call id, the tool's name, the parsed arguments and their
    raw text as the model wrote them. ``execution_id`` is the execution whose answer asked for it (None
    for a call written by hand, in a conversation sent back).

    Written by hand, either form of the arguments may be given: the other is derived from it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    arguments_json: str = "{}"
    execution_id: UUID | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_form_from_the_other(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ("arguments" in data) == ("arguments_json" in data):
            return data
        if "arguments" in data and isinstance(data["arguments"], Mapping):
            return {**data, "arguments_json": orjson.dumps(dict(data["arguments"]), default=str).decode()}
        if "arguments_json" in data and isinstance(data["arguments_json"], str):
            try:
                parsed = orjson.loads(data["arguments_json"] or "{}")
            except orjson.JSONDecodeError:
                return data
            if isinstance(parsed, dict):
                return {**data, "arguments": parsed}
        return data


@dataclass(frozen=True, slots=True)
class RequestedToolCall:
    """A call as the provider's answer carried it, not checked yet (``ModelClient`` returns these in
    ``Completion.tool_calls``; ``checked_tool_calls`` turns them into ``ToolCall``s)."""

    id: str
    name: str
    arguments: str


def checked_tool_calls(
    requested: Sequence[RequestedToolCall],
    tools: Mapping[str, ToolSpec],
    route: ModelRoute,
    execution_id: UUID,
) -> tuple[ToolCall, ...]:
    """The calls, parsed and validated against their tools' schemas; raises ``InvalidOutputError`` naming
    the call and what is wrong (an unknown tool, arguments that are not a JSON object, or that do not
    match the schema, an id given to two calls)."""
    checked = tuple(_checked(call, tools, route, execution_id) for call in requested)
    ids = [call.id for call in checked]
    if len(set(ids)) < len(ids):
        # The results could not be told apart when sent back (and the conversation would be refused).
        twice = next(i for i in ids if ids.count(i) > 1)
        raise InvalidOutputError(
            f"tool call {_model_text('an id', twice)}: the answer uses this id for more than one call",
            model=route.model,
            provider=route.provider.name,
        )
    return checked


def _checked(call: RequestedToolCall, tools: Mapping[str, ToolSpec], route: ModelRoute, execution_id: UUID) -> ToolCall:
    tool = tools.get(call.name)
    # The message is stored whatever the capture policy keeps of the answer: the name is quoted only when it
    # is an offered tool's (a name the model made up is its own text), the id when it looks like one.
    named = repr(call.name) if tool is not None else f"a tool name of {len(call.name)} characters"

    def invalid(problem: str) -> InvalidOutputError:
        return InvalidOutputError(
            f"tool call {_model_text('an id', call.id)} to {named}: {problem}",
            model=route.model,
            provider=route.provider.name,
        )

    if tool is None:
        offered = ", ".join(repr(name) for name in tools) or "none"
        raise invalid(f"no such tool was offered (offered: {offered})")
    # An empty text is how some providers write a call without arguments.
    text = call.arguments if call.arguments.strip() else "{}"
    try:
        arguments = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # Never the arguments' text itself: the message is stored whatever the capture policy keeps of them.
        raise invalid(f"the arguments are not valid JSON ({exc}; {len(call.arguments)} characters)") from None
    if not isinstance(arguments, dict):
        raise invalid(f"the arguments are a JSON {_json_kind(arguments)}, not an object")
    problems = sorted(tool.arguments_validator.iter_errors(arguments), key=lambda error: list(error.absolute_path))
    if problems:
        broken = "; ".join(
            f"{_path(error, tool.declared_keys)}: {_violated(error)}" for error in problems[:_MAX_PROBLEMS]
        )
        more = f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        raise invalid(f"the arguments do not match the tool's schema: {broken}{more}")
    return ToolCall(
        id=call.id, name=call.name, arguments=arguments, arguments_json=call.arguments, execution_id=execution_id
    )


def _model_text(what: str, text: str) -> str:
    """``text`` quoted when it looks like a provider's call id, else described."""
    if _CALL_ID.fullmatch(text):
        return repr(text)
    return f"with {what} of {len(text)} characters that is no identifier"


def _path(error: ValidationError, declared: frozenset[str]) -> str:
    """Where in the arguments a violation is: indices, and the keys the schema declares; a key it does not
    declare is the model's own text (an ``additionalProperties`` value), so only said to be one."""
    parts = [
        str(part) if isinstance(part, int) or part in declared else "<undeclared key>" for part in error.absolute_path
    ]
    return ".".join(parts) or "<arguments>"


def _violated(error: ValidationError) -> str:
    """The schema rule a value breaks, told from the schema alone: jsonschema's own message quotes the
    value, and the message is stored in AttemptFailed whatever the capture policy keeps of the arguments."""
    rule = repr(error.validator_value)
    return f"breaks {error.validator!r} ({rule if len(rule) <= 80 else rule[:77] + '...'})"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def schema_problem(tool: ToolSpec) -> str | None:
    """What is wrong with a tool's ``parameters`` (an object schema that ``jsonschema`` accepts), or None.
    For admission, which names the tool."""
    parameters = tool.parameters
    if parameters.get("type") != "object":
        return f"must be an object schema ({{'type': 'object', ...}}), not one of type {parameters.get('type')!r}"
    try:
        tool.arguments_validator  # noqa: B018 - made (and the schema checked) once per spec
    except SchemaError as exc:
        return f"is not a valid JSON schema: {exc.message}"
    except (TypeError, ValueError) as exc:  # values no JSON schema holds (a set, an object)
        return f"is not a valid JSON schema: {exc}"
    return None
