"""Partition discovery: GPT, MBR (with extended/logical partitions) or none (whole disk).

LVM2 logical volumes found on these volumes (:mod:`scanner.disk.lvm`) become volumes too,
named ``<pv volume>/lvm:<vg>/<lv>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytsk3

_TABLE_NAMES = {
    getattr(pytsk3, "TSK_VS_TYPE_DOS", 0x01): "mbr",
    getattr(pytsk3, "TSK_VS_TYPE_BSD", 0x02): "bsd",
    getattr(pytsk3, "TSK_VS_TYPE_SUN", 0x04): "sun",
    getattr(pytsk3, "TSK_VS_TYPE_MAC", 0x08): "mac",
    getattr(pytsk3, "TSK_VS_TYPE_GPT", 0x10): "gpt",
}


@dataclass(frozen=True, slots=True)
class Volume:
    """A byte range of the disk that may hold a filesystem."""

    index: int
    offset: int
    length: int
    description: str
    table: str  # "gpt", "mbr", ... "none" for a whole-disk filesystem, "lvm" for an LV
    name: str | None = None  # the label of an LV: "p2/lvm:rootvg/root"

    @property
    def label(self) -> str:
        """Short name for reports: ``p1`` for partitions, ``disk`` for a whole-disk volume,
        ``p2/lvm:rootvg/root`` for a logical volume."""
        if self.name is not None:
            return self.name
        return "disk" if self.table == "none" else f"p{self.index}"


def lv_label(pv_label: str, vg: str, lv: str) -> str:
    """The volume label of logical volume ``vg/lv`` whose first extent lies on ``pv_label``."""
    return f"{pv_label}/lvm:{vg}/{lv}"


def discover_volumes(img: pytsk3.Img_Info, disk_size: int) -> tuple[str, list[Volume]]:
    """List the allocated partitions, or the whole disk when there is no partition table.

    Returns the partition table type and the volumes in on-disk order.
    """
    try:
        vs = pytsk3.Volume_Info(img)
    except OSError:
        return "none", [Volume(0, 0, disk_size, "whole disk", "none")]
    table = _TABLE_NAMES.get(int(vs.info.vstype), "unknown")
    block_size = vs.info.block_size
    volumes: list[Volume] = []
    for part in vs:
        if not part.flags & pytsk3.TSK_VS_PART_FLAG_ALLOC:
            continue
        raw = part.desc
        desc = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        volumes.append(Volume(len(volumes) + 1, part.start * block_size, part.len * block_size,
                              desc, table))
    if not volumes:
        return table, [Volume(0, 0, disk_size, "whole disk", "none")]
    return table, volumes
