"""Volume discovery: from the disks of one machine to its open filesystems.

Each disk's partitions (or the whole disk) are listed; LVM2 physical volumes are gathered
across *all* the disks, so a volume group whose PVs lie on two disks is assembled; then every
partition and visible logical volume is opened. What became of each disk and volume goes to
the coverage report. pytsk3 stays behind this module (and the filesystem backends).

Volume labels: a machine's first disk keeps the labels a one-disk scan always had (``p1``,
``disk`` for a whole-disk filesystem, ``p2/lvm:rootvg/root`` for a logical volume, named after
the PV holding its first extent); the volumes of the disks after it are prefixed with the
disk's index: ``d1:p1``, ``d1:disk``, ``d1:p1/lvm:datavg/data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import pytsk3

from scanner.collectors.hashing import VolumeRef
from scanner.coverage import Coverage, DiskReport, VolumeReport
from scanner.disk.filesystems import open_filesystem
from scanner.disk.identity import read_identity
from scanner.disk.lvm import (
    AssembledGroup,
    LvmError,
    PhysicalVolume,
    assemble,
    first_extent,
    open_logical_volume,
    orphans,
    read_physical_volume,
)
from scanner.disk.nodes import Filesystem
from scanner.disk.partition_ids import MachineIds
from scanner.disk.tsk_image import open_image
from scanner.disk.volumes import Volume, discover_volumes, lv_label
from scanner.errors import CorruptFilesystem, SourceReadError, UnsupportedFilesystem
from scanner.limits import Limits
from scanner.sources.base import BlockSource, SliceSource
from scanner.sources.locators import stored_locator


@dataclass(slots=True)
class OpenedVolume:
    """A volume whose filesystem is open: its label, the filesystem, how a hash worker
    reopens it, and its coverage entry."""

    label: str
    fs: Filesystem
    ref: VolumeRef
    report: VolumeReport


class _Place(NamedTuple):
    """Where a physical volume lies: its disk's index, its offset there, the disk's locator."""

    disk: int
    offset: int
    disk_locator: dict[str, Any]


def disk_prefix(index: int) -> str:
    """The label prefix of the volumes of disk ``index``: none for the first disk."""
    return "" if index == 0 else f"d{index}:"


def disk_name(source: BlockSource, name: str | None) -> str:
    """The name a disk is reported by: the caller's, else its path, else its locator (in
    its stored form: a SAS URL's signature is never reported)."""
    locator = source.locator
    return name or str(locator.get("path") or stored_locator(locator))


def discover(sources: Sequence[BlockSource], names: Sequence[str], coverage: Coverage,
             limits: Limits, ids: MachineIds | None = None) -> list[OpenedVolume]:
    """Open every readable filesystem of the disks ``sources`` (named ``names``, in order).

    Fills ``coverage.disks`` and ``coverage.volumes``, and ``ids`` (when given) with the
    partition ids of the GPT and MBR partitions (what Windows drive letters name). A disk
    that cannot be read fails only itself (its report says why); the caller decides what no
    open filesystem at all means.
    """
    opened: list[OpenedVolume] = []
    pvs: list[PhysicalVolume] = []
    places: dict[str, _Place] = {}  # PV label -> where it lies
    for index, (source, name) in enumerate(zip(sources, names, strict=True)):
        disk = DiskReport(name, source.size)
        coverage.disks.append(disk)
        try:
            source.read_at(0, min(4096, source.size))  # an unreadable disk fails here
            img = open_image(source)
            disk.partition_table, volumes = discover_volumes(img, source.size)
        except (SourceReadError, OSError) as exc:
            disk.status, disk.reason = "failed", f"cannot read the disk: {exc}"
            continue
        if ids is not None and disk.partition_table in ("gpt", "mbr"):
            ids.add_disk(source, name, [(disk_prefix(index) + v.label, v.offset)
                                        for v in volumes if v.table == disk.partition_table])
        for volume in volumes:
            label = disk_prefix(index) + volume.label
            report = VolumeReport(label, volume.offset, volume.length, volume.description)
            coverage.volumes.append(report)
            disk.volumes.append(label)
            pv = _open_partition(img, source, volume, report, opened, limits)
            if pv is not None:
                pvs.append(pv)
                places[pv.key] = _Place(index, volume.offset, source.locator)
    groups = assemble(pvs)
    for group in groups:
        _open_logical_volumes(group, places, coverage, opened)
    reports = {r.volume: r for r in coverage.volumes}
    where = "on this disk" if len(sources) == 1 else "on the disks scanned"
    for pv in orphans(pvs, groups):
        reports[pv.key].status, reports[pv.key].reason = "failed", (
            "LVM2 physical volume without metadata; the physical volumes holding its volume "
            f"group's metadata are not {where}")
    for item in opened:
        item.fs.limits = limits
    return opened


def _open_partition(img: pytsk3.Img_Info, source: BlockSource, volume: Volume,
                    report: VolumeReport, opened: list[OpenedVolume],
                    limits: Limits) -> PhysicalVolume | None:
    """Open one partition (or whole-disk volume): an LVM2 PV is returned for assembly, a
    filesystem is added to ``opened``; what became of it goes to ``report``."""
    if volume.offset + volume.length > source.size:
        report.status, report.reason = "failed", (
            f"truncated: the partition ends at {volume.offset + volume.length} but the "
            f"disk has {source.size} bytes")
        return None
    vsource = SliceSource(source, volume.offset, volume.length)
    try:
        pv = read_physical_volume(report.volume, vsource, limits)
    except LvmError as exc:
        report.filesystem, report.status, report.reason = "lvm2", "failed", str(exc)
        return None
    if pv is not None:
        report.filesystem, report.uuid, report.status = "lvm2", pv.label.uuid, "scanned"
        return pv
    ref = VolumeRef(source.locator, volume.offset, volume.length)
    _open_volume(img, volume, vsource, ref, report, opened)
    return None


def _open_volume(img: pytsk3.Img_Info | None, volume: Volume, vsource: BlockSource,
                 ref: VolumeRef, report: VolumeReport, opened: list[OpenedVolume]) -> None:
    """Open the filesystem of one volume; record what became of it in ``report``."""
    try:
        fs = open_filesystem(img, volume, vsource)
    except UnsupportedFilesystem as exc:
        report.filesystem, report.reason = exc.name, str(exc)
        identity = read_identity(vsource, exc.name)
        report.uuid, report.label = identity.uuid, identity.label
        return
    except (CorruptFilesystem, SourceReadError) as exc:
        report.status, report.reason = "failed", str(exc)
        return
    report.filesystem = fs.fs_type
    report.uuid, report.label = fs.identity.uuid, fs.identity.label
    ref = replace(ref, fs_type=fs.fs_type)
    opened.append(OpenedVolume(report.volume, fs, ref, report))


def _open_logical_volumes(group: AssembledGroup, places: dict[str, _Place],
                          coverage: Coverage, opened: list[OpenedVolume]) -> None:
    """Each visible LV of a volume group becomes a volume, reported right after the PV that
    holds its first extent."""
    vg = group.group
    if not group.members:
        return
    for lv in vg.lvs:
        if not lv.visible:
            continue  # internal parts (thin pool data, RAID images, snapshot exceptions)
        pv, start = first_extent(group, lv)
        place = places[pv.key]
        offset = 0 if start is None else place.offset + start  # on the disk, for the report
        label = lv_label(pv.key, vg.name, lv.name)
        report = VolumeReport(label, offset, lv.size, f"LVM2 logical volume {lv.full_name}")
        on_disk = coverage.disks[place.disk].volumes
        on_disk.insert(max(i for i, v in enumerate(on_disk)
                           if v == pv.key or v.startswith(pv.key + "/lvm:")) + 1, label)
        reports = coverage.volumes
        at = max(i for i, r in enumerate(reports)
                 if r.volume == pv.key or r.volume.startswith(pv.key + "/lvm:"))
        reports.insert(at + 1, report)
        if lv.error is not None:  # invalid metadata (overlapping LVs): content unknown
            report.status, report.reason = "failed", lv.error
            continue
        if lv.reason is not None:
            report.reason = lv.reason
            continue
        try:
            lsource = open_logical_volume(group, lv)
        except LvmError as exc:
            report.status, report.reason = "failed", str(exc)
            continue
        volume = Volume(0, 0, lsource.size, report.description, "lvm", name=label)
        ref = VolumeRef(place.disk_locator, 0, lsource.size, volume_locator=lsource.locator)
        _open_volume(open_image(lsource), volume, lsource, ref, report, opened)
