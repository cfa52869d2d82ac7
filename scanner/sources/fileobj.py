"""A read-only, seekable file object over a block source (for libyal bindings like pyfsext)."""

from __future__ import annotations

import io
import os
from collections import OrderedDict

from scanner.errors import SourceReadError
from scanner.sources.base import BlockSource, local_file


class SourceFile(io.RawIOBase):
    """``read``/``seek``/``tell``/``get_size`` over a block source; never writes."""

    def __init__(self, source: BlockSource) -> None:
        super().__init__()
        self._source = source
        self._pos = 0
        self._size = source.size
        # Fast path: a local file (or a slice of one) is read with pread directly, which
        # matters because libyal readers issue one small read per inode.
        found = local_file(source)
        self._fd = -1 if found is None else found.fd
        self._base = 0 if found is None else found.offset

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Read from the current position."""
        if size is None or size < 0:
            size = self._size - self._pos
        if self._fd >= 0:
            size = max(0, min(size, self._size - self._pos))
            try:
                data = os.pread(self._fd, size, self._base + self._pos)
            except OSError as exc:
                raise SourceReadError(f"read at {self._pos} failed: {exc.strerror}") from exc
        else:
            data = self._source.read_at(self._pos, size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Read into a buffer (io protocol)."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position."""
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = self._size + offset
        return self._pos

    def tell(self) -> int:
        """Current position."""
        return self._pos

    def get_size(self) -> int:
        """Total size (libyal asks for it)."""
        return self._size


class CachedSourceFile(SourceFile):
    """A :class:`SourceFile` for readers that issue one small read per inode or directory
    block (libfsxfs): small reads are served from an LRU of 64 KiB chunks (16 MiB in all),
    large ones (file data) go straight to the source."""

    CHUNK = 1 << 16
    CHUNKS = 256

    def __init__(self, source: BlockSource) -> None:
        super().__init__(source)
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def read(self, size: int = -1) -> bytes:
        """Read from the current position, through the chunk cache when it fits one chunk."""
        pos = self._pos
        if size is None or size < 0:
            size = self._size - pos
        base = pos & ~(self.CHUNK - 1)
        if pos + size > base + self.CHUNK:
            return super().read(size)
        chunk = self._cache.get(base)
        if chunk is None:
            chunk = self._source.read_at(base, self.CHUNK)
            self._cache[base] = chunk
            if len(self._cache) > self.CHUNKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(base)
        data = chunk[pos - base:pos - base + size]
        self._pos = pos + len(data)
        return data
