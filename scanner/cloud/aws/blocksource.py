"""The EBS fetcher as a block source: through the shared caching layer
(:class:`scanner.sources.cache.CachedSource`) when it is there; until then through the small
interim reader below (LRU, retries with backoff, parallel read-ahead), which goes away when
the caching layer lands."""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from scanner.errors import SourceReadError, TransientError

RETRIES = 5
CACHE_BLOCKS = 256     # 128 MiB of 512 KiB blocks
READ_AHEAD = 32        # blocks


def cached(fetcher: Any) -> Any:
    """A block source over ``fetcher`` (the shared caching layer when available)."""
    try:
        cache = importlib.import_module("scanner.sources.cache")
    except ImportError:
        return InterimSource(fetcher)
    return cache.CachedSource(fetcher)


class InterimSource:
    """Reads through ``fetcher.fetch(index)``: an LRU of blocks, one fetch per block at a
    time, read-ahead on sequential access, transient faults retried with backoff."""

    def __init__(self, fetcher: Any) -> None:
        self.fetcher = fetcher
        self._bs = int(fetcher.block_size)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._inflight: dict[int, Future[bytes]] = {}
        self._lock = threading.RLock()  # a done callback may run in the submitting thread
        self._pool = ThreadPoolExecutor(max_workers=READ_AHEAD)
        self._last = -2
        self._window = 1

    @property
    def size(self) -> int:
        """The fetcher's size."""
        return int(self.fetcher.size)

    @property
    def locator(self) -> dict[str, Any]:
        """The fetcher's locator."""
        return dict(self.fetcher.locator)

    def _fetch_retrying(self, index: int) -> bytes:
        for attempt in range(RETRIES):
            try:
                return bytes(self.fetcher.fetch(index))
            except TransientError:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _future(self, index: int) -> Future[bytes] | bytes:
        with self._lock:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                return data
            future = self._inflight.get(index)
            if future is None:
                future = self._pool.submit(self._fetch_retrying, index)
                self._inflight[index] = future
                future.add_done_callback(functools.partial(self._done, index))
            return future

    def _done(self, index: int, future: Future[bytes]) -> None:
        with self._lock:
            self._inflight.pop(index, None)
            if not future.cancelled() and future.exception() is None:
                self._cache[index] = future.result()
                while len(self._cache) > CACHE_BLOCKS:
                    self._cache.popitem(last=False)

    def _block(self, index: int) -> bytes:
        found = self._future(index)
        if isinstance(found, bytes):
            return found
        try:
            return found.result()
        except TransientError as exc:
            raise SourceReadError(f"{exc} (gave up after {RETRIES} attempts)") from exc

    def read_at(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)``, short only at the end."""
        if offset < 0 or length < 0:
            raise SourceReadError(f"negative read at {offset} ({length} bytes)")
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        first, last = offset // self._bs, (offset + length - 1) // self._bs
        if first == self._last + 1 or (first == self._last and last > first):
            # moving forward block after block: read ahead, the window doubling each time
            self._window = min(READ_AHEAD, self._window * 2)
            end = min(last + self._window, (self.size - 1) // self._bs)
            for index in range(last + 1, end + 1):
                self._future(index)
        elif first != self._last:
            self._window = 1
        self._last = last
        parts = [self._block(i) for i in range(first, last + 1)]
        data = b"".join(parts)
        start = offset - first * self._bs
        return data[start:start + length]

    def close(self) -> None:
        """Stop the read-ahead threads and close the fetcher."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(self.fetcher, "close", None)
        if close is not None:
            close()
