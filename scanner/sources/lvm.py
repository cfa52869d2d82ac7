"""A logical volume as a block source: runs of bytes of one or more physical volumes.

The mapping (which LV byte range lies where on which PV) comes from the LVM2 metadata, read
by :mod:`scanner.disk.lvm`; this module only serves reads through it, so an LV works over any
block source a PV lives on. Its locator ``{"kind": "lvm", "pvs": [...], "vg": ..., "lv": ...}``
reopens it in another process (hash workers) through :func:`scanner.sources.open_locator`.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple

from scanner.errors import SourceReadError
from scanner.sources.base import BlockSource


class Extent(NamedTuple):
    """``length`` bytes at ``offset`` of the LV lie at ``source_offset`` of ``source``."""

    offset: int
    length: int
    source: BlockSource
    source_offset: int


class LvmVolumeSource:
    """Reads of a logical volume, mapped onto its physical volumes' sources."""

    def __init__(self, extents: list[Extent], size: int, locator: dict[str, Any],
                 owned: tuple[BlockSource, ...] = ()) -> None:
        self._extents = sorted(extents, key=lambda e: e.offset)
        self._starts = [e.offset for e in self._extents]
        self._size = size
        self._locator = locator
        self._owned = owned
        covered = 0
        for extent in self._extents:
            if extent.offset != covered:
                raise ValueError(f"logical volume map leaves a gap at {covered}")
            covered += extent.length
        if covered != size:
            raise ValueError(f"logical volume map covers {covered} of {size} bytes")

    @property
    def size(self) -> int:
        """Size of the logical volume."""
        return self._size

    @property
    def locator(self) -> dict[str, Any]:
        """``{"kind": "lvm", "pvs": [PV locators], "vg": name, "lv": name}``."""
        return self._locator

    @property
    def extents(self) -> list[Extent]:
        """The map, in LV order."""
        return list(self._extents)

    def read_at(self, offset: int, length: int) -> bytes:
        """Read across extents; short only at the end of the volume."""
        if offset < 0 or length < 0:
            raise SourceReadError(f"negative read at {offset} ({length} bytes)")
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""
        index = bisect.bisect_right(self._starts, offset) - 1
        extent = self._extents[index]
        within = offset - extent.offset
        if within + length <= extent.length:  # the common case: one extent
            data = extent.source.read_at(extent.source_offset + within, length)
            if len(data) != length:
                raise SourceReadError(f"logical volume: short read at {offset} "
                                      "(physical volume cut short?)")
            return data
        parts = []
        remaining = length
        while remaining:
            extent = self._extents[index]
            within = offset - extent.offset
            take = min(remaining, extent.length - within)
            data = extent.source.read_at(extent.source_offset + within, take)
            if len(data) != take:
                raise SourceReadError(f"logical volume: short read at {offset} "
                                      "(physical volume cut short?)")
            parts.append(data)
            offset += take
            remaining -= take
            index += 1
        return b"".join(parts)

    def local_file(self) -> None:
        """A logical volume is no single byte range of a file."""
        return None

    def disk_offset(self) -> None:
        """A logical volume is no single byte range of a disk."""
        return None

    def close(self) -> None:
        """Close the PV sources this volume opened itself (reopened from a locator)."""
        for source in self._owned:
            source.close()
        self._owned = ()
