"""One block store shared by every process of a scan: a spill file behind the memory cache.

A scan reads a slow disk from its own process (the walk) and from forked hash workers, each
with its own :class:`~scanner.sources.cache.CachedSource` and memory LRU. Without a shared
store, a block fetched by one process (or evicted from its LRU) is fetched again by the
next. :class:`SpillStore` keeps every fetched block, once, for all of them:

* the blocks live in a sparse temporary file created unlinked (``O_TMPFILE``-like:
  :func:`tempfile.TemporaryFile`), so it is gone when the last process of the scan closes it
  or dies, whatever happened; nothing is ever trusted across scans;
* one int32 per block in an anonymous shared mapping says where each block stands: absent
  (0), stored (-1), or being fetched by the process whose pid it holds, so a block is fetched
  once across processes too (a process waits while another fetches it, and takes the fetch
  over if that process died);
* the bytes stored are bounded (``limit``, further capped at half the free space of the
  file's directory when it is created); past the bound, blocks are only cached in memory.

Forked processes find the store of the source they reopen in :data:`_OPEN` (inherited with
the process image, keyed by the fetcher's locator): a hash worker reopening the scan's disk
from its locator shares the parent's store. A process never shares a store it created
itself with a second source, so two stores of one locator in one process (tests) stay apart.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import os
import shutil
import struct
import tempfile
import time
from typing import Any

from scanner.errors import SourceError

ABSENT = 0
STORED = -1
_SLOT = struct.Struct("<i")
_HEADER = struct.Struct("<q")  # bytes stored so far
WAIT_LIMIT = 300.0  # seconds a process waits for another's fetch before fetching itself


class SpillStore:
    """Fixed-size blocks of one disk in a shared, unlinked temporary file (see the module
    docstring). Safe to use from several threads of several forked processes."""

    def __init__(self, size: int, block_size: int, limit: int,
                 directory: str | None = None) -> None:
        if block_size <= 0 or size < 0:
            raise SourceError(f"cannot spill blocks of {block_size} bytes of a {size}-byte disk")
        self.block_size = block_size
        self.size = size
        self.blocks = -(-size // block_size)
        try:
            free = shutil.disk_usage(directory or tempfile.gettempdir()).free
            # no name on disk: gone with the last process holding it (closed in close())
            self._file = tempfile.TemporaryFile(  # noqa: SIM115
                dir=directory, prefix="snapfim-blocks-")
        except OSError as exc:
            raise SourceError(f"cannot create the block spill file: {exc}") from exc
        self.limit = max(0, min(limit, free // 2))
        self._fd = self._file.fileno()
        self._state = mmap.mmap(-1, _HEADER.size + _SLOT.size * max(1, self.blocks))
        self._lock = multiprocessing.get_context("fork").Lock()
        self.creator = os.getpid()
        self.closed = False

    # -- the shared state ----------------------------------------------------------------------
    def _slot(self, index: int) -> int:
        value: int = _SLOT.unpack_from(self._state, _HEADER.size + _SLOT.size * index)[0]
        return value

    def _set(self, index: int, value: int) -> None:
        _SLOT.pack_into(self._state, _HEADER.size + _SLOT.size * index, value)

    @property
    def stored_bytes(self) -> int:
        """Bytes stored in the file so far (all processes)."""
        value: int = _HEADER.unpack_from(self._state, 0)[0]
        return value

    def stored(self, index: int) -> bool:
        """Whether block ``index`` is in the file now (a hint: read without the lock)."""
        return not self.closed and self._slot(index) == STORED

    def claim(self, index: int) -> bytes | None:
        """The block if it is stored; else None, and this process now fetches it (others
        wait for it). Waits while another live process fetches it."""
        me = os.getpid()
        start = time.monotonic()
        pause = 0.001
        while True:
            if self.closed:  # closed under a reader: it fetches without the file
                return None
            with self._lock:
                state = self._slot(index)
                if state == STORED:
                    break
                if state in (ABSENT, me) or not _alive(state) \
                        or time.monotonic() - start > WAIT_LIMIT:
                    self._set(index, me)
                    return None
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return self._read(index)

    def put(self, index: int, data: bytes) -> bool:
        """Store a block this process claimed (False when over the bound: then only
        released, and the block stays in memory caches only)."""
        if self.closed:
            return False
        with self._lock:
            stored = self.stored_bytes
            fits = stored + len(data) <= self.limit
            if fits:  # counted before writing, so processes together stay within the bound
                _HEADER.pack_into(self._state, 0, stored + len(data))
        if not fits:
            self.release(index)
            return False
        try:
            written = os.pwrite(self._fd, data, index * self.block_size)
        except OSError:
            written = -1
        if self.closed:
            return False
        with self._lock:
            self._set(index, STORED if written == len(data) else ABSENT)
        return written == len(data)

    def release(self, index: int) -> None:
        """Give a claimed block up (its fetch failed): another reader may fetch it."""
        me = os.getpid()
        if self.closed:
            return
        with self._lock:
            if self._slot(index) == me:
                self._set(index, ABSENT)

    def _read(self, index: int) -> bytes:
        expected = min(self.block_size, self.size - index * self.block_size)
        data = os.pread(self._fd, expected, index * self.block_size)
        if len(data) != expected:
            raise SourceError(f"block spill file: block {index} is {len(data)} bytes, "
                              f"{expected} expected")
        return data

    def close(self) -> None:
        """Close this process's handles (the file is gone once every process closed it)."""
        if self.closed:
            return
        self.closed = True
        self._file.close()
        self._state.close()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a fetcher that died leaves its claim behind)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- finding the store of a disk again in a forked process ------------------------------------
_OPEN: dict[str, SpillStore] = {}


def store_key(locator: dict[str, Any]) -> str:
    """The key of a disk's store: its fetcher's locator, canonical JSON."""
    return json.dumps({k: v for k, v in locator.items() if k != "cache"}, sort_keys=True,
                      default=str)


def inherited(locator: dict[str, Any], size: int, block_size: int) -> SpillStore | None:
    """The store a parent process opened for this disk before forking this one (None in the
    process that created it, or when none matches)."""
    store = _OPEN.get(store_key(locator))
    if (store is None or store.closed or store.creator == os.getpid()
            or (store.size, store.block_size) != (size, block_size)):
        return None
    return store


def shared_by_parent(locator: dict[str, Any]) -> bool:
    """Whether a parent process opened this disk with a spill store before forking this one
    (its checks at open, such as a first read, need not be repeated here)."""
    store = _OPEN.get(store_key(locator))
    return store is not None and not store.closed and store.creator != os.getpid()


def register(locator: dict[str, Any], store: SpillStore) -> None:
    """Make a new store findable by processes forked from now on."""
    _OPEN[store_key(locator)] = store


def unregister(locator: dict[str, Any], store: SpillStore) -> None:
    """Forget a store being closed (if it is still the one registered)."""
    key = store_key(locator)
    if _OPEN.get(key) is store:
        del _OPEN[key]
