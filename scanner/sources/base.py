"""The block source protocol and a view of a byte range of another source."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from scanner.errors import SourceReadError


@runtime_checkable
class BlockSource(Protocol):
    """Random-access, read-only bytes of a disk or volume.

    ``read_at`` returns exactly ``length`` bytes, fewer only at the end of the source, and
    raises :class:`~scanner.errors.SourceReadError` when the bytes cannot be had.
    ``locator`` is a small JSON-able value from which another process can open the same
    source again (used by parallel hashing and by workers).
    """

    @property
    def size(self) -> int:
        """Size of the source in bytes."""
        ...

    @property
    def locator(self) -> dict[str, Any]:
        """JSON-able description that :func:`scanner.sources.open_locator` can reopen."""
        ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (short only at the end of the source)."""
        ...

    def close(self) -> None:
        """Release what the source holds open."""
        ...


class SliceSource:
    """A byte range ``[offset, offset + length)`` of another source, seen as a source."""

    def __init__(self, parent: BlockSource, offset: int, length: int) -> None:
        self._parent = parent
        self._offset = offset
        self._length = length

    @property
    def parent(self) -> BlockSource:
        """The source this slice views."""
        return self._parent

    @property
    def offset(self) -> int:
        """Where the slice starts in its parent."""
        return self._offset

    @property
    def size(self) -> int:
        """Length of the slice."""
        return self._length

    @property
    def locator(self) -> dict[str, Any]:
        """The parent's locator plus the slice bounds."""
        return {"kind": "slice", "parent": self._parent.locator,
                "offset": self._offset, "length": self._length}

    def read_at(self, offset: int, length: int) -> bytes:
        """Read within the slice; never past its end."""
        if offset < 0 or length < 0:
            raise SourceReadError(f"negative read at {offset} ({length} bytes)")
        length = max(0, min(length, self._length - offset))
        if length == 0:
            return b""
        return self._parent.read_at(self._offset + offset, length)

    def close(self) -> None:
        """Slices own nothing; closing the parent is the caller's business."""
