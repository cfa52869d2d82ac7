"""Test fetchers for the caching layer: a store of known bytes with injected latency and faults."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from typing import Any

from scanner.errors import SourceReadError, TransientError


class FaultyFetcher:
    """Blocks of ``data`` served with ``delay`` seconds of latency. ``faults`` scripts the
    first fetches of a block: a list per index of ``"transient"`` (raise TransientError),
    ``"corrupt"`` (return the block with its first byte flipped), ``"short"`` (drop the last
    byte) or ``"fail"`` (raise SourceReadError); fetches past the script return the block.
    ``calls`` counts fetches per index, ``peak`` the most running at once; ``gate``, when
    set, holds every fetch until it opens."""

    def __init__(self, data: bytes, block_size: int, delay: float = 0.0,
                 faults: dict[int, list[str]] | None = None) -> None:
        self.data = data
        self._block_size = block_size
        self.delay = delay
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.calls: Counter[int] = Counter()
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()
        self.closed = False
        self.active = 0   # fetches running now
        self.peak = 0     # most fetches ever running at once

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def locator(self) -> dict[str, Any]:
        return {"kind": "memory", "name": "faulty"}

    def block(self, index: int) -> bytes:
        """The true bytes of block ``index``."""
        return self.data[index * self._block_size:(index + 1) * self._block_size]

    def fetch(self, index: int) -> bytes:
        with self._lock:
            self.calls[index] += 1
            script = self.faults.get(index)
            fault = script.pop(0) if script else None
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                self.gate.wait(10)
            if self.delay:
                time.sleep(self.delay)
        finally:
            with self._lock:
                self.active -= 1
        data = self.block(index)
        if fault == "transient":
            raise TransientError(f"throttled on block {index}")
        if fault == "fail":
            raise SourceReadError(f"block {index} is gone")
        if fault == "corrupt":
            return bytes([data[0] ^ 0xFF]) + data[1:]
        if fault == "short":
            return data[:-1]
        return data

    def close(self) -> None:
        self.closed = True


def checksums(fetcher: FaultyFetcher) -> Any:
    """A verify hook comparing each block with the SHA-256 of the true block (what a cloud
    API's per-block checksum gives)."""
    sums = [hashlib.sha256(fetcher.block(i)).hexdigest()
            for i in range(-(-fetcher.size // fetcher.block_size))]

    def verify(index: int, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sums[index]:
            raise SourceReadError(f"checksum mismatch on block {index}")

    return verify
