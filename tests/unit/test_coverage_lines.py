"""The coverage report as people read it: every disk, then its volumes; reports stored before
disks were listed (one disk described at the top) read as they always did."""

from __future__ import annotations

from typing import Any

from scanner.cli_output import coverage_lines

MIB = 1 << 20


def _volume(label: str, offset: int, fs: str, mountpoint: str | None) -> dict[str, Any]:
    return {"volume": label, "offset": offset, "length": 16 * MIB, "description": "Linux",
            "filesystem": fs, "status": "scanned", "reason": None, "mountpoint": mountpoint,
            "uuid": None, "label": None}


def test_an_old_report_without_disks() -> None:
    old = {"source": "disk.img", "disk_size": 34 * MIB, "partition_table": "gpt",
           "volumes": [_volume("p1", MIB, "ext4", "/"), _volume("p2", 17 * MIB, "vfat", None)],
           "notes": [], "unreadable": {}, "unreadable_count": 0}
    assert coverage_lines(old) == [
        "disk: disk.img (34.0 MiB, partition table: gpt)",
        "  p1: ext4, 16.0 MiB, scanned mounted at /",
        "  p2: vfat, 16.0 MiB, scanned"]


def test_a_report_lists_each_disk_then_its_volumes() -> None:
    report = {
        "source": "d0.img, d1.img, d2.img", "disk_size": 60 * MIB, "partition_table": "gpt",
        # volumes in discovery order: an LV is listed after the PV of its first extent
        "volumes": [_volume("p1", MIB, "lvm2", None), _volume("d1:p1", MIB, "ext4", "/opt"),
                    _volume("p1/lvm:vg/root", 2 * MIB, "xfs", "/")],
        "disks": [
            {"name": "d0.img", "size": 20 * MIB, "partition_table": "gpt", "status": "read",
             "reason": None, "volumes": ["p1", "p1/lvm:vg/root"]},
            {"name": "d1.img", "size": 20 * MIB, "partition_table": "mbr", "status": "read",
             "reason": None, "volumes": ["d1:p1"]},
            {"name": "d2.img", "size": 20 * MIB, "partition_table": "none", "status": "failed",
             "reason": "cannot read the disk: I/O error", "volumes": []}],
        "notes": [], "unreadable": {}, "unreadable_count": 0}
    assert coverage_lines(report) == [
        "disk 0: d0.img (20.0 MiB, partition table: gpt)",
        "  p1: lvm2, 16.0 MiB, scanned",
        "  p1/lvm:vg/root: xfs, 16.0 MiB, scanned mounted at /",
        "disk 1: d1.img (20.0 MiB, partition table: mbr)",
        "  d1:p1: ext4, 16.0 MiB, scanned mounted at /opt",
        "disk 2: d2.img (20.0 MiB, partition table: none) — failed: cannot read the disk: "
        "I/O error"]
