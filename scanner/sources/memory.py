"""An in-memory block source: the test fake, and a home for small generated disks."""

from __future__ import annotations

from typing import Any


class MemorySource:
    """Bytes held in memory, served through the block source protocol."""

    def __init__(self, data: bytes, name: str = "memory") -> None:
        self._data = memoryview(bytes(data))
        self._name = name
        self.reads = 0

    @property
    def size(self) -> int:
        """Number of bytes held."""
        return len(self._data)

    @property
    def locator(self) -> dict[str, Any]:
        """Memory sources cannot be reopened elsewhere; the locator only names them."""
        return {"kind": "memory", "name": self._name}

    def read_at(self, offset: int, length: int) -> bytes:
        """Return the requested bytes (short at the end)."""
        self.reads += 1
        return bytes(self._data[offset : offset + length])

    def local_file(self) -> None:
        """Memory is no local file."""
        return None

    def disk_offset(self) -> int:
        """A memory source is a whole disk."""
        return 0

    def close(self) -> None:
        """Nothing to release."""
