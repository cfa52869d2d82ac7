"""Issue 9, items 1, 5 and 7: hostile directory entries on real ext4 images.

Each image is the baseline :func:`linux_image`, changed with debugfs, then patched byte by
byte where debugfs cannot go (a name holding ``/``, a name twice in one directory); the
directory block's checksum is recomputed so only the hostile content differs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import crc32c
import pytest

from scanner.disk.ext_geometry import ExtGeometry, crc
from scanner.disk.xfs_dirs import DINODE_CRC_OFFSET
from scanner.disk.xfs_fs import _Geometry
from scanner.limits import Limits
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.disk.fs_baselines import NEW_TIME, T0, T1, Base, content, file_values, make_base
from tests.imaging.ext4 import debugfs, e2fsck_ok, inode_info
from tests.imaging.tools import copy_image, run, write_at
from tests.imaging.trees import linux_tree
from tests.imaging.xfs import build_xfs_tree, xfs_inode

Scan = Callable[[Path], ScanRecord]


@pytest.fixture
def base(tmp_path: Path, scan: Scan) -> Base:
    return make_base(tmp_path, scan)


def coverage(repo: Repository) -> dict[str, object]:
    return repo.scans(MACHINE, limit=1)[0]["coverage"]  # type: ignore[no-any-return]


def _first_block(image: Path, directory: str) -> int:
    out = debugfs(image, f'blocks "{directory}"', write=False)
    return int(next(w for w in out.split() if w.isdigit()))


def rename_in_block(image: Path, directory: str, old: bytes, new: bytes) -> None:
    """Overwrite the name ``old`` in ``directory``'s first block with ``new`` (same length)
    and recompute the block's checksum, as whoever owns the disk can."""
    assert len(old) == len(new)
    data = image.read_bytes()
    geo = ExtGeometry.parse(data[1024:2048])
    block = _first_block(image, directory)
    start = block * geo.block_size
    raw = bytearray(data[start:start + geo.block_size])
    at = raw.find(old)
    assert at > 0 and raw.find(old, at + 1) == -1
    raw[at:at + len(old)] = new
    inode = inode_info(image, directory)["inode"]
    descriptor = data[geo.descriptor_offset(inode):geo.descriptor_offset(inode) + geo.desc_size]
    at_inode = geo.inode_offset(inode, descriptor)
    generation = struct.unpack_from("<I", data, at_inode + 0x64)[0]
    seed = geo.directory_seed(inode, generation)
    assert seed is not None  # mkfs.ext4's default: metadata_csum
    struct.pack_into("<I", raw, geo.block_size - 4, crc(seed, bytes(raw[:-12])))
    write_at(image, start, bytes(raw))


# -- item 1: a name holding "/" is one component; a name claimed twice is a conflict ----------

def test_entry_named_with_a_slash_cannot_stand_in_for_a_replaced_file(base: Base,
                                                                      repo: Repository) -> None:
    """/boot/grub/grub.cfg is replaced; the original inode stays reachable as an entry named
    ``grub/grub.cfg`` in /boot. Before: that entry took the real path, 0 changes."""
    evil = b"set timeout=0\nmenuentry 'x' { linux /evil init=/bin/sh }\n"
    original = inode_info(base.image, "/boot/grub/grub.cfg")["inode"]
    image = base.copy()
    debugfs(image, f"set_current_time @{NEW_TIME}",
            "ln /boot/grub/grub.cfg /boot/grubXgrub.cfg",   # the original inode, a 2nd name
            "unlink /boot/grub/grub.cfg",                   # ... its only name again
            "cd /boot/grub", f"write {base.host_file(evil)} grub.cfg",
            "sif /boot/grub/grub.cfg mode 0100644")
    assert e2fsck_ok(image)
    rename_in_block(image, "/boot", b"grubXgrub.cfg", b"grub/grub.cfg")
    record = base.scan(image)
    new = inode_info(image, "/boot/grub/grub.cfg")["inode"]
    assert record.status == "succeeded"
    old_cfg = content("/boot/grub/grub.cfg")
    assert changes(record) == [
        ("modified", "/boot/grub/grub.cfg",
         ("size", "sha256", "mtime", "ctime", "crtime", "inode"),
         {"size": (len(old_cfg), len(evil)),
          "sha256": (file_values(old_cfg, inode=0)["sha256"], file_values(evil, inode=0)["sha256"]),
          "mtime": (T0, T1), "ctime": (T0, T1), "crtime": (T0, T1), "inode": (original, new)}),
        ("added", "/boot/grub\\x2fgrub.cfg", (), {}),
    ]
    assert record.events[1].current == file_values(old_cfg, inode=original, mode=0o644)
    notes = coverage(repo)["notes"]
    assert notes == [f"/boot/grub\\x2fgrub.cfg: a directory entry whose name holds '/' or NUL "
                     f"(inode {original}), reported under its escaped name"]


def test_name_claimed_twice_in_one_directory_is_a_conflict(base: Base, repo: Repository) -> None:
    """/etc/crontab is replaced and a second entry named ``crontab`` points at the original:
    neither is taken silently; the path keeps its state and the conflict is reported."""
    original = inode_info(base.image, "/etc/crontab")["inode"]
    image = base.copy()
    payload = base.host_file(b"* * * * * root /tmp/x\n")
    debugfs(image, f"set_current_time @{NEW_TIME}",
            "ln /etc/crontab /etc/crontaX", "unlink /etc/crontab",
            f"write {payload} /etc/crontab")
    assert e2fsck_ok(image)
    rename_in_block(image, "/etc", b"crontaX", b"crontab")
    new = inode_info(image, "/etc/crontab")["inode"]
    record = base.scan(image)
    assert record.status == "partial"
    assert changes(record) == []
    assert coverage(repo)["unreadable"] == {
        "/etc/crontab": f"conflict: 2 directory entries claim this name (inodes "
                        f"{_inode_order(image, original, new)}); none of them is taken"}


def _inode_order(image: Path, original: int, new: int) -> str:
    """The two inode numbers in directory order (debugfs ``ls`` lists in block order)."""
    listing = debugfs(image, "ls -p /etc", write=False)
    order = [int(line.split("/")[1]) for line in listing.splitlines()
             if line.count("/") >= 6 and line.split("/")[5] == "crontab"]
    assert sorted(order) == sorted([original, new])
    return ", ".join(map(str, order))


# -- item 5: one corrupted byte in a directory block -------------------------------------------

def test_dot_dot_record_swallowing_the_directory_is_unreadable_not_removed(
        base: Base, repo: Repository) -> None:
    """The low byte of ``..``'s record length in /usr/bin grows it over the entries after it
    (as a deletion would, but the block's checksum says otherwise). Before: "succeeded" and
    every swallowed file removed."""
    image = base.copy()
    block = _first_block(image, "/usr/bin")
    bs = ExtGeometry.parse(image.read_bytes()[1024:2048]).block_size
    write_at(image, block * bs + 12 + 4, bytes([120]))  # ".." is the 2nd record, at 12
    record = base.scan(image)
    assert record.status == "partial"
    assert changes(record) == []
    inode = inode_info(image, "/usr/bin")["inode"]
    assert coverage(repo)["unreadable"] == {
        "/usr/bin": f"cannot list directory (inode {inode}): block 0: checksum mismatch"}


def test_directory_link_count_must_match_its_subdirectories(base: Base,
                                                            repo: Repository) -> None:
    """/etc lists fewer subdirectories than its link count says (one of them lost)."""
    image = base.copy()
    links = inode_info(image, "/etc")["links"]
    debugfs(image, f"sif /etc links_count {links + 1}")
    record = base.scan(image)
    assert record.status == "partial" and changes(record) == []
    inode = inode_info(image, "/etc")["inode"]
    assert coverage(repo)["unreadable"] == {
        "/etc": f"cannot list directory (inode {inode}) consistently: link count {links + 1} "
                f"but {links - 2} subdirectories listed (expected {links})"}


# -- item 7: a directory hard-linked into itself; bounds ---------------------------------------

@pytest.mark.timeout(60)
def test_directory_linked_into_itself_is_walked_once(base: Base, repo: Repository) -> None:
    """Before: the walk never ended (memory grew until MemoryError)."""
    image = base.copy()
    debugfs(image, f"set_current_time @{NEW_TIME}",
            "ln /etc/cron.daily /etc/cron.daily/again",
            "sif /etc/cron.daily links_count 3")  # consistent: one more subdirectory listed
    record = base.scan(image)
    inode = inode_info(image, "/etc/cron.daily")["inode"]
    assert record.status == "partial"
    assert changes(record) == [("added", "/etc/cron.daily/again", (), {})]
    assert record.events[0].current["inode"] == inode  # type: ignore[index]
    assert coverage(repo)["unreadable"] == {
        "/etc/cron.daily/again": f"directory inode {inode} was already walked as "
                                 "/etc/cron.daily (a hard-linked directory or a loop): not "
                                 "walked again"}


def _rescan(repo: Repository, image: Path, limits: Limits) -> ScanRecord:
    with open_local(image) as source:
        return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1, limits=limits))


def test_names_per_directory_bound(base: Base, repo: Repository) -> None:
    """/usr/sbin flooded with 12 names: over the bound it is unreadable, nothing is added and
    nothing removed; the root (10 names) is still listed."""
    payload = base.host_file(b"x")
    image = base.copy()
    debugfs(image, *(f"write {payload} /usr/sbin/flood{n:02d}" for n in range(12)))
    record = _rescan(repo, image, Limits(names_per_directory=10))
    assert record.status == "partial" and changes(record) == []
    assert coverage(repo)["unreadable"] == {
        "/usr/sbin": "more than 10 names in one directory (SNAPFIM_MAX_DIR_ENTRIES)"}


def test_path_depth_bound(base: Base, repo: Repository) -> None:
    record = _rescan(repo, base.image, Limits(path_depth=2))
    assert record.status == "partial" and changes(record) == []
    reason = ("entries deeper than 2 components below / are not walked "
              "(SNAPFIM_MAX_PATH_DEPTH)")
    assert coverage(repo)["unreadable"] == {
        p: reason for p in ("/boot/grub", "/etc/cron.daily", "/etc/init.d", "/usr/bin",
                            "/usr/sbin")}


# -- item 5 on XFS: a short-form directory whose entry count is cut ---------------------------

def test_xfs_short_form_directory_cut_short_is_unreadable(tmp_path: Path, scan: Scan,
                                                          repo: Repository) -> None:
    """/usr (short form, in its inode) says it holds 1 entry instead of 4, with the inode's
    CRC recomputed: libfsxfs lists /usr/bin only. Before: "succeeded", /usr/sbin and
    /usr/lib removed with everything below them."""
    image = build_xfs_tree(linux_tree(tmp_path / "src"), tmp_path / "xfs.img")
    assert scan(image).baseline
    broken = copy_image(image, tmp_path / "broken.img")
    with open(broken, "rb") as fh:
        geo = _Geometry(fh.read(512))
    inode = xfs_inode(image, "/usr")["inode"]
    at = geo.inode_offset(inode)
    raw = bytearray(broken.read_bytes()[at:at + geo.inode_size])
    literal = 176  # v3 inode core
    count = raw[literal]
    assert count == 3 and raw[5] == 1  # bin, lib, sbin; short form
    raw[literal] = 1
    raw[DINODE_CRC_OFFSET:DINODE_CRC_OFFSET + 4] = bytes(4)
    raw[DINODE_CRC_OFFSET:DINODE_CRC_OFFSET + 4] = struct.pack("<I", crc32c.crc32c(bytes(raw)))
    write_at(broken, at, bytes(raw))
    record = scan(broken)
    assert record.status == "partial" and changes(record) == []
    size = struct.unpack_from(">Q", raw, 56)[0]
    assert coverage(repo)["unreadable"] == {
        "/usr": f"cannot list directory (inode {inode}): short-form entries end at "
                f"{_first_entry_end(bytes(raw[literal:]))}, the size is {size}"}


def _first_entry_end(literal: bytes) -> int:
    """Where the first short-form entry ends (4-byte parent, ftype byte, 4-byte inode)."""
    return 6 + 3 + literal[6] + 1 + 4


def test_directory_claiming_a_huge_size_is_refused_before_it_is_read(
        base: Base, repo: Repository) -> None:
    """/usr/sbin's inode claims 4 GiB (directories keep a 32-bit size): no directory of
    1,000,000 names can be that large, so it is unreadable at once (nothing read, nothing
    removed under it)."""
    image = base.copy()
    debugfs(image, f"sif /usr/sbin size {0xFFFFF000}")
    record = _rescan(repo, image, Limits())
    assert record.status == "partial" and changes(record) == []
    [(path, reason)] = coverage(repo)["unreadable"].items()  # type: ignore[attr-defined]
    assert path == "/usr/sbin"
    assert reason.endswith(f"{0xFFFFF000} bytes, more than {1_000_000 * 264 + 1024} "
                           "(SNAPFIM_MAX_DIR_ENTRIES names)")


def test_inline_data_filesystem_directory_cut_to_nothing_is_unreadable(
        tmp_path: Path, scan: Scan, repo: Repository) -> None:
    """On an ext4 with the inline_data feature, a block directory whose size is set to 0 is
    not taken for an inline (empty) directory: only the inode's own inline flag says so.
    (A guard: pytsk3's own listing also fails on it today; the rule no longer relies on that.)"""
    root = linux_tree(tmp_path / "src")
    image = tmp_path / "inline.img"
    with image.open("wb") as fh:
        fh.truncate(32 << 20)
    run("mkfs.ext4", "-q", "-F", "-O", "inline_data", "-d", root, "-E", "root_owner=0:0",
        "-I", "256", image, "32768k")
    assert scan(image).baseline
    debugfs(image, "sif /usr/bin size 0")
    record = scan(image)
    assert record.status == "partial" and changes(record) == []
    assert list(coverage(repo)["unreadable"]) == ["/usr/bin"]  # type: ignore[call-overload]
