"""Machines with several disk images (built with the tools of the other :mod:`tests.imaging`
modules).

* :func:`ext4_opt_machine`: disk 0 a GPT disk whose p1 is the ext4 root (its /etc/fstab mounts
  / by UUID and ``/opt`` by ``UUID=OPT_UUID``), disk 1 a GPT disk whose p1 is that ext4 /opt.
* :func:`lvm_xfs_machine`: a volume group ``vg0`` with one PV on each disk (p1 of two GPT
  disks) and one linear LV ``root`` whose first ``split`` extents lie on disk 0 and the rest on
  disk 1, holding an XFS root (fstab: ``/dev/mapper/vg0-root /``). The XFS image is built (and
  changed) as a file of its own, then written through the LV's extent map into the two disks;
  :func:`split_through` picks the split so that a given file has data on both disks.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.imaging.ext4 import build_ext4_volume, debugfs, e2fsck_ok, overwrite_in_place
from tests.imaging.linux_disk import ROOT_UUID, root_tree
from tests.imaging.lvm import _lvm_id, lvm_linear, lvm_metadata, lvm_pv_header
from tests.imaging.partitions import gpt_disk
from tests.imaging.tools import MIB, _copy_range, copy_image, write_at
from tests.imaging.xfs import build_xfs_tree, xfs_db

OPT_UUID = "0de0a11c-2222-4333-8444-555566667777"
OPT_MB = 16
ROOT_MB = 24
OPT_FILES = {"app/app.conf": (b"listen=8080\nworkers=4\n", 0o644),
             "app/run.sh": (b"#!/bin/sh\nexec /opt/app/bin/server\n", 0o755),
             "app/bin/server": (b"\x7fELF" + bytes(range(256)) * 8, 0o755)}


def opt_fstab(opt_spec: str = f"UUID={OPT_UUID}") -> str:
    """An /etc/fstab mounting the root by UUID and /opt by ``opt_spec``."""
    return (f"UUID={ROOT_UUID} /    ext4 errors=remount-ro 0 1\n"
            f"{opt_spec} /opt ext4 defaults,nofail 0 2\n"
            "tmpfs /tmp tmpfs defaults 0 0\n")


def opt_tree(root: Path) -> Path:
    """The content of the /opt filesystem (:data:`OPT_FILES`)."""
    for rel, (data, mode) in OPT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    return root


@dataclass(frozen=True)
class TwoDisks:
    """The images of a two-disk machine and where its filesystems lie on them."""

    disk0: Path
    disk1: Path
    offset0: int   # the root's partition on disk 0 (ext4) or the PV on disk 0 (LVM)
    offset1: int   # the /opt partition on disk 1 (ext4) or the PV on disk 1 (LVM)


def change_ext4_opt_machine(disks: TwoDisks, workdir: Path
                            ) -> tuple[Path, Path, list[Any]]:
    """Copies of an :func:`ext4_opt_machine`'s disks (in ``workdir``) with one change on each
    (``/etc/a.conf`` owned by uid 1000 on the root, ``/opt/app/app.conf`` listening on 9090),
    and the exact changes (:func:`tests.conftest.changes`, sorted) a scan reports for them."""
    disk0 = copy_image(disks.disk0, workdir / "m0.img")
    disk1 = copy_image(disks.disk1, workdir / "m1.img")
    debugfs(disk0, "sif /etc/a.conf uid 1000", offset=disks.offset0)
    old = OPT_FILES["app/app.conf"][0]
    new = old.replace(b"8080", b"9090")
    overwrite_in_place(disk1, "/app/app.conf", new, disks.offset1)
    assert e2fsck_ok(disk0, disks.offset0) and e2fsck_ok(disk1, disks.offset1)
    return disk0, disk1, [
        ("modified", "/etc/a.conf", ("uid",), {"uid": (0, 1000)}),
        ("modified", "/opt/app/app.conf", ("sha256",),
         {"sha256": (hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest())}),
    ]


def ext4_opt_machine(workdir: Path, suffix: str = "", opt_uuid: str = OPT_UUID) -> TwoDisks:
    """Disk 0: GPT, p1 the ext4 root (:func:`tests.imaging.root_tree` with :func:`opt_fstab`
    and an empty /opt); disk 1: GPT, p1 the ext4 /opt (UUID :data:`OPT_UUID`). Everything
    0:0 at ``BASE_TIME``; ``opt_uuid`` gives disk 1's filesystem another UUID. The source trees
    are written once per ``workdir``."""
    root_src, opt_src = workdir / "root-src", workdir / "opt-src"
    if not root_src.exists():
        root_tree(root_src, opt_fstab(), mountpoints=("opt",))
        opt_tree(opt_src)
    disk0, disk1 = workdir / f"disk0{suffix}.img", workdir / f"disk1{suffix}.img"
    (root_off,) = gpt_disk(disk0, [ROOT_MB], names=["root"])
    (opt_off,) = gpt_disk(disk1, [OPT_MB], names=["opt"])
    build_ext4_volume(root_src, disk0, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    build_ext4_volume(opt_src, disk1, size_mb=OPT_MB, offset=opt_off, uuid=opt_uuid)
    return TwoDisks(disk0, disk1, root_off, opt_off)


# -- a volume group over two disks ----------------------------------------------------------------

XFS_LV_UUID = "6a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
EXTENT = 4 * MIB
LV_EXTENTS = 75                    # 300 MiB, mkfs.xfs's minimum
LV_BYTES = LV_EXTENTS * EXTENT
BIG_FILE = "usr/bin/bigtool"       # 24 MiB: longer than the LV's part on disk 0
BIG_SIZE = 24 * MIB


def lvm_fstab() -> str:
    """The root's /etc/fstab: the XFS root on the LV, by its device-mapper name."""
    return "/dev/mapper/vg0-root / xfs defaults 0 0\n"


def big_content(seed: int = 0) -> bytes:
    """The content of :data:`BIG_FILE` (``seed`` changes its first and last 4 KiB)."""
    block = bytes(range(256)) * 16
    head = bytes([seed]) * 4096 if seed else block
    return head + block * (BIG_SIZE // 4096 - 2) + (bytes([seed ^ 0x5A]) * 4096 if seed
                                                      else block)


def lvm_root_tree(root: Path) -> Path:
    """:func:`root_tree` with the LVM fstab and :data:`BIG_FILE`."""
    root_tree(root, lvm_fstab(), mountpoints=())
    big = root / BIG_FILE
    big.write_bytes(big_content())
    big.chmod(0o755)
    return root


def build_lvm_root_fs(src: Path, image: Path) -> Path:
    """The XFS root filesystem image (:data:`LV_BYTES` long) from ``src``."""
    return build_xfs_tree(src, image, size_mb=LV_BYTES // MIB, uuid=XFS_LV_UUID,
                          last=("usr/bin",))


def lv_runs(split: int) -> list[tuple[int, int, int]]:
    """The LV's layout: (PV index, first extent, count): ``split`` extents on disk 0's PV,
    the rest on disk 1's."""
    return [(0, 0, split), (1, 0, LV_EXTENTS - split)]


def pv_sizes_mb(split: int) -> tuple[int, int]:
    """The PV partitions' sizes: the extents each holds plus 1 MiB before its data area."""
    return split * EXTENT // MIB + 1, (LV_EXTENTS - split) * EXTENT // MIB + 1


def split_through(fs_image: Path, path: str) -> int:
    """The split (extents on disk 0) that puts the middle of ``path``'s data at the boundary
    between the disks: the file then has data on both."""
    ranges = xfs_file_ranges(fs_image, path)
    start, end = min(s for s, _ in ranges), max(s + n for s, n in ranges)
    return (start + end) // 2 // EXTENT


def lvm_xfs_machine(workdir: Path, fs_image: Path, split: int, suffix: str = "") -> TwoDisks:
    """Two GPT disks, each p1 a PV of ``vg0``; LV ``root`` laid out as :func:`lv_runs`
    holding the bytes of ``fs_image``. Returns the disks and the PVs' partition offsets."""
    disk0, disk1 = workdir / f"lvm0{suffix}.img", workdir / f"lvm1{suffix}.img"
    size0, size1 = pv_sizes_mb(split)
    (off0,) = gpt_disk(disk0, [size0])
    (off1,) = gpt_disk(disk1, [size1])
    pvs = [(disk0, off0, size0 * MIB), (disk1, off1, size1 * MIB)]
    placed = lvm_vg_across(pvs, "vg0", [lvm_linear("root", lv_runs(split))])
    fill_across(placed, lv_runs(split), fs_image)
    return TwoDisks(disk0, disk1, off0, off1)


def lvm_vg_across(pvs: list[tuple[Path, int, int]], vg: str, lvs: list[dict[str, Any]], *,
                  extent_mb: int = EXTENT // MIB, pe_start: int = MIB) -> list[dict[str, Any]]:
    """:func:`tests.imaging.lvm_vg` with each PV on a disk image of its own: ``pvs`` are
    (image, partition offset, size); every PV carries the metadata. Returns per PV its
    ``image``, ``pv_uuid``, ``data_offset`` (of extent 0 in its image), ``extent_size`` and
    ``extents``."""
    ids = [_lvm_id(f"pv:{vg}:pv{i}:{image.name}") for i, (image, _o, _s) in enumerate(pvs)]
    entries = [{"name": f"pv{i}", "uuid": ids[i][1], "dev_size": size, "pe_start": pe_start,
                "pe_count": (size - pe_start) // (extent_mb * MIB)}
               for i, (_image, _off, size) in enumerate(pvs)]
    text = lvm_metadata(vg, entries, lvs, extent_mb=extent_mb)
    out = []
    for i, (image, offset, size) in enumerate(pvs):
        label, mda = lvm_pv_header(ids[i][0], size, pe_start, text)
        write_at(image, offset + 512, label)
        write_at(image, offset + 4096, mda)
        out.append({"image": image, "pv_uuid": ids[i][1], "data_offset": offset + pe_start,
                    "extent_size": extent_mb * MIB, "extents": entries[i]["pe_count"]})
    return out


def fill_across(pvs: list[dict[str, Any]], runs: list[tuple[int, int, int]],
                content: Path) -> None:
    """Write ``content`` (a filesystem image) into an LV laid out as ``runs`` (PV index,
    first extent, count) over PVs on several images (holes stay holes)."""
    lv_offset, size = 0, os.path.getsize(content)
    for index, first, count in runs:
        pv = pvs[index]
        length = min(count * pv["extent_size"], size - lv_offset)
        if length <= 0:
            break
        _copy_range(content, pv["image"], lv_offset, length,
                    pv["data_offset"] + first * pv["extent_size"])
        lv_offset += count * pv["extent_size"]


def xfs_file_ranges(image: Path, path: str) -> list[tuple[int, int]]:
    """Where a file's data lies in an XFS image: (byte offset, length) of each extent."""
    out = xfs_db(image, f"path {path}", "bmap", write=False)
    extents = re.findall(r"data offset \d+ startblock (\d+) \(\d+/\d+\) count (\d+)", out)
    block = int(xfs_db(image, "sb 0", "print blocksize", write=False).split("=")[1])
    ranges = []
    for start, count in extents:
        daddr = xfs_db(image, f"convert fsblock {start} byte", write=False)
        ranges.append((int(daddr.split()[0], 0), int(count) * block))
    return ranges
