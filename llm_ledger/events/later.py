"""Fields added to a payload after events of its type were first stored.

Such a field (``Annotated[..., AddedLater()]``, with an empty default) is left out of an event's stored
form while it holds that default: an event that does not use it keeps exactly the form, and so the hash,
that the same event had before the field existed, and a stored event without it reads back with the
default. The payload builders of ``values.py`` leave the key out the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, SerializationInfo, SerializerFunctionWrapHandler, model_serializer


@dataclass(frozen=True, slots=True)
class AddedLater:
    """Marks a payload field added after its event type was first stored (pydantic ignores it)."""


EMPTY_VALUES: tuple[Any, ...] = (None, (), [], {})


class OmitsUnusedLaterFields(BaseModel):
    """Leaves each ``AddedLater`` field out of the dump while it is empty."""

    later_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.later_fields = tuple(
            name
            for name, info in cls.model_fields.items()
            if any(isinstance(mark, AddedLater) for mark in info.metadata)
        )

    @model_serializer(mode="wrap")
    def _omit_unused_later_fields(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if self.later_fields and isinstance(data, dict):
            for name in self.later_fields:
                if name in data and any(data[name] == empty for empty in EMPTY_VALUES):
                    del data[name]
        return data
