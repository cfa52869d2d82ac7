"""Incremental scans: what a scan may take from the previous one instead of reading it. Pure.

A cloud can say which byte ranges of a disk changed between the snapshot the previous scan
read (the parent) and this one (EBS ListChangedBlocks, Azure page-range diffs). A regular
file whose metadata is unchanged (inode, size, mtime, ctime, crtime) and none of whose data
blocks lie in a changed range keeps its previous content digest without being read. The
metadata is still walked every time, and the block diff is below the filesystem: content
rewritten in place with forged timestamps changes blocks, so it is still read and caught.

Providers fill :class:`Reuse` (``changed`` per disk, keyed by :func:`locator_key` of the
disk's locator); the pipeline asks :meth:`Reuse.digest_of` for each regular file it finds.
A disk without changed ranges (not of one lineage, no parent) is read in full.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scanner.entities import FileEntity

Ranges = Iterable[tuple[int, int]]


def locator_key(locator: Mapping[str, Any]) -> str:
    """A disk's identity for :attr:`Reuse.changed` (its locator, canonical JSON)."""
    return json.dumps(dict(locator), sort_keys=True, default=str)


class ChangedRanges:
    """Sorted, merged byte ranges ``(offset, length)`` of a disk that changed."""

    def __init__(self, ranges: Ranges) -> None:
        merged: list[list[int]] = []
        for start, length in sorted(ranges):
            if length <= 0:
                continue
            end = start + length
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def bytes(self) -> int:
        """How many bytes changed in all."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def touches(self, offset: int, length: int) -> bool:
        """Whether ``[offset, offset + length)`` overlaps a changed range."""
        if length <= 0:
            return False
        index = bisect.bisect_right(self._starts, offset + length - 1) - 1
        return index >= 0 and self._ends[index] > offset


@dataclass(slots=True)
class Reuse:
    """The previous state of the machine's files (from the parent snapshot's scan, which
    must have succeeded in full) and the changed ranges of each disk since it."""

    previous: Mapping[str, FileEntity]
    changed: dict[str, ChangedRanges] = field(default_factory=dict)
    reused: int = 0

    def digest_of(self, path: str, current: FileMeta, disk_locator: Mapping[str, Any],
                  runs: Ranges | None) -> FileEntity | None:
        """The previous entity whose digest ``path`` keeps, or None when it must be read:
        no previous digest, metadata moved, no block map (``runs``: where the content lies on
        the disk, absolute byte offsets), no changed ranges for the disk, or a run touched."""
        before = self.previous.get(path)
        if before is None or before.sha256 is None or before.type != "file":
            return None
        if (before.inode, before.size, before.mtime, before.ctime, before.crtime) != (
                current.inode, current.size, current.mtime, current.ctime, current.crtime):
            return None
        changed = self.changed.get(locator_key(disk_locator))
        if changed is None or runs is None:
            return None
        if any(changed.touches(offset, length) for offset, length in runs):
            return None
        self.reused += 1
        return before


@dataclass(frozen=True, slots=True)
class FileMeta:
    """The metadata :meth:`Reuse.digest_of` compares."""

    inode: int
    size: int
    mtime: int | None
    ctime: int | None
    crtime: int | None
