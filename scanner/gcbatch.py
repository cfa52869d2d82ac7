"""Fewer garbage collections while a scan builds its many objects.

A scan of 100,000 entries keeps several long-lived objects per entry (nodes, walk records,
entities). With CPython's default thresholds (a young collection every 700 new container
objects) the collector runs hundreds of times over them, and its full collections traverse
everything kept so far: about a quarter of the read path's CPU on the benchmark image. The
scan itself makes almost no reference cycles, so within :func:`fewer_collections` the young
generation is collected every :data:`SCAN_GC_THRESHOLD` objects instead: cyclic garbage is
still collected (memory stays bounded), just less often.

The setting is process-wide; nested or concurrent uses (threads) keep it until the last one
leaves, then the thresholds found on entry are restored.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SCAN_GC_THRESHOLD = 50_000  # young objects between collections during a scan (default 700)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections(threshold: int = SCAN_GC_THRESHOLD) -> Iterator[None]:
    """Within the block, the young generation is collected every ``threshold`` new objects
    (never less often than before: a higher threshold already set is kept)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            first, *older = _saved
            if first:  # 0: the host turned automatic collection off; keep it off
                gc.set_threshold(max(first, threshold), *older)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
