"""Fake LLM provider servers for tests; see :mod:`tests.fakes.providers`.

The names are re-exported lazily so that ``python -m tests.fakes.providers`` does not import the module
twice (runpy warns when the package has already imported it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.providers import (
        BadRequest,
        Behaviour,
        BrokenStream,
        ContentFiltered,
        ContextOverflow,
        Disconnect,
        FakeProviderServer,
        NotFound,
        Overloaded,
        RateLimited,
        RecordedRequest,
        Reply,
        SentToolCall,
        SentToolResult,
        ServerError,
        Stall,
        ToolCalls,
        ToolRoundTrip,
        Unauthorized,
        parse_echo,
        refused_base_url,
        unused_port,
    )

__all__ = [
    "BadRequest",
    "Behaviour",
    "BrokenStream",
    "ContentFiltered",
    "ContextOverflow",
    "Disconnect",
    "FakeProviderServer",
    "NotFound",
    "Overloaded",
    "RateLimited",
    "RecordedRequest",
    "Reply",
    "SentToolCall",
    "SentToolResult",
    "ServerError",
    "Stall",
    "ToolCalls",
    "ToolRoundTrip",
    "Unauthorized",
    "parse_echo",
    "refused_base_url",
    "unused_port",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("tests.fakes.providers"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
