"""Reopen a block source from its JSON-able locator (in another process, or a worker)."""

from __future__ import annotations

from typing import Any

from scanner.errors import SourceError
from scanner.sources.base import BlockSource, SliceSource
from scanner.sources.local import LocalFileSource


def open_locator(locator: dict[str, Any]) -> BlockSource:
    """Open the source a locator describes; raise :class:`SourceError` for unknown kinds."""
    kind = locator.get("kind")
    if kind == "local":
        return LocalFileSource(locator["path"])
    if kind == "slice":
        return SliceSource(open_locator(locator["parent"]), locator["offset"], locator["length"])
    raise SourceError(f"cannot reopen a block source of kind {kind!r}")
