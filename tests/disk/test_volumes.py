"""Volumes and filesystems on real images: partition tables, root detection, fstab mounts.

Every image is built on the fly in ``tmp_path`` (sfdisk / mkfs.* / mtools / ntfscp / mkswap, or
written byte by byte for exFAT and VHD; see :mod:`tests.imaging`), nothing is mounted, and
each test scans it through the real pipeline and SQLite storage, then compares the stored
coverage report, file state and events with values the test knows independently (content it
wrote, offsets sfdisk reports, inode numbers debugfs reports).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scanner.entities import FileEntity
from scanner.errors import SourceError
from scanner.policy import make_entity
from scanner.sources.local import open_local
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.imaging.ext4 import build_ext4_volume, debugfs, e2fsck_ok, inode_info, overwrite_in_place
from tests.imaging.fat import build_exfat, build_vfat
from tests.imaging.linux_disk import (
    BOOT_MB,
    BOOT_UUID,
    GRUB_CFG,
    ROOT_MB,
    ROOT_UUID,
    VMLINUZ,
    boot_fstab,
    boot_tree,
    linux_gpt_disk,
    root_tree,
)
from tests.imaging.ntfs import build_ntfs
from tests.imaging.partitions import gpt_disk, mbr_disk
from tests.imaging.swap import build_swap
from tests.imaging.tools import BASE_TIME, MIB, copy_image, embed, write_at
from tests.imaging.trees import linux_tree
from tests.imaging.vhd import append_vhd_footer, dynamic_vhd

T0 = BASE_TIME * 10**9
Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, FileEntity]]

# What the recommended policy covers on a root filesystem built from linux_tree whose /boot
# is an (empty) mount point, and what it covers on the /boot filesystem of boot_tree.
ROOT_MONITORED = {
    "/bin", "/sbin",
    "/etc/a.conf", "/etc/ld.so.conf", "/etc/crontab",
    "/etc/cron.daily", "/etc/cron.daily/logrotate", "/etc/init.d", "/etc/init.d/ssh",
    "/usr/bin", "/usr/bin/dash", "/usr/bin/gunzip", "/usr/bin/gzip", "/usr/bin/login",
    "/usr/bin/ls", "/usr/bin/passwd", "/usr/bin/ping", "/usr/bin/sh", "/usr/bin/tool",
    "/usr/sbin", "/usr/sbin/sshd", "/usr/sbin/useradd",
}
BOOT_MONITORED = {"/boot", "/boot/grub", "/boot/grub/grub.cfg", "/boot/lost+found",
                  "/boot/vmlinuz"}
LINUX_TREE_BOOT = {"/boot", "/boot/grub", "/boot/grub/grub.cfg", "/boot/vmlinuz-6.1"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def last_coverage(repo: Repository) -> dict[str, Any]:
    """The coverage report stored with the machine's last scan."""
    return repo.scans(MACHINE, limit=1)[0]["coverage"]


def vol(volume: str, offset: int, length: int, description: str, filesystem: str | None, *,
        status: str = "scanned", reason: str | None = None, mountpoint: str | None = None,
        uuid: str | None = None, label: str | None = None) -> dict[str, Any]:
    """One volume of a coverage report, as stored."""
    return {"volume": volume, "offset": offset, "length": length, "description": description,
            "filesystem": filesystem, "status": status, "reason": reason,
            "mountpoint": mountpoint, "uuid": uuid, "label": label}




def file_values(data: bytes, *, inode: int, mode: int, time: int = T0,
                nlink: int = 1) -> dict[str, Any]:
    """Recorded values of an ext4 regular file owned by 0:0, all four times ``time``, without
    ACL, capability or other xattrs."""
    return {"type": "file", "size": len(data), "mode": mode, "uid": 0, "gid": 0,
            "link_target": None, "sha256": sha(data), "acl": None, "capability": None,
            "xattrs": {}, "attributes": None, "mtime": time, "ctime": time, "crtime": time,
            "inode": inode,
            "nlink": nlink, "atime": time}


def custom_root_policy(repo: Repository) -> None:
    """Seed the recommended policy and add a custom entity covering the whole tree (``/``)."""
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/"))


def utc_ns(text: str) -> int:
    """``2024-03-05 06:07:08`` (UTC) as integer nanoseconds since the epoch."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()) \
        * 10**9


def utc_midnight_ns(text: str) -> int:
    """The UTC midnight of a ``YYYY-MM-DD ...`` time (FAT access times are dates)."""
    return utc_ns(text[:10] + " 00:00:00")


def touch(path: Path, when: str) -> None:
    """Set a host file's mtime (and atime) to a UTC wall-clock time."""
    subprocess.run(["touch", "-d", f"{when} UTC", str(path)], check=True)


# -- 1. GPT: root + /boot mounted by ext4 UUID ---------------------------------------------------

def test_gpt_root_and_boot_partition_mounted_by_uuid(tmp_path: Path, scan: Scan,
                                                     repo: Repository, file_state: State) -> None:
    image, root_off, boot_off = linux_gpt_disk(tmp_path)
    record = scan(image)
    assert (record.baseline, record.status, record.events) == (True, "succeeded", [])

    coverage = last_coverage(repo)
    assert coverage["partition_table"] == "gpt"
    assert coverage["disk_size"] == (2 + ROOT_MB + BOOT_MB) * MIB
    assert coverage["volumes"] == [
        vol("p1", root_off, ROOT_MB * MIB, "root", "ext4", mountpoint="/", uuid=ROOT_UUID),
        vol("p2", boot_off, BOOT_MB * MIB, "boot", "ext4", mountpoint="/boot", uuid=BOOT_UUID),
    ]
    assert (coverage["notes"], coverage["unreadable"], coverage["status"]) == ([], {}, "succeeded")

    state = file_state()
    assert set(state) == ROOT_MONITORED | BOOT_MONITORED
    assert state["/boot"].inode == 2  # the root directory of p2 ...
    assert inode_info(image, "/boot", offset=root_off)["inode"] != 2  # ... not p1's mount point
    assert state["/boot/vmlinuz"].values() == file_values(
        VMLINUZ, mode=0o600, inode=inode_info(image, "/vmlinuz", offset=boot_off)["inode"])
    assert state["/boot/grub/grub.cfg"].values() == file_values(
        GRUB_CFG, mode=0o644, inode=inode_info(image, "/grub/grub.cfg", offset=boot_off)["inode"])
    assert state["/boot/vmlinuz"].policies == ("/boot",)
    assert state["/usr/bin/login"].sha256 == sha(b"/usr/bin/login\n")  # from p1

    # Change p2 in place (debugfs and e2fsck address it as disk.img?offset=N), and hide a
    # file under p1's /boot mount point, where a mounted system would not see it either.
    new_cfg = GRUB_CFG.replace(b"timeout=5", b"timeout=0")
    overwrite_in_place(image, "/grub/grub.cfg", new_cfg, offset=boot_off)
    debugfs(image, "sif /vmlinuz mode 0100644", offset=boot_off)
    hidden = tmp_path / "hidden"
    hidden.write_bytes(b"shadowed\n")
    debugfs(image, f"write {hidden} /boot/hidden", offset=root_off)
    assert e2fsck_ok(image, offset=boot_off) and e2fsck_ok(image, offset=root_off)

    record = scan(image)
    assert record.status == "succeeded"
    assert changes(record) == [
        ("modified", "/boot/grub/grub.cfg", ("sha256",), {"sha256": (sha(GRUB_CFG), sha(new_cfg))}),
        ("modified", "/boot/vmlinuz", ("mode",), {"mode": (0o600, 0o644)}),
    ]
    assert all(e.policies == ("/boot",) for e in record.events)


# -- 2. GPT: ESP (FAT16) at /boot/efi by its serial ----------------------------------------------

ESP_SERIAL = "ABCD-1234"
GRUBX64 = b"MZ" + bytes(range(256)) * 20 + b"\x90" * 98   # 5220 bytes: three 2 KiB clusters
BOOTX64 = b"MZ\x90\x00fallback"
GRUBX64_TIME = "2024-03-05 06:07:08"
BOOTX64_TIME = "2023-12-31 23:59:58"   # already 2024-01-01 in Kolkata (UTC+5:30)


@pytest.fixture(params=["UTC", "America/New_York", "Asia/Kolkata"])
def process_tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The scanning process starts in this TZ (the scanner pins TZ=UTC for TSK itself)."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_esp_vfat_mounted_at_boot_efi_by_serial(tmp_path: Path, scan: Scan, repo: Repository,
                                                file_state: State, process_tz: str) -> None:
    esp_src = tmp_path / "esp"
    for rel, data, when in (("EFI/debian/grubx64.efi", GRUBX64, GRUBX64_TIME),
                            ("EFI/BOOT/BOOTX64.EFI", BOOTX64, BOOTX64_TIME)):
        (esp_src / rel).parent.mkdir(parents=True, exist_ok=True)
        (esp_src / rel).write_bytes(data)
        touch(esp_src / rel, when)
    esp = build_vfat(esp_src, tmp_path / "esp.img", size_mb=16, volume_id=ESP_SERIAL,
                     label="EFI")
    fstab = (f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
             f"UUID={ESP_SERIAL.lower()} /boot/efi vfat umask=0077 0 1\n")  # case-insensitive
    root = root_tree(tmp_path / "root", fstab, mountpoints=("boot/efi",))
    image = tmp_path / "disk.img"
    esp_off, root_off = gpt_disk(image, [16, ROOT_MB], ["uefi", "linux"], ["EFI System", "root"])
    embed(image, esp_off, esp)
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)

    record = scan(image)
    assert record.status == "succeeded"
    assert os.environ["TZ"] == "UTC"  # pinned by the scanner, whatever the process had
    coverage = last_coverage(repo)
    assert coverage["volumes"] == [
        vol("p1", esp_off, 16 * MIB, "EFI System", "fat16", mountpoint="/boot/efi",
            uuid=ESP_SERIAL, label="EFI"),
        vol("p2", root_off, ROOT_MB * MIB, "root", "ext4", mountpoint="/", uuid=ROOT_UUID),
    ]
    assert (coverage["notes"], coverage["unreadable"]) == ([], {})

    state = file_state()
    esp_paths = {p for p in state if p.startswith("/boot/efi")}
    # no $MBR, $FAT1, $FAT2, $OrphanFiles, nor "EFI (Volume Label Entry)"
    assert esp_paths == {"/boot/efi", "/boot/efi/EFI", "/boot/efi/EFI/BOOT",
                         "/boot/efi/EFI/BOOT/BOOTX64.EFI", "/boot/efi/EFI/debian",
                         "/boot/efi/EFI/debian/grubx64.efi"}
    assert set(state) == ROOT_MONITORED | LINUX_TREE_BOOT | esp_paths
    assert state["/boot/efi"].inode == 2 and state["/boot/efi"].type == "directory"

    # FAT times: mtime 2 s resolution (mtools sets creation = modification time), access is a
    # date; no ctime. TSK synthesizes mode 0777 for files that are not read-only.
    for path, data, when in (("/boot/efi/EFI/debian/grubx64.efi", GRUBX64, GRUBX64_TIME),
                             ("/boot/efi/EFI/BOOT/BOOTX64.EFI", BOOTX64, BOOTX64_TIME)):
        values = state[path].values()
        assert values == {
            "type": "file", "size": len(data), "mode": 0o777, "uid": 0, "gid": 0,
            "link_target": None, "sha256": sha(data), "acl": None, "capability": None,
            "xattrs": {}, "attributes": None, "mtime": utc_ns(when), "ctime": None,
            "crtime": utc_ns(when),
            "inode": values["inode"], "nlink": 1, "atime": utc_midnight_ns(when)}, path
        assert state[path].policies == ("/boot",)


# -- 3. MBR: primary + extended with two logical partitions --------------------------------------

SWAP_UUID = "5a5a5a5a-0000-4000-8000-000000000001"


def test_mbr_with_root_on_a_logical_partition(tmp_path: Path, scan: Scan, repo: Repository,
                                              file_state: State) -> None:
    image = tmp_path / "disk.img"
    offsets = mbr_disk(image, 64, "label-id: 0x5eed0003\n"
                                  "start=2048, size=16MiB, type=83\n"   # 1: /boot
                                  "type=5\n"                            # 2: extended
                                  "size=8MiB, type=82\n"                # 5: swap
                                  "size=24MiB, type=83\n")              # 6: root
    assert sorted(offsets) == [1, 2, 5, 6]
    boot_tree(tmp_path / "boot")
    build_ext4_volume(tmp_path / "boot", image, size_mb=16, offset=offsets[1], uuid=BOOT_UUID)
    embed(image, offsets[5], build_swap(tmp_path / "swap.img", size_mb=8, uuid=SWAP_UUID))
    root = root_tree(tmp_path / "root", boot_fstab() + f"UUID={SWAP_UUID} none swap sw 0 0\n")
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=offsets[6], uuid=ROOT_UUID)

    record = scan(image)
    assert record.status == "succeeded"
    coverage = last_coverage(repo)
    assert coverage["partition_table"] == "mbr"
    # allocated partitions in disk order; the extended container and its tables are not
    # volumes. Labels count allocated partitions (p2, p3), they are not Linux's sda5, sda6.
    assert coverage["volumes"] == [
        vol("p1", offsets[1], 16 * MIB, "Linux (0x83)", "ext4", mountpoint="/boot",
            uuid=BOOT_UUID),
        vol("p2", offsets[5], 8 * MIB, "Linux Swap / Solaris x86 (0x82)", "swap",
            status="skipped", reason="swap: swap space, nothing to scan"),
        vol("p3", offsets[6], ROOT_MB * MIB, "Linux (0x83)", "ext4", mountpoint="/",
            uuid=ROOT_UUID),
    ]
    assert (coverage["notes"], coverage["unreadable"]) == ([], {})
    state = file_state()
    assert set(state) == ROOT_MONITORED | BOOT_MONITORED
    assert state["/boot/vmlinuz"].values() == file_values(
        VMLINUZ, mode=0o600, inode=inode_info(image, "/vmlinuz", offset=offsets[1])["inode"])
    assert state["/usr/bin/login"].values() == file_values(
        b"/usr/bin/login\n", mode=0o755,
        inode=inode_info(image, "/usr/bin/login", offset=offsets[6])["inode"])


# -- 4. no partition table: a bare ext4 filesystem -----------------------------------------------

def test_bare_ext4_is_one_whole_disk_volume(tmp_path: Path, scan: Scan, repo: Repository,
                                            file_state: State) -> None:
    image = build_ext4_volume(linux_tree(tmp_path / "src"), tmp_path / "fs.img", size_mb=32,
                              uuid=ROOT_UUID)
    record = scan(image)
    assert record.status == "succeeded"
    coverage = last_coverage(repo)
    assert coverage["partition_table"] == "none"
    assert coverage["volumes"] == [
        vol("disk", 0, 32 * MIB, "whole disk", "ext4", mountpoint="/", uuid=ROOT_UUID)]
    assert (coverage["notes"], coverage["unreadable"]) == ([], {})
    assert set(file_state()) == ROOT_MONITORED | LINUX_TREE_BOOT


# -- 5. a bare FAT filesystem without /etc -------------------------------------------------------

README = b"quarterly numbers\n"
REPORT = b"x" * 5000


def test_bare_fat_without_etc_is_scanned_as_root(tmp_path: Path, scan: Scan, repo: Repository,
                                                 file_state: State) -> None:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    for rel, data, when in (("readme.txt", README, "2024-01-02 03:04:06"),
                            ("data/report.txt", REPORT, "2024-01-02 03:04:08")):
        (src / rel).write_bytes(data)
        touch(src / rel, when)
    image = build_vfat(src, tmp_path / "fat.img", size_mb=16, volume_id="1234-ABCD", label="DATA")

    # the recommended policy finds nothing on it; the scan still succeeds
    record = scan(image)
    assert (record.baseline, record.status, record.entities) == (True, "succeeded", 0)
    coverage = last_coverage(repo)
    assert coverage["partition_table"] == "none"
    assert coverage["volumes"] == [vol("disk", 0, 16 * MIB, "whole disk", "fat16",
                                       mountpoint="/", uuid="1234-ABCD", label="DATA")]
    assert coverage["notes"] == [
        "no Linux root filesystem (no /etc) found; disk (fat16) is scanned as /"]

    # a custom "/" entity covers it all: new coverage, recorded quietly
    with repo.transaction() as conn:
        add_entity(conn, make_entity("/"))
    record = scan(image)
    assert (record.status, record.events) == ("succeeded", [])
    state = file_state()
    assert set(state) == {"/", "/data", "/data/report.txt", "/readme.txt"}  # no "DATA" label
    assert state["/readme.txt"].sha256 == sha(README)
    assert state["/data/report.txt"].sha256 == sha(REPORT)
    assert state["/data/report.txt"].mtime == utc_ns("2024-01-02 03:04:08")
    assert state["/readme.txt"].policies == ("/",)

    # the same tree rebuilt with one file's content changed (same size, same times)
    (src / "readme.txt").write_bytes(README.upper())
    touch(src / "readme.txt", "2024-01-02 03:04:06")
    image2 = build_vfat(src, tmp_path / "fat2.img", size_mb=16, volume_id="1234-ABCD",
                        label="DATA")
    record = scan(image2)
    assert changes(record) == [
        ("modified", "/readme.txt", ("sha256",), {"sha256": (sha(README), sha(README.upper()))}),
    ]


# -- 6. exFAT and NTFS ---------------------------------------------------------------------------

EXFAT_TREE: dict[str, object] = {
    "readme.txt": b"hello exfat\n",
    "big.bin": bytes(range(256)) * 40,                        # 10240 bytes, three 4 KiB clusters
    "empty": b"",
    "EFI": {"BOOT": {"BOOTX64.EFI": BOOTX64}},
    "A long name with spaces.txt": b"long\n",                 # two File Name entries
}
EXFAT_FILES = {"/readme.txt": b"hello exfat\n", "/big.bin": bytes(range(256)) * 40,
               "/empty": b"", "/EFI/BOOT/BOOTX64.EFI": BOOTX64,
               "/A long name with spaces.txt": b"long\n"}
EXFAT_PATHS = {"/", "/EFI", "/EFI/BOOT", *EXFAT_FILES}


@pytest.fixture
def exfat_state(tmp_path: Path, scan: Scan, repo: Repository,
                file_state: State) -> dict[str, FileEntity]:
    image = build_exfat(tmp_path / "exfat.img", EXFAT_TREE, size_mb=16, label="EXF")
    subprocess.run(["fsck.exfat", "-n", str(image)], check=True, capture_output=True)
    custom_root_policy(repo)
    record = scan(image)
    assert record.status == "succeeded"
    coverage = last_coverage(repo)
    serial = int.from_bytes(image.read_bytes()[0x64:0x68], "little")  # as blkid shows it
    assert coverage["volumes"] == [vol("disk", 0, 16 * MIB, "whole disk", "exfat",
                                       mountpoint="/",
                                       uuid=f"{serial >> 16:04X}-{serial & 0xFFFF:04X}")]
    assert coverage["notes"] == [
        "no Linux root filesystem (no /etc) found; disk (exfat) is scanned as /"]
    return file_state()


def test_exfat_files_are_read(exfat_state: dict[str, FileEntity]) -> None:
    assert set(exfat_state) >= EXFAT_PATHS
    for path, data in EXFAT_FILES.items():
        values = exfat_state[path].values()
        assert values == {
            "type": "file", "size": len(data), "mode": 0o777, "uid": 0, "gid": 0,
            "link_target": None, "sha256": sha(data), "acl": None, "capability": None,
            "xattrs": {}, "attributes": None, "mtime": T0, "ctime": None, "crtime": T0,
            "inode": values["inode"],
            "nlink": 1, "atime": T0}, path
    assert exfat_state["/EFI/BOOT"].type == "directory"


def test_exfat_metadata_entries_are_not_files(exfat_state: dict[str, FileEntity]) -> None:
    assert set(exfat_state) == EXFAT_PATHS


NTFS_FILES = {"hello.txt": b"hello ntfs\n", "Boot.ini": b"[boot loader]\ntimeout=30\n",
              "big.bin": bytes(range(251)) * 400}          # 100400 bytes: non-resident


def test_ntfs_root_files_without_metadata_files(tmp_path: Path, scan: Scan, repo: Repository,
                                                file_state: State) -> None:
    image = build_ntfs(tmp_path / "ntfs.img", NTFS_FILES, size_mb=16)
    serial = int.from_bytes(image.read_bytes()[0x48:0x50], "little")
    custom_root_policy(repo)
    record = scan(image)
    assert record.status == "succeeded"
    coverage = last_coverage(repo)
    assert coverage["volumes"] == [vol("disk", 0, 16 * MIB, "whole disk", "ntfs",
                                       mountpoint="/", uuid=f"{serial:016X}")]
    assert coverage["notes"] == [
        "no Windows installation (a directory holding System32\\config) on the NTFS volumes: "
        "Windows file and registry entities do not apply",
        "no Linux root filesystem (no /etc) found; disk (ntfs) is scanned as /"]
    state = file_state()
    # no $MFT, $MFTMirr, $LogFile, $Volume, $AttrDef, $Bitmap, $Boot, $BadClus, $Secure,
    # $UpCase, $Extend, $OrphanFiles
    assert set(state) == {"/", "/Boot.ini", "/big.bin", "/hello.txt"}
    for name, data in NTFS_FILES.items():
        entity = state[f"/{name}"]
        assert (entity.type, entity.size, entity.sha256, entity.uid, entity.gid) == \
            ("file", len(data), sha(data), 0, 0), name


# -- 7. VHD ---------------------------------------------------------------------------------------

def test_fixed_vhd_scans_like_the_raw_disk(tmp_path: Path, scan: Scan, repo: Repository,
                                           file_state: State) -> None:
    image, _, _ = linux_gpt_disk(tmp_path)
    raw_size = image.stat().st_size
    vhd = append_vhd_footer(copy_image(image, tmp_path / "disk.vhd"))
    assert vhd.stat().st_size == raw_size + 512
    with open_local(vhd) as source:
        assert (source.format, source.size) == ("vhd-fixed", raw_size)

    assert scan(image).status == "succeeded"
    raw_state, raw_coverage = file_state(), last_coverage(repo)
    record = scan(vhd)
    assert (record.status, record.events, record.entities) == ("succeeded", [], len(raw_state))
    assert file_state() == raw_state
    vhd_coverage = last_coverage(repo)
    assert vhd_coverage["volumes"] == raw_coverage["volumes"]
    assert vhd_coverage["disk_size"] == raw_size


def test_dynamic_vhd_is_refused(tmp_path: Path, scan: Scan, repo: Repository) -> None:
    vhd = dynamic_vhd(tmp_path / "disk.vhd", 64 * MIB)
    with pytest.raises(SourceError) as error:
        scan(vhd)
    assert str(error.value) == (f"{vhd}: dynamic/differencing VHD is not supported; "
                                "convert to a fixed VHD or raw image")
    assert repo.scans() == []


# -- 8. an unsupported second volume -------------------------------------------------------------

BTRFS_UUID = "12345678-9abc-4def-8123-456789abcdef"


def uuid_bytes(text: str) -> bytes:
    return uuid.UUID(text).bytes


def _btrfs(tmp_path: Path) -> Path:
    """The parts of a btrfs superblock snapfim looks at: magic, fsid and label (no btrfs-progs
    needed; the format is not read, only named)."""
    path = tmp_path / "btrfs.img"
    with path.open("wb") as fh:
        fh.truncate(32 * MIB)
    write_at(path, 0x10000 + 0x20, uuid_bytes(BTRFS_UUID))
    write_at(path, 0x10000 + 0x40, b"_BHRfS_M")
    write_at(path, 0x10000 + 0x12B, b"srvdata\0")
    return path


def _luks(tmp_path: Path) -> Path:
    path = tmp_path / "luks.img"
    with path.open("wb") as fh:
        fh.truncate(16 * MIB)
    write_at(path, 0, b"LUKS\xba\xbe\x00\x02" + b"\0" * 504)  # a LUKS2 header's magic
    return path


@pytest.mark.parametrize(("kind", "size_mb", "filesystem", "reason", "fstab_line",
                          "unreadable"), [
    ("btrfs", 32, "btrfs", "btrfs: filesystem not supported yet", None, {}),
    ("luks", 16, "luks", "luks: encrypted volume not supported yet", None, {}),
    ("btrfs", 32, "btrfs", "btrfs: filesystem not supported yet",
     f"UUID={BTRFS_UUID} /srv btrfs defaults 0 2",
     {"/srv": "not scanned: p2: btrfs: filesystem not supported yet"}),
    ("luks", 16, "luks", "luks: encrypted volume not supported yet",
     "/dev/mapper/srv_crypt /srv ext4 defaults 0 2",
     {"/srv": "not scanned: /dev/mapper/srv_crypt: device names cannot be matched offline"}),
], ids=["btrfs", "luks", "btrfs-in-fstab", "luks-in-fstab"])
def test_unsupported_second_volume_is_skipped(tmp_path: Path, scan: Scan, repo: Repository,
                                              file_state: State, kind: str, size_mb: int,
                                              filesystem: str, reason: str,
                                              fstab_line: str | None,
                                              unreadable: dict[str, str]) -> None:
    fstab = f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n" + (
        fstab_line + "\n" if fstab_line else "")
    root = root_tree(tmp_path / "root", fstab, mountpoints=("srv",))
    image = tmp_path / "disk.img"
    root_off, other_off = gpt_disk(image, [ROOT_MB, size_mb], names=["root", kind])
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    embed(image, other_off, _btrfs(tmp_path) if kind == "btrfs" else _luks(tmp_path))

    with repo.transaction() as conn:  # /srv is monitored: its volume matters
        ensure_recommended(conn)
        add_entity(conn, make_entity("/srv"))
    record = scan(image)
    coverage = last_coverage(repo)
    mounted = kind == "btrfs" and fstab_line is not None
    assert coverage["volumes"] == [
        vol("p1", root_off, ROOT_MB * MIB, "root", "ext4", mountpoint="/", uuid=ROOT_UUID),
        vol("p2", other_off, size_mb * MIB, kind, filesystem, status="skipped", reason=reason,
            uuid=BTRFS_UUID if kind == "btrfs" else None,
            label="srvdata" if kind == "btrfs" else None,
            mountpoint="/srv" if mounted else None),
    ]
    assert coverage["unreadable"] == unreadable
    # a skipped volume is not a failure; a mount point the scan cannot read makes it partial
    expected_status = "partial" if unreadable else "succeeded"
    assert (record.status, coverage["status"]) == (expected_status, expected_status)
    # without fstab the root's own (empty) /srv directory is what is there; with it, the
    # mount point's volume cannot be read and nothing below it is recorded
    srv = set() if fstab_line else {"/srv"}
    assert set(file_state()) == ROOT_MONITORED | LINUX_TREE_BOOT | srv


def test_unreadable_mount_point_outside_the_policy_is_only_a_note(
        tmp_path: Path, scan: Scan, repo: Repository) -> None:
    fstab = (f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
             "/dev/mapper/data_crypt /data ext4 defaults 0 2\n")
    root = root_tree(tmp_path / "root", fstab, mountpoints=("data",))
    image = tmp_path / "disk.img"
    [root_off] = gpt_disk(image, [ROOT_MB], names=["root"])
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    record = scan(image)
    coverage = last_coverage(repo)
    assert (record.status, coverage["unreadable"]) == ("succeeded", {})
    assert coverage["notes"] == ["fstab mount point /data not scanned: /dev/mapper/data_crypt: "
                                 "device names cannot be matched offline"]
