"""The installed distribution's metadata, read once; a leaf module that imports nothing of the package."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llm-ledger")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
