"""Partitioned disk images: GPT (:func:`gpt_disk`) and MBR (:func:`mbr_disk`) tables written
by ``sfdisk`` (2.38) on a sparse file.

``e2fsprogs`` tools address a filesystem inside a disk image as ``disk?offset=N``, so ext4
partitions are built, changed (debugfs) and checked (e2fsck) in place
(:mod:`tests.imaging.ext4`); the other mkfs tools build a separate image that
:func:`tests.imaging.tools.embed` copies into the partition's byte range.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from tests.imaging.tools import MIB, SECTOR, _run_env, embed, run


def _partition(image: Path, script: str) -> dict[str, Any]:
    """Write a partition table with ``sfdisk`` and return ``sfdisk -J``'s view of it.

    sfdisk fsyncs the image (about 250 ms on a VM disk) and sgdisk also sleeps a second, so
    the table is written to a sparse scratch copy on tmpfs (/dev/shm) and its written extents
    (the tables only) are copied into the image.
    """
    size = image.stat().st_size
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        scratch = Path(tmp) / "table.img"
        with scratch.open("wb") as fh:
            fh.truncate(size)
        _run_env("sfdisk", "--no-reread", "--no-tell-kernel", "-q", scratch, stdin=script)
        table: dict[str, Any] = json.loads(run("sfdisk", "-J", scratch))["partitiontable"]
        embed(image, 0, scratch)
    return table


def gpt_disk(image: str | os.PathLike[str], sizes_mb: list[int],
             types: list[str] | None = None, names: list[str] | None = None) -> list[int]:
    """Create a GPT disk image with partitions of ``sizes_mb`` MiB, in order, the first at
    1 MiB, each 1 MiB aligned (``types``: sfdisk type aliases such as ``linux``, ``uefi``,
    ``swap``, or type GUIDs, default ``linux``; ``names``: GPT partition names, which TSK gives
    as the description); return their byte offsets. The file is sparse: 1 MiB before the
    partitions and 1 MiB after them for the GPT headers; the disk GUID is fixed."""
    image = Path(image)
    types = types or ["linux"] * len(sizes_mb)
    with image.open("wb") as fh:
        fh.truncate((2 + sum(sizes_mb)) * MIB)
    lines = ["label: gpt", "label-id: 5EED0000-0000-4000-8000-00000000D15C"]
    start = 2048
    for number, (size, kind) in enumerate(zip(sizes_mb, types, strict=True), start=1):
        name = f', name="{names[number - 1]}"' if names else ""
        lines.append(f"start={start}, size={size}MiB, type={kind}{name}")
        start += size * MIB // SECTOR
    table = _partition(image, "\n".join(lines) + "\n")
    sector = int(table.get("sectorsize", SECTOR))
    return [int(p["start"]) * sector for p in table["partitions"]]


def mbr_disk(image: str | os.PathLike[str], size_mb: int, script: str) -> dict[int, int]:
    """Create an MBR disk image of ``size_mb`` MiB partitioned by an ``sfdisk`` script; return
    the byte offset of each partition by its number (logical partitions are 5, 6, ...)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    table = _partition(image, "label: dos\n" + script)
    sector = int(table.get("sectorsize", SECTOR))
    return {int(re.search(r"(\d+)$", p["node"]).group(1)): int(p["start"]) * sector  # type: ignore[union-attr]
            for p in table["partitions"]}
