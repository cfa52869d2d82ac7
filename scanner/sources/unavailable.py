"""A disk of the machine that could not be opened (its snapshot is gone, access was refused):
it stands in the list of the machine's disks so that the scan reports it as failed, and every
read raises :class:`~scanner.errors.SourceReadError` with the reason."""

from __future__ import annotations

from typing import Any

from scanner.errors import SourceReadError


class UnavailableSource:
    """A block source that cannot be read: ``reason`` says why."""

    def __init__(self, locator: dict[str, Any], reason: str, size: int = 0) -> None:
        self._locator = {"kind": "unavailable", "locator": dict(locator)}
        self.reason = reason
        self._size = size

    @property
    def size(self) -> int:
        """The disk's size as discovery saw it (0 when unknown)."""
        return self._size

    @property
    def locator(self) -> dict[str, Any]:
        """The locator that could not be opened, wrapped (no process can reopen it)."""
        return self._locator

    def read_at(self, offset: int, length: int) -> bytes:
        """Always fails, with the reason the disk could not be opened."""
        raise SourceReadError(f"not opened: {self.reason}")

    def close(self) -> None:
        """Nothing to release."""
