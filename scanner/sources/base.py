"""The block source protocol, its optional capabilities, and a view of a byte range of
another source.

Capabilities are optional methods a source may have; callers ask through
:func:`local_file`, :func:`whole_local_path` and :func:`disk_offset`, never with
``isinstance`` on a concrete class:

``local_file() -> LocalFile | None``
    the source's bytes are a byte range of a local file (pread fast paths, native readers);
``disk_offset() -> int | None``
    where the source's byte 0 lies on the disk it is part of (0 for a whole disk, None when
    it is no byte range of one disk, e.g. a logical volume);
``will_read(ranges) -> None``
    a read plan: these ``(offset, length)`` byte ranges will be read soon (a walk names the
    directories it will list); a slow source may start fetching them (:func:`will_read`);
``follow_parent(parent, changed) -> bool``
    the source's snapshot differs from the snapshot ``parent`` (a locator) only within the
    byte ranges ``changed`` (the cloud's changed-block list): blocks outside them may be
    served from what was kept of the parent (:func:`follow_parent`).

Readers may also say how they are reading (:func:`read_intent`, a context of the calling
thread), so that sources which fetch ahead (:mod:`scanner.sources.cache`) fetch what will be
read instead of guessing: :data:`WALK` (metadata of a scan that reads every file too: data
blocks near it will be wanted; the default), :data:`SELECTIVE` (metadata of a scan that reads
only some files, an incremental one: fetch only what is asked) and :data:`STREAM` (a file's
content, in order). Sources that do not read ahead ignore it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, Protocol, runtime_checkable

from scanner.errors import SourceReadError


class LocalFile(NamedTuple):
    """Byte ``i`` of a source is byte ``offset + i`` of the local file ``path``, open as
    ``fd`` (owned by the source: do not close it); the file holds ``file_size`` bytes."""

    path: str
    fd: int
    offset: int
    file_size: int


@runtime_checkable
class BlockSource(Protocol):
    """Random-access, read-only bytes of a disk or volume.

    ``read_at`` returns exactly ``length`` bytes, fewer only at the end of the source, and
    raises :class:`~scanner.errors.SourceReadError` when the bytes cannot be had.
    ``locator`` is a small JSON-able value from which another process can open the same
    source again (used by parallel hashing and by workers). The optional capabilities
    (``local_file``, ``disk_offset``) are described in the module docstring.
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

    def __init__(self, parent: BlockSource, offset: int, length: int,
                 owns_parent: bool = False) -> None:
        self._parent = parent
        self._offset = offset
        self._length = length
        self._owns_parent = owns_parent

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

    def local_file(self) -> LocalFile | None:
        """The parent's local file, shifted by the slice's offset."""
        inner = local_file(self._parent)
        return None if inner is None else inner._replace(offset=inner.offset + self._offset)

    @property
    def takes_plans(self) -> bool:
        """Whether the parent takes read plans."""
        return plans_reads(self._parent)

    def will_read(self, ranges: list[tuple[int, int]]) -> None:
        """Pass a read plan to the parent, shifted by the slice's offset."""
        will_read(self._parent, [(self._offset + offset, length) for offset, length in ranges
                                 if 0 <= offset < self._length])

    def disk_offset(self) -> int | None:
        """The parent's disk offset plus the slice's."""
        base = disk_offset(self._parent)
        return None if base is None else base + self._offset

    def close(self) -> None:
        """Close the parent only when the slice opened it (reopened from a locator)."""
        if self._owns_parent:
            self._owns_parent = False
            self._parent.close()


def local_file(source: BlockSource) -> LocalFile | None:
    """The local file a source's bytes are read from, when it has that capability."""
    method = getattr(source, "local_file", None)
    return method() if callable(method) else None


def whole_local_path(source: BlockSource) -> str | None:
    """The path of a local file whose bytes are exactly the source's (for readers that open
    a path themselves: pytsk3's native image, libfsxfs), else None."""
    found = local_file(source)
    if found is None or found.offset != 0 or found.file_size != source.size:
        return None
    return found.path


def plans_reads(source: Any) -> bool:
    """Whether a source (or pytsk3 image adapter) takes read plans (:func:`will_read`); a
    wrapper that passes plans on says whether its inner source takes them (``takes_plans``),
    so nobody computes a plan that would be dropped."""
    return callable(getattr(source, "will_read", None)) and getattr(source, "takes_plans", True)


def will_read(source: Any, ranges: list[tuple[int, int]]) -> None:
    """Tell a source which byte ranges will be read soon, when it has the capability (a
    hint: nothing changes for sources without it)."""
    method = getattr(source, "will_read", None)
    if callable(method) and ranges:
        method(ranges)


def follow_parent(source: Any, parent: dict[str, Any], changed: list[tuple[int, int]]
                  ) -> bool:
    """Tell a source which parent snapshot it differs from, and where (when it has the
    capability); whether it will serve unchanged blocks from the parent's kept blocks."""
    method = getattr(source, "follow_parent", None)
    return bool(method(parent, changed)) if callable(method) else False


def disk_offset(source: BlockSource) -> int | None:
    """Where byte 0 of ``source`` lies on its disk; a source without the capability is a
    whole disk (0)."""
    method = getattr(source, "disk_offset", None)
    return method() if callable(method) else 0


WALK = "walk"
SELECTIVE = "selective"
STREAM = "stream"
_INTENT: ContextVar[str] = ContextVar("snapfim_read_intent", default=WALK)


@contextmanager
def read_intent(intent: str) -> Iterator[None]:
    """Within the block, this thread's reads are of kind ``intent`` (:data:`WALK`,
    :data:`SELECTIVE` or :data:`STREAM`; see the module docstring)."""
    if intent not in (WALK, SELECTIVE, STREAM):
        raise ValueError(f"unknown read intent {intent!r}")
    token = _INTENT.set(intent)
    try:
        yield
    finally:
        _INTENT.reset(token)


def current_read_intent() -> str:
    """How this thread says it is reading now (:data:`WALK` unless told)."""
    return _INTENT.get()
