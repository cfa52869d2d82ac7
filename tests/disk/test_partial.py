"""Unreadable is not removed: damaged volumes, directories and files on real images.

A baseline scan reads everything; the next image has part of the disk damaged (a wiped or cut
off partition, a directory or a file whose blocks point outside the filesystem) plus one real
change elsewhere. The damaged part must be listed as unreadable in the coverage report, the
scan must be ``partial``, the previous state of what could not be read must be kept (no
``removed`` events) and the real change must still be reported. A later scan of the repaired
image must report nothing for the damaged part.

"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scanner.entities import FileEntity
from scanner.errors import NoFilesystemError
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.imaging.ext4 import block_size, build_ext4_volume, debugfs, e2fsck_ok, inode_info
from tests.imaging.linux_disk import BOOT_MB, BOOT_UUID, linux_gpt_disk
from tests.imaging.tools import copy_image, write_at
from tests.imaging.trees import linux_tree

Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, FileEntity]]

BOOT_CHILDREN = {"/boot/grub", "/boot/grub/grub.cfg", "/boot/lost+found", "/boot/vmlinuz"}
LS_CHOWN = ("modified", "/usr/bin/ls", ("uid",), {"uid": (0, 1000)})
BOOT_MISSING = f"not scanned: UUID={BOOT_UUID} is not a readable volume of this disk"


def last_coverage(repo: Repository) -> dict[str, Any]:
    return repo.scans(MACHINE, limit=1)[0]["coverage"]




# -- 9. a /boot volume that cannot be read -------------------------------------------------------

@dataclass
class BootDisk:
    """The root + /boot GPT disk of :func:`linux_gpt_disk`, scanned as the baseline."""

    image: Path
    root_off: int
    boot_off: int
    baseline: dict[str, FileEntity]
    workdir: Path

    def broken(self, how: str) -> Path:
        """A copy with /usr/bin/ls chowned on the root and the /boot volume damaged."""
        image = copy_image(self.image, self.workdir / f"{how}.img")
        debugfs(image, "sif /usr/bin/ls uid 1000", offset=self.root_off)
        if how == "wiped":  # zeros over the boot sector and the ext4 superblock
            write_at(image, self.boot_off, bytes(2048))
        else:  # the image ends 4 MiB into /boot (a short copy, an interrupted download)
            os.truncate(image, self.boot_off + 4 * 1024 * 1024)
        return image

    def p2_report(self, how: str) -> dict[str, Any]:
        """The coverage entry expected for the damaged p2."""
        if how == "wiped":
            reason = ("no recognisable filesystem (Unable to open the image as a filesystem at "
                      f"offset: 0x{self.boot_off:08x} with error: Cannot determine file system "
                      "type)")
        else:
            end = self.boot_off + BOOT_MB * 1024 * 1024
            reason = (f"truncated: the partition ends at {end} but the disk has "
                      f"{self.boot_off + 4 * 1024 * 1024} bytes")
        return {"volume": "p2", "offset": self.boot_off, "length": BOOT_MB * 1024 * 1024,
                "description": "boot", "filesystem": None, "status": "failed",
                "reason": reason, "mountpoint": None, "uuid": None, "label": None}


@pytest.fixture
def boot_disk(tmp_path: Path, scan: Scan, file_state: State) -> BootDisk:
    image, root_off, boot_off = linux_gpt_disk(tmp_path)
    record = scan(image)
    assert (record.baseline, record.status) == (True, "succeeded")
    baseline = file_state()
    assert set(baseline) > BOOT_CHILDREN
    return BootDisk(image, root_off, boot_off, baseline, tmp_path)


@pytest.mark.parametrize("how", ["wiped", "truncated"])
def test_unreadable_boot_volume_keeps_its_files(boot_disk: BootDisk, how: str, scan: Scan,
                                                repo: Repository, file_state: State) -> None:
    record = scan(boot_disk.broken(how))
    assert record.status == "partial"
    coverage = last_coverage(repo)
    assert coverage["status"] == "partial"
    assert coverage["volumes"][0]["status"] == "scanned"
    assert coverage["volumes"][1] == boot_disk.p2_report(how)
    assert coverage["unreadable"] == {"/boot": BOOT_MISSING}
    # No "removed" for /boot/*: their rows are kept as they were. The root's own change is
    # still reported; /boot itself (the mount point) is not looked at on the root volume.
    assert changes(record) == [LS_CHOWN]
    assert record.removed == 0
    state = file_state()
    assert {p: state[p] for p in BOOT_CHILDREN} == {p: boot_disk.baseline[p] for p in BOOT_CHILDREN}

    # /boot readable again (the original image, ls still chowned): nothing to report for /boot
    repaired = copy_image(boot_disk.image, boot_disk.workdir / "repaired.img")
    debugfs(repaired, "sif /usr/bin/ls uid 1000", offset=boot_disk.root_off)
    record = scan(repaired)
    assert record.status == "succeeded"
    assert changes(record) == []
    state = file_state()
    assert {p: state[p] for p in BOOT_CHILDREN} == {p: boot_disk.baseline[p] for p in BOOT_CHILDREN}


@pytest.mark.parametrize("how", ["wiped", "truncated"])
def test_unreadable_mount_point_reports_nothing(boot_disk: BootDisk, how: str, scan: Scan,
                                               file_state: State) -> None:
    record = scan(boot_disk.broken(how))
    assert changes(record) == [LS_CHOWN]
    assert file_state()["/boot"] == boot_disk.baseline["/boot"]
    repaired = copy_image(boot_disk.image, boot_disk.workdir / "repaired.img")
    debugfs(repaired, "sif /usr/bin/ls uid 1000", offset=boot_disk.root_off)
    assert changes(scan(repaired)) == []


# -- 10. an unreadable directory inside a readable filesystem ------------------------------------

@dataclass
class Base:
    """A bare ext4 image of linux_tree (0:0, pinned times), scanned as the baseline."""

    image: Path
    baseline: dict[str, FileEntity]
    workdir: Path

    def copy(self, name: str) -> Path:
        return copy_image(self.image, self.workdir / name)


@pytest.fixture
def base(tmp_path: Path, scan: Scan, file_state: State) -> Base:
    image = build_ext4_volume(linux_tree(tmp_path / "src"), tmp_path / "base.img", size_mb=32)
    record = scan(image)
    assert (record.baseline, record.status) == (True, "succeeded")
    return Base(image, file_state(), tmp_path)


# i_block of an extent-mapped inode: header (3 words), then the first extent: ee_block
# (block[3]), ee_len | ee_start_hi << 16 (block[4]), ee_start_lo (block[5]). Setting
# ee_start_lo far beyond the filesystem makes the data unreadable, nothing else changes.
FAR_BLOCK = 0x7FFFFFF0


def test_directory_pointing_outside_the_filesystem_is_unreadable(base: Base, scan: Scan,
                                                                 repo: Repository,
                                                                 file_state: State) -> None:
    inode = inode_info(base.image, "/usr/sbin")["inode"]
    image = base.copy("broken.img")
    debugfs(image, f"sif /usr/sbin block[5] {FAR_BLOCK}", "sif /usr/bin/ls uid 1000")
    record = scan(image)
    assert record.status == "partial"
    assert changes(record) == [LS_CHOWN]  # no "removed" for /usr/sbin/sshd, /usr/sbin/useradd
    unreadable = last_coverage(repo)["unreadable"]
    assert list(unreadable) == ["/usr/sbin"]
    # the rest of the message is TSK's own ("Error reading directory contents: 52")
    assert unreadable["/usr/sbin"].startswith(f"cannot list directory (inode {inode}): ")
    state = file_state()
    for path in ("/usr/sbin", "/usr/sbin/sshd", "/usr/sbin/useradd"):
        assert state[path] == base.baseline[path], path

    repaired = base.copy("repaired.img")
    debugfs(repaired, "sif /usr/bin/ls uid 1000")
    record = scan(repaired)
    assert (record.status, record.events) == ("succeeded", [])


@pytest.mark.parametrize("garbage", ["zeros", "random"])
def test_garbage_directory_block_is_unreadable_not_empty(base: Base, garbage: str, scan: Scan,
                                                         repo: Repository,
                                                         file_state: State) -> None:
    out = debugfs(base.image, "blocks /usr/sbin", write=False)
    (block,) = [int(word) for word in out.split() if word.isdigit()]
    size = block_size(base.image)
    data = bytes(size) if garbage == "zeros" else random.Random(7).randbytes(size)
    image = base.copy("broken.img")
    write_at(image, block * size, data)
    debugfs(image, "sif /usr/bin/ls uid 1000")
    record = scan(image)
    assert changes(record) == [LS_CHOWN]
    assert record.status == "partial"
    assert list(last_coverage(repo)["unreadable"]) == ["/usr/sbin"]
    state = file_state()
    assert {"/usr/sbin/sshd", "/usr/sbin/useradd"} <= set(state)


# -- 11. a file whose data lies outside the filesystem -------------------------------------------

def test_file_with_unreadable_data_keeps_its_state(base: Base, scan: Scan, repo: Repository,
                                                   file_state: State) -> None:
    inode = inode_info(base.image, "/usr/bin/login")["inode"]
    image = base.copy("broken.img")
    debugfs(image, f"sif /usr/bin/login block[5] {FAR_BLOCK}", "sif /usr/bin/ls uid 1000",
            "sif /usr/sbin/sshd mode 0104755")
    record = scan(image)
    assert record.status == "partial"
    assert changes(record) == [
        LS_CHOWN,
        ("modified", "/usr/sbin/sshd", ("mode",), {"mode": (0o755, 0o4755)}),
    ]
    coverage = last_coverage(repo)
    assert list(coverage["unreadable"]) == ["/usr/bin/login"]
    # the rest is TSK's ("Offset is too large for image: ...")
    assert coverage["unreadable"]["/usr/bin/login"].startswith(
        f"read of inode {inode} at 0 failed: ")
    assert coverage["volumes"][0]["status"] == "scanned"
    assert file_state()["/usr/bin/login"] == base.baseline["/usr/bin/login"]

    repaired = base.copy("repaired.img")
    debugfs(repaired, "sif /usr/bin/ls uid 1000", "sif /usr/sbin/sshd mode 0104755")
    assert e2fsck_ok(repaired)
    record = scan(repaired)
    assert (record.status, record.events) == ("succeeded", [])
    assert file_state()["/usr/bin/login"] == base.baseline["/usr/bin/login"]


def test_truncated_bare_filesystem_fails_and_records_nothing(base: Base, scan: Scan,
                                                             repo: Repository,
                                                             file_state: State) -> None:
    """The scanner refuses an ext4 cut short (no volume at all is readable): the scan raises
    before anything is written, so the machine keeps its state and its one scan."""
    image = base.copy("short.img")
    os.truncate(image, 16 * 1024 * 1024)
    with pytest.raises(NoFilesystemError) as error:
        scan(image)
    assert str(error.value) == (
        f"{image.resolve()}: no readable filesystem (disk: ext4 is truncated: it spans "
        f"{32 * 1024 * 1024} bytes but only {16 * 1024 * 1024} are present)")
    assert len(repo.scans(MACHINE)) == 1
    assert file_state() == base.baseline
