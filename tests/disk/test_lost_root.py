"""Unreadable is not removed: the real root filesystem cannot be read (fuzz class C).

A machine's disk holds its root and a separate /boot. The root then becomes unreadable: its
superblock zeroed; its inode table moved onto zeros (the root inode reads as mode 0, so the
volume fails to open: "the root directory is not a directory"); the LVM metadata of the PV
that holds it damaged; or the EBR chain that lists its logical partition broken (the
partition vanishes from the table, every byte of the filesystem still there). Before: "no
Linux root filesystem (no /etc) found; p2 is scanned as /": every path of the real root was
``removed`` and /boot's files moved to ``/``. Now no other volume is taken as /: / is
unreadable (every path keeps its state, the scan is partial) and each readable volume is
scanned as its own tree ``//<volume>``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.entities import FileEntity
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.imaging.ext4 import block_size, build_ext4_volume
from tests.imaging.linux_disk import (
    BOOT_MB,
    BOOT_UUID,
    ROOT_MB,
    ROOT_UUID,
    boot_fstab,
    boot_tree,
    linux_gpt_disk,
    root_tree,
)
from tests.imaging.lvm import lvm_fill, lvm_linear, lvm_pv
from tests.imaging.partitions import gpt_disk, mbr_disk
from tests.imaging.tools import MIB, write_at

Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, FileEntity]]
PV_MB = 40


def _gpt(workdir: Path) -> tuple[Path, Callable[[], str]]:
    image, root_off, _ = linux_gpt_disk(workdir)

    def damage() -> str:  # the root's superblock zeroed: p1 fails to open
        write_at(image, root_off + 1024, bytes(1024))
        return "p1 failed to open and could be /"
    return image, damage


def _gpt_inode_table(workdir: Path) -> tuple[Path, Callable[[], str]]:
    image, root_off, _ = linux_gpt_disk(workdir)
    size = block_size(image, offset=root_off)
    descriptors = root_off + (2048 if size == 1024 else size)

    def damage() -> str:  # group 0's inode table moved onto zeros: the root inode is mode 0
        assert write_at(image, descriptors + 8, b"\x80\x00") != b"\x80\x00"
        return "p1 failed to open and could be /"
    return image, damage


def _mbr(workdir: Path) -> tuple[Path, Callable[[], str]]:
    image = workdir / "mbr.img"
    offsets = mbr_disk(image, 48, "label-id: 0x5eed0004\n"
                                  "start=2048, size=16MiB, type=83\n"   # 1: /boot
                                  "type=5\n"                            # 2: extended
                                  "size=24MiB, type=83\n")              # 5: root
    build_ext4_volume(boot_tree(workdir / "boot"), image, size_mb=BOOT_MB, offset=offsets[1],
                      uuid=BOOT_UUID)
    build_ext4_volume(root_tree(workdir / "root", boot_fstab()), image, size_mb=ROOT_MB,
                      offset=offsets[5], uuid=ROOT_UUID)

    def damage() -> str:  # the EBR's signature zeroed: the root's partition leaves the table
        assert write_at(image, offsets[2] + 510, b"\0\0") == b"\x55\xaa"
        return "no volume holds a Linux root (/etc) and the disk is not one bare filesystem"
    return image, damage


def _lvm(workdir: Path) -> tuple[Path, Callable[[], str]]:
    image = workdir / "lvm.img"
    boot_off, pv_off = gpt_disk(image, [BOOT_MB, PV_MB], types=["linux", "lvm"],
                                names=["boot", "lvm"])
    build_ext4_volume(boot_tree(workdir / "boot"), image, size_mb=BOOT_MB, offset=boot_off,
                      uuid=BOOT_UUID)
    pv = lvm_pv(image, pv_off, PV_MB * MIB, "vg", [lvm_linear("root", [(0, 6)])])
    lvm_fill(image, pv, [(0, 6)], build_ext4_volume(
        root_tree(workdir / "root", boot_fstab()), workdir / "root.img", size_mb=ROOT_MB,
        uuid=ROOT_UUID))

    def damage() -> str:  # one byte of the metadata text: the PV and its LV fail
        write_at(image, pv_off + 4096 + 512 + 10, b"\xff")
        return "p2 failed to open and could be /"
    return image, damage


@pytest.mark.parametrize("build", [_gpt, _gpt_inode_table, _mbr, _lvm],
                         ids=["superblock", "inode-table", "ebr", "lvm-text"])
def test_unreadable_root_is_not_replaced_by_another_volume(
        tmp_path: Path, scan: Scan, repo: Repository, file_state: State,
        build: Callable[[Path], tuple[Path, Callable[[], str]]]) -> None:
    image, damage = build(tmp_path)
    first = scan(image)
    assert (first.baseline, first.status) == (True, "succeeded")
    before = file_state()
    assert {"/etc/crontab", "/usr/bin/ls", "/boot/vmlinuz"} <= set(before)

    why = damage()
    record = scan(image)
    coverage = repo.scans(MACHINE, limit=1)[0]["coverage"]
    assert (record.status, coverage["status"]) == ("partial", "partial")
    assert coverage["unreadable"] == {
        "/": f"no root filesystem found ({why}): no other volume is taken as /; each "
             "readable volume is scanned under //<volume>"}
    boot = next(v for v in coverage["volumes"] if v["uuid"] == BOOT_UUID)
    assert boot["mountpoint"] == f"//{boot['volume']}"
    assert f"no root filesystem found; each readable volume is scanned as its own tree, " \
           f"//{boot['volume']}" in coverage["notes"]
    # nothing of the real root, nor of /boot, is removed or moved: the state is kept
    assert (changes(record), record.removed) == ([], 0)
    assert file_state() == before

    # the disk as it was: nothing to report
    if build is _mbr:
        write_at(image, _ebr_offset(image) + 510, b"\x55\xaa")
        assert scan(image).status == "succeeded"


def _ebr_offset(image: Path) -> int:
    """Where the first EBR of ``image`` lies (the extended partition's start)."""
    data = image.read_bytes()[:512]
    for i in range(4):
        entry = data[446 + 16 * i:462 + 16 * i]
        if entry[4] in (0x05, 0x0F):
            return int.from_bytes(entry[8:12], "little") * 512
    raise AssertionError("no extended partition")
