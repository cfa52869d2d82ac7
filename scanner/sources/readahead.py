"""Which blocks to fetch ahead: runs of reads through the blocks, forward or backward.

Pure logic, no I/O: :class:`RunDetector` remembers the last few reads (several readers
interleave: the walk, the hash of a file, a worker's claim) and, when a read continues one of
them by at most ``near`` blocks in a direction it already went, names the blocks that come
next that way: ``start`` of them on the run's first step, twice as many on each further
step, up to ``depth`` (a short run costs few fetches, a long one gets the full window).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Run:
    first: int      # blocks of the run's last read
    last: int
    steps: int      # moves to a new block so far
    direction: int  # +1 forward, -1 backward, 0 not known yet


class RunDetector:
    """Detects forward and backward runs of block reads (not thread-safe: callers lock)."""

    def __init__(self, depth: int, runs: int = 16, near: int = 2, start: int = 8) -> None:
        self._depth = depth
        self._start = max(1, start)
        self._runs: list[_Run] = []  # most recent first, at most ``runs``
        self._limit = runs
        self._near = near

    def observe(self, first: int, last: int) -> range:
        """Record a read of blocks ``first..last``; the blocks worth fetching ahead of it
        (nearest first; may reach past either end of the store: the caller clips). Only a
        read that moves a run on to a new block names any: the blocks of the same block's
        reads were named by the read that got there."""
        run = self._match(first, last)
        steps = 0
        if run is None:
            run = _Run(first, last, 0, 0)
        else:
            steps = run.steps
            self._runs.remove(run)
            if first > run.last or last > run.last:
                run.steps, run.direction = run.steps + 1, 1
            elif last < run.first or first < run.first:
                run.steps, run.direction = run.steps + 1, -1
            run.first, run.last = first, last
        self._runs.insert(0, run)
        del self._runs[self._limit:]
        if run.steps == steps or self._depth <= 0:
            return range(0)
        window = min(self._depth, self._start << min(run.steps - 1, 16))
        if run.direction > 0:
            return range(last + 1, last + 1 + window)
        return range(first - 1, max(-1, first - 1 - window), -1)

    def _match(self, first: int, last: int) -> _Run | None:
        """The most recent run this read continues, if any."""
        near = self._near
        for run in self._runs:
            if run.direction >= 0 and run.last <= first <= run.last + near:
                return run
            if run.direction <= 0 and run.first - near <= last <= run.first:
                return run
        return None
