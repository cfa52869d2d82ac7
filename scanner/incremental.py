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
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from scanner.entities import FileEntity

Ranges = Iterable[tuple[int, int]]


def locator_key(locator: Mapping[str, Any]) -> str:
    """A disk's identity for :attr:`Reuse.changed` (its locator, canonical JSON)."""
    return json.dumps(dict(locator), sort_keys=True, default=str)


MAX_RUNS = 1 << 18  # runs a BlockRuns holds at most (two 8-byte integers each: 4 MiB)


class BlockRuns:
    """Changed block indices held as sorted runs ``[first, end)`` (two arrays of 8-byte
    integers), built one index at a time as a cloud's changed-block listing streams in.

    Memory does not grow with the number of blocks, only with the number of runs, and
    that is bounded too: past ``max_runs`` runs, runs separated by the smallest gaps are
    merged (the gap then counts as changed: a file there is read again, never missed),
    the allowed gap doubling each time, until at most half of ``max_runs`` remain. Indices
    arrive in ascending order from the clouds' listings; one out of order is merged in
    place (slower, still correct)."""

    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self.max_runs = max(2, max_runs)
        self._firsts = array("q")
        self._ends = array("q")
        self.gap = 0    # runs this many blocks apart or closer have been merged
        self.added = 0  # indices added (with repeats)

    def add(self, index: int) -> None:
        """One more changed block."""
        if index < 0:
            raise ValueError(f"negative block index {index}")
        self.added += 1
        firsts, ends = self._firsts, self._ends
        if firsts and ends[-1] + self.gap >= index >= firsts[-1]:
            ends[-1] = max(ends[-1], index + 1)
        elif not firsts or index > ends[-1]:
            firsts.append(index)
            ends.append(index + 1)
        else:
            self._insert(index)
        if len(firsts) > self.max_runs:
            self._coarsen()

    def _insert(self, index: int) -> None:
        """An index out of order: merged into the runs around it."""
        firsts, ends = self._firsts, self._ends
        at = bisect.bisect_right(firsts, index) - 1
        if at >= 0 and ends[at] + self.gap >= index:
            ends[at] = max(ends[at], index + 1)
        else:
            at += 1
            firsts.insert(at, index)
            ends.insert(at, index + 1)
        while at + 1 < len(firsts) and firsts[at + 1] <= ends[at] + self.gap:
            ends[at] = max(ends[at], ends[at + 1])
            del firsts[at + 1]
            del ends[at + 1]

    def _coarsen(self) -> None:
        """Merge runs across the smallest gaps until at most half of ``max_runs`` remain."""
        while len(self._firsts) > self.max_runs // 2:
            self.gap = max(1, self.gap * 2)
            firsts, ends = array("q"), array("q")
            for first, end in zip(self._firsts, self._ends, strict=True):
                if firsts and first <= ends[-1] + self.gap:
                    ends[-1] = max(ends[-1], end)
                else:
                    firsts.append(first)
                    ends.append(end)
            self._firsts, self._ends = firsts, ends

    def __len__(self) -> int:
        return len(self._firsts)

    def __iter__(self) -> Iterator[int]:
        """Every block index the runs cover, ascending."""
        for first, end in zip(self._firsts, self._ends, strict=True):
            yield from range(first, end)

    @property
    def blocks(self) -> int:
        """How many blocks the runs cover."""
        return sum(e - f for f, e in zip(self._firsts, self._ends, strict=True))

    @property
    def nbytes(self) -> int:
        """Bytes the runs take (their arrays' items)."""
        return (len(self._firsts) + len(self._ends)) * self._firsts.itemsize

    def ranges(self, block_size: int) -> list[tuple[int, int]]:
        """Byte ranges ``(offset, length)`` of the runs."""
        return [(first * block_size, (end - first) * block_size)
                for first, end in zip(self._firsts, self._ends, strict=True)]


class ChangedRanges:
    """Sorted, merged byte ranges ``(offset, length)`` of a disk that changed (held as two
    arrays of 8-byte integers: memory per range, whatever the ranges' sizes)."""

    def __init__(self, ranges: Ranges) -> None:
        starts, ends = array("q"), array("q")
        for start, length in sorted(ranges):
            if length <= 0:
                continue
            end = start + length
            if starts and start <= ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        self._starts = starts
        self._ends = ends

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


@dataclass(frozen=True, slots=True)
class FileMeta:
    """The metadata that must not have moved for a digest to be kept."""

    inode: int
    size: int
    mtime: int | None
    ctime: int | None
    crtime: int | None

    @classmethod
    def of(cls, item: Any) -> FileMeta:
        """From anything with those attributes (a walked node, a stored entity)."""
        return cls(item.inode, item.size, item.mtime, item.ctime, item.crtime)


def mount_layout(volumes: Iterable[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """Where each volume was mounted: mount point (``/``, ``/opt``, ``D:\\``) -> the volume's
    label and filesystem UUID, from ``(label, mountpoint, uuid)`` of a coverage report."""
    return {mountpoint: f"{label} {uuid or '-'}" for label, mountpoint, uuid in volumes
            if mountpoint}


@dataclass(slots=True)
class Reuse:
    """The previous state of the machine's files (from the parent snapshot's scan, which
    must have succeeded in full) and the changed ranges of each disk since it.

    Two steps, because a walk reports inodes before their paths are named: while walking,
    :meth:`candidate` picks the previous entity a regular file may keep the digest of, by its
    metadata and blocks (the file is then not queued for hashing); once paths are named,
    :meth:`confirm` checks that the path's own previous state is that file, or the file is
    hashed after all."""

    previous: Mapping[str, FileEntity]
    changed: dict[str, ChangedRanges] = field(default_factory=dict)
    # the previous scan's :func:`mount_layout`; None: not known, nothing is kept. A path
    # keeps a digest only if it lies on the volume it lay on then: a clone of a volume (A/B
    # roots, an fstab entry moved to a copy on another disk) has files alike in metadata
    # whose content may differ, and its blocks need not have changed since its own parent
    layout: Mapping[str, str] | None = None
    reused: int = 0  # files (inodes) whose digest was kept, counted by the pipeline
    _by_meta: dict[FileMeta, FileEntity | None] | None = None

    def _index(self) -> dict[FileMeta, FileEntity | None]:
        if self._by_meta is None:
            index: dict[FileMeta, FileEntity | None] = {}
            for entity in self.previous.values():
                if entity.type == "file" and entity.sha256 is not None:
                    key = FileMeta.of(entity)
                    known = index.get(key, entity)
                    # two files alike in every compared field with different digests (two
                    # volumes cloned from one tree): neither can be chosen by metadata
                    index[key] = entity if known is not None and (
                        known.sha256, known.attributes) == (entity.sha256,
                                                            entity.attributes) else None
            self._by_meta = index
        return self._by_meta

    def same_layout(self, current: Mapping[str, str]) -> bool:
        """Whether the volumes are mounted as in the previous scan (else nothing is kept)."""
        return self.layout is not None and dict(self.layout) == dict(current)

    def candidate(self, current: FileMeta, disk_locator: Mapping[str, Any],
                  runs: Ranges | None) -> FileEntity | None:
        """The previous entity whose digest a file may keep, or None when it must be read: no
        previous file alike, no block map (``runs``: where the content lies on the disk,
        absolute byte offsets), no changed ranges for the disk, or a run touched."""
        changed = self.changed.get(locator_key(disk_locator))
        if changed is None or runs is None:
            return None
        before = self._index().get(current)
        if before is None:
            return None
        if any(changed.touches(offset, length) for offset, length in runs):
            return None
        return before

    def confirm(self, path: str, current: FileMeta, kept: FileEntity) -> bool:
        """Whether ``path`` keeps ``kept``'s digest: its own previous state has the same
        metadata and digest (else it is hashed)."""
        before = self.previous.get(path)
        return (before is not None and FileMeta.of(before) == current
                and (before.sha256, before.attributes) == (kept.sha256, kept.attributes))
