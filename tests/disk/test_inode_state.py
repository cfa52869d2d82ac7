"""What an inode holds reaches every path of it, whatever bytes an attacker put there.

Hard links (issue 16, item 1): each name of an inode carries the inode's full state (xattrs,
ACL, capability, hash) on ext4 and XFS. Hostile attributes and link targets (issue 9, items 2,
3 and 9): xattr names and symlink targets are bytes, escaped with the one rule of
:func:`scanner.paths.decode_name` (a byte that is not UTF-8, or a control character, is
``\\xNN``; a backslash ``\\\\``); one bad attribute, or attributes past the bound, never hide
the rest of the file's state; a symlink that claims a huge size is a coverage entry, never a
big allocation.

Images are built on the fly (:mod:`tests.imaging`); expected values come from the tests' own
knowledge of the trees, never from the scanner.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.errors import CorruptFilesystem
from scanner.limits import Limits
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.sources.memory import MemorySource
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.disk.fs_baselines import (
    CAP_NET_RAW,
    NEW_TIME,
    T0,
    T1,
    XfsBase,
    content,
    make_base,
    sha,
)
from tests.disk.test_volumes import last_coverage
from tests.imaging.ext4 import (
    build_ext4,
    debugfs,
    e2fsck_ok,
    linux_image,
    overwrite_in_place,
    pin_owners,
    pin_times,
    set_xattr,
)
from tests.imaging.trees import tree_paths
from tests.imaging.xattrs import acl_xattr, capability_xattr
from tests.imaging.xfs import xfs_acl, xfs_db, xfs_overwrite_in_place, xfs_set_times, xfs_set_xattr

Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, Any]]
ACL = "user::rwx,user:1000:r-x,group::r-x,mask::r-x,other::r-x"
GZIP_NEW = b"/usr/bin/GZIP\n"  # same size as the original content


def scan_with(repo: Repository, image: Path, limits: Limits) -> ScanRecord:
    with open_local(image) as source:
        return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1, limits=limits))


def twin_events(ctime: tuple[int, int] | None) -> list[tuple[str, str, tuple[str, ...],
                                                             dict[str, Any]]]:
    """The events of both names of the gzip/gunzip inode after the change below."""
    values: dict[str, Any] = {
        "sha256": (sha(content("/usr/bin/gzip")), sha(GZIP_NEW)),
        "acl": (None, ACL),
        "capability": (None, "cap_net_raw=ep"),
        "xattrs": ({}, {"user.origin": "pkg gzip"}),
    }
    fields: tuple[str, ...] = ("sha256", "acl", "capability", "xattrs")
    if ctime is not None:
        values["ctime"] = ctime
        fields += ("ctime",)
    return [("modified", path, fields, values) for path in ("/usr/bin/gunzip", "/usr/bin/gzip")]


# -- hard links (issue 16, item 1) -------------------------------------------------------------

def test_hard_linked_names_carry_the_inode_state_ext4(tmp_path: Path, scan: Scan,
                                                      file_state: State) -> None:
    """libfsext lost the attributes kept in the attribute block from the second lookup of an
    inode on: only the first name showed the capability."""
    base = make_base(tmp_path, scan)
    image = base.copy()
    set_xattr(image, "/usr/bin/gzip", "security.capability", capability_xattr([CAP_NET_RAW]))
    set_xattr(image, "/usr/bin/gzip", "system.posix_acl_access", acl_xattr(ACL))
    set_xattr(image, "/usr/bin/gzip", "user.origin", b"pkg gzip")
    debugfs(image, f"sif /usr/bin/gzip ctime @{NEW_TIME}")
    overwrite_in_place(image, "/usr/bin/gzip", GZIP_NEW)
    assert e2fsck_ok(image)
    assert base.rescan(image) == twin_events((T0, T1))
    state = file_state()
    for path in ("/usr/bin/gzip", "/usr/bin/gunzip"):
        entity = state[path]
        assert (entity.sha256, entity.acl, entity.capability, entity.xattrs) == \
            (sha(GZIP_NEW), ACL, "cap_net_raw=ep", {"user.origin": "pkg gzip"})
    assert base.rescan(image) == []  # and the state stays put


def test_hard_linked_names_carry_the_inode_state_xfs(tmp_path: Path, scan: Scan,
                                                     file_state: State) -> None:
    base = XfsBase(tmp_path, scan)
    image = base.copy()
    xfs_set_xattr(image, "/usr/bin/gzip", "security.capability", capability_xattr([CAP_NET_RAW]))
    xfs_set_xattr(image, "/usr/bin/gzip", "system.posix_acl_access", xfs_acl(ACL))
    xfs_set_xattr(image, "/usr/bin/gzip", "user.origin", b"pkg gzip")
    xfs_overwrite_in_place(image, "/usr/bin/gzip", GZIP_NEW)
    assert base.rescan(image) == twin_events(None)
    state = file_state()
    assert state["/usr/bin/gzip"].values() == state["/usr/bin/gunzip"].values()
    assert base.rescan(image) == []


# -- xattr names that are not UTF-8 (issue 9, item 2) ------------------------------------------

def _debugfs_bytes(image: Path, script: bytes) -> None:
    """debugfs with a script holding raw bytes (imaging.debugfs writes text)."""
    path = image.with_suffix(".script")
    path.write_bytes(script)
    proc = subprocess.run(["debugfs", "-w", "-f", str(path), str(image)], capture_output=True)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith(b"debugfs 1.")]
    assert proc.returncode == 0 and not errors, proc.stderr


def test_xattr_name_not_utf8_hides_nothing_ext4(tmp_path: Path, scan: Scan) -> None:
    """``user.\\xff`` used to make the whole file unreadable (partial), hiding its new content."""
    base = make_base(tmp_path, scan)
    image = base.copy()
    _debugfs_bytes(image, b'ea_set /usr/sbin/sshd user.\xff "v"\n'
                          b'ea_set /usr/sbin/sshd user.back\\slash "w"\n')
    overwrite_in_place(image, "/usr/sbin/sshd", b"/usr/sbin/SSHD\n")
    assert e2fsck_ok(image)
    assert base.rescan(image) == [
        ("modified", "/usr/sbin/sshd", ("sha256", "xattrs"),
         {"sha256": (sha(content("/usr/sbin/sshd")), sha(b"/usr/sbin/SSHD\n")),
          "xattrs": ({}, {"user.\\xff": "v", "user.back\\\\slash": "w"})}),
    ]


def test_xattr_name_not_utf8_hides_nothing_xfs(tmp_path: Path, scan: Scan) -> None:
    base = XfsBase(tmp_path, scan)
    image = base.copy()
    before = xfs_db(image, "path /usr/sbin/sshd", "print core.ctime.sec core.ctime.nsec",
                    write=False)
    proc = subprocess.run(["xfs_db", "-x", "-c", "path /usr/sbin/sshd",
                           "-c", b"attr_set -u -v 1 \xff\x1b", str(image)], capture_output=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert xfs_db(image, "path /usr/sbin/sshd", "print core.ctime.sec core.ctime.nsec",
                  write=False) != before  # xfs_db moved it; put it back like the base
    xfs_set_times(image, ["/usr/sbin/sshd"], T0 // 10**9, fields=("ctime",))
    xfs_overwrite_in_place(image, "/usr/sbin/sshd", b"/usr/sbin/SSHD\n")
    assert base.rescan(image) == [
        ("modified", "/usr/sbin/sshd", ("sha256", "xattrs"),
         {"sha256": (sha(content("/usr/sbin/sshd")), sha(b"/usr/sbin/SSHD\n")),
          "xattrs": ({}, {"user.\\xff\\x1b": "v"})}),
    ]


def test_xattr_name_not_utf8_in_an_attribute_block_xfs(tmp_path: Path, scan: Scan) -> None:
    """Past the inode, attributes live in leaf / node blocks of the attribute fork, with long
    values in remote blocks: read as bytes there too."""
    base = XfsBase(tmp_path, scan)
    image = base.copy()
    names = [f"attribute_with_a_long_name_{i:02d}".encode() for i in range(40)]
    commands = [b"path /usr/sbin/sshd"]
    commands += [b"attr_set -u -v 40 " + name for name in names]
    commands += [b"attr_set -u -v 3000 remote", b"attr_set -u -v 2 \xff"]
    args: list[str | bytes] = ["xfs_db", "-x"]
    for command in commands:
        args += ["-c", command]
    proc = subprocess.run([*args, str(image)], capture_output=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert xfs_db(image, "path /usr/sbin/sshd", "ablock 0", "print hdr.info.hdr.magic",
                  write=False).split("=")[1].strip() == "0x3ebe"  # a node above leaves
    xfs_set_times(image, ["/usr/sbin/sshd"], T0 // 10**9, fields=("ctime",))
    xfs_overwrite_in_place(image, "/usr/sbin/sshd", b"/usr/sbin/SSHD\n")
    expected = {"user." + name.decode(): "v" * 40 for name in names}
    expected |= {"user.remote": "v" * 3000, "user.\\xff": "vv"}
    assert base.rescan(image) == [
        ("modified", "/usr/sbin/sshd", ("sha256", "xattrs"),
         {"sha256": (sha(content("/usr/sbin/sshd")), sha(b"/usr/sbin/SSHD\n")),
          "xattrs": ({}, expected)}),
    ]


# -- the xattr bound (Limits.xattr_bytes) ------------------------------------------------------

def test_xattrs_past_the_bound_are_a_coverage_entry_not_a_hidden_file(
        tmp_path: Path, scan: Scan, repo: Repository, file_state: State) -> None:
    """The file's other fields are still compared; its attributes keep their previous state."""
    base = make_base(tmp_path, scan)
    image = base.copy()
    set_xattr(image, "/usr/bin/tool", "user.big", b"x" * 200)  # 208 bytes with its name
    overwrite_in_place(image, "/usr/bin/tool", b"/usr/bin/TOOL\n")
    assert e2fsck_ok(image)
    record = scan_with(repo, image, Limits(xattr_bytes=160))
    assert record.status == "partial"
    assert changes(record) == [
        ("modified", "/usr/bin/tool", ("sha256",),
         {"sha256": (sha(content("/usr/bin/tool")), sha(b"/usr/bin/TOOL\n"))}),
    ]
    unreadable = last_coverage(repo)["unreadable"]
    assert list(unreadable) == ["/usr/bin/tool"]
    assert "extended attributes" in unreadable["/usr/bin/tool"]
    assert "SNAPFIM_MAX_XATTR_BYTES" in unreadable["/usr/bin/tool"]
    tool = file_state()["/usr/bin/tool"]
    assert (tool.acl, tool.capability, tool.xattrs, tool.sha256) == \
        ("user::rwx,user:1000:r-x,group::r-x,mask::r-x,other::r-x", None, {},
         sha(b"/usr/bin/TOOL\n"))
    # read in full again: the attribute appears as a change of its own
    assert changes(scan_with(repo, image, Limits())) == [
        ("modified", "/usr/bin/tool", ("xattrs",), {"xattrs": ({}, {"user.big": "x" * 200})}),
    ]


# -- symlink targets as bytes (issue 9, items 3 and 9) -----------------------------------------

def _image_with_links(tmp_path: Path, links: dict[str, bytes]) -> Path:
    """linux_image's tree plus symlinks with raw targets, owners and times pinned."""
    image = linux_image(tmp_path)  # for its source tree in tmp_path/src
    src = tmp_path / "src"
    for path, target in links.items():
        (src / path).unlink(missing_ok=True)
        (src / path).symlink_to(target.decode("utf-8", "surrogateescape"))
    image = build_ext4(src, tmp_path / "links.img")
    set_xattr(image, "/usr/bin/tool", "system.posix_acl_access",
              acl_xattr("user::rwx,user:1000:r-x,group::r-x,mask::r-x,other::r-x"))
    paths = list(tree_paths(src))
    pin_owners(image, paths)
    pin_times(image, paths, T0 // 10**9)
    return image


def _le_word(data: bytes) -> int:
    return int.from_bytes(data, "little")


def test_control_characters_in_a_link_target_are_kept(tmp_path: Path, scan: Scan) -> None:
    """pytsk3 folds control characters into ``^``: ``\\x01`` -> ``\\x1b`` was no change."""
    image = _image_with_links(tmp_path, {"usr/bin/sh": b"/opt/\x01evil",
                                         "usr/bin/ls": b"/opt/" + b"\x02" * 70})
    base = make_base(tmp_path, scan, image)
    # i_block of a fast symlink holds the target: word 1 is "/\x01ev" -> "/\x1bev"
    mutated = base.mutate(f"sif /usr/bin/sh block[1] {_le_word(b'/' + bytes([0x1b]) + b'ev')}")
    # /usr/bin/ls is a slow symlink (its target in a data block): changed there
    overwrite_in_place(mutated, "/usr/bin/ls", b"/opt/" + b"\x02" * 69 + b"\x03")
    assert e2fsck_ok(mutated)
    assert base.rescan(mutated) == [
        ("modified", "/usr/bin/ls", ("link_target",),
         {"link_target": ("/opt/" + "\\x02" * 70, "/opt/" + "\\x02" * 69 + "\\x03")}),
        ("modified", "/usr/bin/sh", ("link_target",),
         {"link_target": ("/opt/\\x01evil", "/opt/\\x1bevil")}),
    ]


def test_symlink_claiming_a_huge_size_is_a_coverage_entry(tmp_path: Path, scan: Scan,
                                                          repo: Repository,
                                                          file_state: State) -> None:
    """A slow symlink whose inode claims 2 GB: never read, its previous state kept."""
    target = "/opt/vendor/" + "t" * 80
    image = _image_with_links(tmp_path, {"usr/bin/sh": target.encode()})
    base = make_base(tmp_path, scan, image)
    mutated = base.copy()
    debugfs(mutated, "sif /usr/bin/sh size 2147483648")
    record = base.scan(mutated)
    assert (record.status, changes(record)) == ("partial", [])
    unreadable = last_coverage(repo)["unreadable"]
    assert list(unreadable) == ["/usr/bin/sh"]
    assert "SNAPFIM_MAX_LINK_BYTES" in unreadable["/usr/bin/sh"]
    sh = file_state()["/usr/bin/sh"]
    assert (sh.size, sh.link_target) == (len(target), target)


# -- the raw ext attribute reader on corrupted bytes -------------------------------------------

def test_ext_attribute_reader_on_corrupted_inodes_and_blocks(tmp_path: Path) -> None:
    """One- and multi-byte corruptions (fixed seed) of an inode's attribute area and of its
    attribute block: a dict of bytes within the bound, or CorruptFilesystem /
    SourceReadError; never another exception."""
    import random

    from scanner.disk.ext_raw import ExtInodes
    from scanner.errors import CorruptFilesystem, SourceReadError
    from tests.imaging.ext4 import inode_info

    image = linux_image(tmp_path)
    set_xattr(image, "/usr/bin/tool", "security.capability", capability_xattr([CAP_NET_RAW]))
    set_xattr(image, "/usr/bin/tool", "user.a", b"v" * 300)  # does not fit in the inode
    inode = inode_info(image, "/usr/bin/tool")["inode"]
    pristine = image.read_bytes()
    reader = ExtInodes(MemorySource(pristine))
    names = set(reader.xattrs(inode, 1 << 20, _no_ea_inode))
    assert names == {b"system.posix_acl_access", b"security.capability", b"user.a"}
    group, index = divmod(inode - 1, reader.inodes_per_group)
    at_inode = reader._inode_table(group) + index * reader.inode_size
    block = int.from_bytes(pristine[at_inode + 104:at_inode + 108], "little")
    regions = [(at_inode + 128, reader.inode_size - 128),
               (block * reader.block_size, reader.block_size)]
    rng = random.Random(9)
    outcomes = {"read": 0, "refused": 0}
    for case in range(400):
        start, length = regions[case % 2]
        patches = {start + rng.randrange(length): rng.randrange(256)
                   for _ in range(1 if case < 200 else rng.randint(2, 8))}
        try:
            attrs = ExtInodes(_Patched(pristine, patches)).xattrs(inode, 4096, _no_ea_inode)
        except (CorruptFilesystem, SourceReadError):
            outcomes["refused"] += 1
            continue
        assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in attrs.items())
        assert sum(len(k) + len(v) for k, v in attrs.items()) <= 4096
        outcomes["read"] += 1
    assert outcomes["read"] and outcomes["refused"]


class _Patched(MemorySource):
    """The pristine image with a few bytes changed, without copying it."""

    def __init__(self, data: bytes, patches: dict[int, int]) -> None:
        super().__init__(data)
        self._patches = patches

    def read_at(self, offset: int, length: int) -> bytes:
        out = bytearray(super().read_at(offset, length))
        for at, value in self._patches.items():
            if offset <= at < offset + len(out):
                out[at - offset] = value
        return bytes(out)


def _no_ea_inode(inode: int, size: int) -> bytes:
    from scanner.errors import SourceReadError

    raise SourceReadError(f"inode {inode}: no attribute inodes in this test")


def test_xattr_value_kept_in_an_inode_of_its_own(tmp_path: Path) -> None:
    """ext4 ``ea_inode``: a value too big for the inode lives in an attribute inode."""
    from scanner.collectors.xattrs import render_xattrs
    from scanner.disk.filesystems import open_filesystem
    from scanner.disk.tsk_image import open_image
    from scanner.disk.volumes import Volume
    from tests.imaging.tools import run

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f\n")
    image = tmp_path / "ea.img"
    with image.open("wb") as fh:
        fh.truncate(32 << 20)
    run("mkfs.ext4", "-q", "-F", "-O", "ea_inode", "-d", src, "-I", "256", image)
    value = bytes(range(32, 127)) * 10 + b"x" * 74  # 1024 bytes: more than a 1 KiB block holds
    set_xattr(image, "/f", "user.big", value)
    assert "File ACL: 0" in debugfs(image, "stat /f", write=False)  # not in an attribute block
    debugfs(image, "sif /f blocks 4")  # the attribute inode's block is charged to /f (e2fsck)
    assert e2fsck_ok(image)
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        node = next(c for c in fs.children(fs.root()) if c.name == "f")
        assert fs.xattrs(node) == {b"user.big": value}
        assert render_xattrs(fs.xattrs(node))[2] == {"user.big": value.decode()}
        fs.limits = Limits(xattr_bytes=1000)
        with pytest.raises(CorruptFilesystem, match="SNAPFIM_MAX_XATTR_BYTES"):
            fs.xattrs(node)
        fs.close()
