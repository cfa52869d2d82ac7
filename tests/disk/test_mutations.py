"""The mutation matrix: one change to a real image between two scans -> exact events, on every
filesystem builder.

Each test takes a scanned baseline of the small merged-/usr tree of
:func:`tests.imaging.trees.linux_tree` (:mod:`tests.disk.fs_baselines`: every timestamp pinned
to ``BASE_TIME``), applies ONE mutation to a copy (ext4: debugfs with the clock at
``NEW_TIME`` or data blocks written directly, checked with ``e2fsck -fn``; XFS: xfs_db in
place or a rebuild with the changed path last, checked with ``xfs_repair -n``), scans it again
through the real pipeline and SQLite storage, and compares the complete event list: category,
path, fields_changed and the before/after value of every changed field. Everything not mutated
must stay silent.

Tests taking ``fs_base`` run once per filesystem (ext4, XFS); the ones taking ``base`` (ext4)
or ``xfs_base`` use what only that filesystem's tools can do (debugfs creates and unlinks
entries in place; xfs_db renames in place and keeps nanoseconds; an XFS rebuild takes names
that are not UTF-8).

Expected values come from the test's own knowledge of the tree (content, modes) or from
debugfs / xfs_db (inode numbers), never from the scanner.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.policy import make_entity
from scanner.storage.policies import add_entity, ensure_recommended, set_enabled
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import changes
from tests.disk.fs_baselines import (
    CAP_NET_BIND_SERVICE,
    CAP_NET_RAW,
    MONITORED,
    NEW_TIME,
    T0,
    T1,
    USR_BIN,
    XFS_MB,
    XFS_UUID,
    Base,
    FsBase,
    Scan,
    State,
    XfsBase,
    content,
    file_values,
    make_base,
    sha,
)
from tests.disk.test_volumes import last_coverage, vol
from tests.imaging.ext4 import (
    BASE_TOOL_ACL,
    debugfs,
    e2fsck_ok,
    inode_info,
    linux_image,
    overwrite_in_place,
    set_xattr,
)
from tests.imaging.tools import BASE_TIME, MIB
from tests.imaging.xattrs import capability_xattr
from tests.imaging.xfs import (
    xfs_acl,
    xfs_inode,
    xfs_overwrite_in_place,
    xfs_remove_xattr,
    xfs_rename_in_place,
    xfs_retarget_symlink,
    xfs_set,
    xfs_set_times,
    xfs_set_xattr,
)


@pytest.fixture
def base(tmp_path: Path, scan: Scan) -> Base:
    """The ext4 baseline."""
    return make_base(tmp_path, scan)


@pytest.fixture
def xfs_base(tmp_path: Path, scan: Scan) -> XfsBase:
    """The XFS baseline."""
    return XfsBase(tmp_path, scan)


@pytest.fixture(params=["ext4", "xfs"])
def fs_base(request: pytest.FixtureRequest, tmp_path: Path, scan: Scan) -> FsBase:
    """The baseline on each filesystem builder in turn."""
    if request.param == "ext4":
        return make_base(tmp_path, scan)
    return XfsBase(tmp_path, scan)


# == every filesystem ==========================================================================

# -- baseline and no-op ------------------------------------------------------------------------

def test_baseline_records_exactly_the_monitored_paths(fs_base: FsBase, file_state: State) -> None:
    recorded = file_state()
    assert set(recorded) == MONITORED
    login = recorded["/usr/bin/login"]
    assert login.values() == file_values(content("/usr/bin/login"),
                                         inode=fs_base.inode(fs_base.image, "/usr/bin/login"))
    assert recorded["/usr/bin/tool"].acl == BASE_TOOL_ACL
    assert recorded["/usr/bin/passwd"].mode == 0o4755
    assert recorded["/bin"].type == "symlink" and recorded["/bin"].link_target == "usr/bin"
    assert recorded["/usr/bin/gzip"].inode == recorded["/usr/bin/gunzip"].inode
    assert recorded["/usr/bin/gzip"].nlink == 2


def test_unchanged_rescan_reports_nothing(fs_base: FsBase) -> None:
    record = fs_base.record(fs_base.image)
    assert (record.baseline, record.events, record.added, record.removed, record.modified) == \
        (False, [], 0, 0, 0)
    assert record.entities == len(MONITORED)
    assert fs_base.rescan(fs_base.copy()) == []  # a byte-identical copy elsewhere: same state


# -- content -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "old", "new"), [
    ("/usr/bin/login", content("/usr/bin/login"), b"/usr/bin/LOGIN\n"),
    # 3000 bytes over three 1 KiB blocks; only the last block changes
    ("/boot/vmlinuz-6.1", bytes(range(256)) * 11 + b"\x00" * 184,
     bytes(range(256)) * 11 + b"\xcc" * 184),
])
def test_timestomped_content_change_reports_sha256_only(fs_base: FsBase, path: str, old: bytes,
                                                        new: bytes) -> None:
    image = fs_base.copy()
    before = fs_base.inode_fields(image, path)
    fs_base.overwrite(image, path, new)
    assert fs_base.inode_fields(image, path) == before  # size, mode, owners and times kept
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", path, ("sha256",), {"sha256": (sha(old), sha(new))}),
    ]


def test_hard_linked_twin_reports_the_content_change_too(fs_base: FsBase) -> None:
    image = fs_base.copy()
    fs_base.overwrite(image, "/usr/bin/gzip", b"/usr/bin/GZIP\n")
    fs_base.check(image)
    change = {"sha256": (sha(content("/usr/bin/gzip")), sha(b"/usr/bin/GZIP\n"))}
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/gunzip", ("sha256",), change),
        ("modified", "/usr/bin/gzip", ("sha256",), change),
    ]


# -- metadata ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "new_mode", "old", "new"), [
    ("/usr/bin/login", 0o100600, 0o755, 0o600),        # chmod 600
    ("/usr/bin/login", 0o104755, 0o755, 0o4755),       # setuid added
    ("/usr/bin/ls", 0o102755, 0o755, 0o2755),          # setgid added
    ("/usr/bin/passwd", 0o100755, 0o4755, 0o755),      # setuid removed
    ("/usr/sbin/sshd", 0o101755, 0o755, 0o1755),       # sticky bit
], ids=["chmod", "setuid", "setgid", "setuid-removed", "sticky"])
def test_mode_change(fs_base: FsBase, path: str, new_mode: int, old: int, new: int) -> None:
    # the mode field only: ctime stays (the kernel would move it)
    image = fs_base.copy()
    fs_base.set_mode(image, path, new_mode)
    fs_base.check(image)
    assert fs_base.rescan(image) == [("modified", path, ("mode",), {"mode": (old, new)})]


def test_chown_uid_and_gid(fs_base: FsBase) -> None:
    image = fs_base.copy()
    fs_base.set_owner(image, "/usr/bin/ls", uid=1000, gid=1001)
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/ls", ("uid", "gid"), {"uid": (0, 1000), "gid": (0, 1001)}),
    ]


def test_chown_with_kernel_like_ctime(fs_base: FsBase) -> None:
    """What a real chown leaves: owners and ctime, listed in the compared-field order (with
    nanoseconds where the filesystem's tool can set them)."""
    ns = fs_base.ns(250_000_001)
    image = fs_base.copy()
    fs_base.set_owner(image, "/usr/bin/ls", uid=1000)
    fs_base.set_times(image, "/usr/bin/ls", NEW_TIME, ns, ("ctime",))
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/ls", ("uid", "ctime"), {"uid": (0, 1000), "ctime": (T0, T1 + ns)}),
    ]


def test_timestamps_alone_are_changes(fs_base: FsBase) -> None:
    ns = fs_base.ns(999_999_999)
    image = fs_base.copy()
    fs_base.set_times(image, "/etc/crontab", NEW_TIME, ns,
                      ("mtime", "crtime", "atime"))  # atime: recorded, not compared
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/etc/crontab", ("mtime", "crtime"),
         {"mtime": (T0, T1 + ns), "crtime": (T0, T1 + ns)}),
    ]


# -- extended attributes -----------------------------------------------------------------------

@pytest.mark.parametrize(("caps", "text"), [
    ((CAP_NET_RAW,), "cap_net_raw=ep"),
    ((CAP_NET_BIND_SERVICE, CAP_NET_RAW), "cap_net_bind_service,cap_net_raw=ep"),
])
def test_capability_added(fs_base: FsBase, caps: tuple[int, ...], text: str) -> None:
    image = fs_base.copy()
    fs_base.set_xattr(image, "/usr/bin/ping", "security.capability", capability_xattr(caps))
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/ping", ("capability",), {"capability": (None, text)}),
    ]


def test_capability_changed_then_removed(fs_base: FsBase) -> None:
    image = fs_base.copy()
    fs_base.set_xattr(image, "/usr/bin/ping", "security.capability",
                      capability_xattr([CAP_NET_RAW]))
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/ping", ("capability",), {"capability": (None, "cap_net_raw=ep")}),
    ]
    fs_base.remove_xattr(image, "/usr/bin/ping", "security.capability")
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/ping", ("capability",), {"capability": ("cap_net_raw=ep", None)}),
    ]


@pytest.mark.parametrize(("path", "acl", "old"), [
    ("/usr/bin/tool", "user::rwx,user:1000:r--,group::r-x,group:50:r--,mask::r-x,other::r-x",
     BASE_TOOL_ACL),
    ("/usr/bin/ls", "user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::r-x", None),
], ids=["changed", "added"])
def test_posix_acl_set(fs_base: FsBase, path: str, acl: str, old: str | None) -> None:
    image = fs_base.copy()
    fs_base.set_acl(image, path, acl)
    fs_base.check(image)
    assert fs_base.rescan(image) == [("modified", path, ("acl",), {"acl": (old, acl)})]


def test_posix_acl_removed(fs_base: FsBase) -> None:
    image = fs_base.copy()
    fs_base.remove_xattr(image, "/usr/bin/tool", "system.posix_acl_access")
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/bin/tool", ("acl",), {"acl": (BASE_TOOL_ACL, None)}),
    ]


def test_other_xattrs_added(fs_base: FsBase) -> None:
    image = fs_base.copy()
    fs_base.set_xattr(image, "/usr/sbin/sshd", "user.origin", b"pkg sshd")
    fs_base.set_xattr(image, "/usr/sbin/sshd", "trusted.origin", b"\x00\x01")
    fs_base.check(image)
    assert fs_base.rescan(image) == [
        ("modified", "/usr/sbin/sshd", ("xattrs",),
         {"xattrs": ({}, {"user.origin": "pkg sshd", "trusted.origin": "0x0001"})}),
    ]


# -- added, removed, linked --------------------------------------------------------------------

def test_file_added(fs_base: FsBase) -> None:
    data = b"#!/bin/sh\nexec nc -l 4444\n"
    image = fs_base.with_file("/usr/bin/evil", data, mode=0o4750, gid=50)
    fs_base.check(image)
    record = fs_base.record(image)
    assert changes(record.events) == [("added", "/usr/bin/evil", (), {})]
    event = record.events[0]
    assert event.previous is None
    assert event.current == file_values(data, inode=fs_base.inode(image, "/usr/bin/evil"),
                                        mode=0o4750, gid=50, time=T1)
    assert event.policies == USR_BIN


def test_file_with_an_acl_deleted(fs_base: FsBase) -> None:
    # /usr/bin/tool: last in its directory, so an XFS rebuild without it renumbers nothing
    inode = fs_base.inode(fs_base.image, "/usr/bin/tool")
    image = fs_base.without("/usr/bin/tool")
    fs_base.check(image)
    record = fs_base.record(image)
    assert changes(record.events) == [("removed", "/usr/bin/tool", (), {})]
    event = record.events[0]
    assert event.current is None
    assert event.previous == {**file_values(content("/usr/bin/tool"), inode=inode),
                              "acl": BASE_TOOL_ACL}
    assert event.policies == USR_BIN


def test_hard_link_added(fs_base: FsBase) -> None:
    image = fs_base.with_hard_link("/usr/bin/login", "/usr/bin/login.hard")
    fs_base.check(image)
    record = fs_base.record(image)
    inode = fs_base.inode(image, "/usr/bin/login")
    assert changes(record.events) == [
        ("modified", "/usr/bin/login", ("nlink",), {"nlink": (1, 2)}),
        ("added", "/usr/bin/login.hard", (), {}),
    ]
    added = record.events[1]
    assert added.previous is None
    assert added.current == file_values(content("/usr/bin/login"), inode=inode, nlink=2)
    assert added.policies == USR_BIN


# == ext4 only (debugfs) =======================================================================

def test_capability_removed(tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    image = linux_image(tmp_path)
    set_xattr(image, "/usr/bin/ping", "security.capability", capability_xattr([CAP_NET_RAW]))
    base = make_base(tmp_path, scan, image)
    mutated = base.mutate("ea_rm /usr/bin/ping security.capability")
    assert base.rescan(mutated) == [
        ("modified", "/usr/bin/ping", ("capability",), {"capability": ("cap_net_raw=ep", None)}),
    ]



def test_symlink_retargeted(base: Base) -> None:
    # like `ln -sfn busybox sh`: a new symlink inode; debugfs reuses the freed inode number
    inode = inode_info(base.image, "/usr/bin/sh")["inode"]
    image = base.mutate("rm /usr/bin/sh", "symlink /usr/bin/sh busybox")
    assert inode_info(image, "/usr/bin/sh")["inode"] == inode
    assert base.rescan(image) == [
        ("modified", "/usr/bin/sh", ("size", "link_target", "mtime", "ctime", "crtime"),
         {"size": (4, 7), "link_target": ("dash", "busybox"), "mtime": (T0, T1),
          "ctime": (T0, T1), "crtime": (T0, T1)}),
    ]


def test_long_symlink_target(base: Base) -> None:
    """A target of 60+ bytes leaves the inode (slow symlink), read through the data block."""
    target = "/opt/vendor/toolchain/" + "x" * 60 + "/bin/dash"
    image = base.mutate("rm /usr/bin/sh", f"symlink /usr/bin/sh {target}")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/sh", ("size", "link_target", "mtime", "ctime", "crtime"),
         {"size": (4, len(target)), "link_target": ("dash", target), "mtime": (T0, T1),
          "ctime": (T0, T1), "crtime": (T0, T1)}),
    ]


def test_file_replaced_by_symlink(base: Base) -> None:
    image = base.mutate("rm /usr/bin/ls", "symlink /usr/bin/ls busybox")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/ls",
         ("type", "size", "mode", "link_target", "sha256", "mtime", "ctime", "crtime"),
         {"type": ("file", "symlink"), "size": (12, 7), "mode": (0o755, 0o777),
          "link_target": (None, "busybox"), "sha256": (sha(content("/usr/bin/ls")), None),
          "mtime": (T0, T1), "ctime": (T0, T1), "crtime": (T0, T1)}),
    ]


def test_symlink_replaced_by_file(base: Base) -> None:
    data = b"#!/bin/busybox sh\n"
    image = base.mutate("rm /usr/bin/sh", f"write {base.host_file(data)} /usr/bin/sh",
                        "sif /usr/bin/sh mode 0100755")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/sh",
         ("type", "size", "mode", "link_target", "sha256", "mtime", "ctime", "crtime"),
         {"type": ("symlink", "file"), "size": (4, len(data)), "mode": (0o777, 0o755),
          "link_target": ("dash", None), "sha256": (None, sha(data)),
          "mtime": (T0, T1), "ctime": (T0, T1), "crtime": (T0, T1)}),
    ]


def test_file_replaced_by_directory(base: Base) -> None:
    # a directory's size/times/nlink are quiet only when it was a directory before too
    image = base.mutate("rm /usr/bin/ls", "mkdir /usr/bin/ls",
                        f"write {base.host_file(b'x')} /usr/bin/ls/inner")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/ls", ("type", "size", "sha256", "mtime", "ctime", "crtime", "nlink"),
         {"type": ("file", "directory"), "size": (12, 1024),
          "sha256": (sha(content("/usr/bin/ls")), None), "mtime": (T0, T1), "ctime": (T0, T1),
          "crtime": (T0, T1), "nlink": (1, 2)}),
        ("added", "/usr/bin/ls/inner", (), {}),
    ]





def test_monitored_directory_appears(base: Base) -> None:
    """/usr/local/bin is in the policy but absent at baseline: its arrival is reported."""
    data = b"#!/bin/sh\n"
    image = base.mutate("mkdir /usr/local", "mkdir /usr/local/bin",
                        f"write {base.host_file(data)} /usr/local/bin/helper",
                        "sif /usr/local/bin/helper mode 0100755")
    record = base.record(image)
    assert changes(record.events) == [
        ("added", "/usr/local/bin", (), {}),
        ("added", "/usr/local/bin/helper", (), {}),
    ]
    directory, helper = record.events
    assert directory.current == {
        "type": "directory", "size": 1024, "mode": 0o755, "uid": 0, "gid": 0,
        "link_target": None, "sha256": None, "acl": None, "capability": None, "xattrs": {},
        "attributes": None,
        "mtime": T1, "ctime": T1, "crtime": T1, "atime": T1, "nlink": 2,
        "inode": inode_info(image, "/usr/local/bin")["inode"]}
    assert helper.current == file_values(
        data, inode=inode_info(image, "/usr/local/bin/helper")["inode"], time=T1)
    assert directory.policies == helper.policies == ("/usr/local/bin",)





def test_file_deleted(base: Base) -> None:
    inode = inode_info(base.image, "/usr/bin/ls")["inode"]
    image = base.mutate("rm /usr/bin/ls")
    record = base.record(image)
    assert changes(record.events) == [("removed", "/usr/bin/ls", (), {})]
    event = record.events[0]
    assert event.current is None
    assert event.previous == file_values(content("/usr/bin/ls"), inode=inode)
    assert event.policies == USR_BIN


def test_monitored_directory_removed(base: Base) -> None:
    image = base.mutate("rm /etc/init.d/ssh", "rmdir /etc/init.d")
    assert base.rescan(image) == [
        ("removed", "/etc/init.d", (), {}),
        ("removed", "/etc/init.d/ssh", (), {}),
    ]


def test_merged_usr_symlink_removed(base: Base, file_state: State) -> None:
    """Without /bin, only the symlink itself is reported; /usr/bin stays covered by /usr/bin
    (its entries lose the /bin policies quietly)."""
    image = base.mutate("rm /bin")
    assert base.rescan(image) == [("removed", "/bin", (), {})]
    recorded = file_state()
    assert recorded["/usr/bin/login"].policies == ("/usr/bin",)
    assert recorded["/usr/bin/passwd"].policies == ("/usr/bin",)


def test_file_renamed(base: Base) -> None:
    # a rename: new name for the same inode, old name gone (link count stays 1)
    inode = inode_info(base.image, "/usr/bin/ls")["inode"]
    image = base.mutate("ln /usr/bin/ls /usr/bin/dir", "unlink /usr/bin/ls")
    record = base.record(image)
    assert changes(record.events) == [
        ("added", "/usr/bin/dir", (), {}),
        ("removed", "/usr/bin/ls", (), {}),
    ]
    added, removed = record.events
    assert added.current == removed.previous == file_values(content("/usr/bin/ls"), inode=inode)


def test_directory_metadata_changes_are_reported_but_not_its_size_or_times(base: Base) -> None:
    image = base.mutate("sif /etc/init.d mode 040700", f"sif /etc/init.d mtime @{NEW_TIME}",
                        f"sif /etc/init.d ctime @{NEW_TIME}")
    assert base.rescan(image) == [
        ("modified", "/etc/init.d", ("mode",), {"mode": (0o755, 0o700)}),
    ]



# -- scope -------------------------------------------------------------------------------------

def test_changes_outside_the_policy_are_silent(base: Base) -> None:
    image = base.copy()
    overwrite_in_place(image, "/var/log/syslog", b"/var/log/SYSLOG\n")
    overwrite_in_place(image, "/usr/lib/libc.so.6", b"/usr/lib/LIBC.so.6\n")
    debugfs(image, f"set_current_time @{NEW_TIME}",
            f"write {base.host_file(b'secret')} /home/u/new",
            "sif /home/u/notes uid 1000",
            "sif /etc/passwd mode 0100666",          # /etc/passwd is not a *.conf
            "rm /srv/app/run.sh")
    assert e2fsck_ok(image)
    assert base.rescan(image) == []


@pytest.mark.parametrize(("path", "expected"), [
    ("/etc/sub/b.conf", []),  # /etc/*.conf matches names in /etc only
    ("/etc/a.conf", [("modified", "/etc/a.conf", ("uid",), {"uid": (0, 1000)})]),
])
def test_etc_conf_pattern_is_one_level(base: Base, path: str, expected: list[Any]) -> None:
    image = base.mutate(f"sif {path} uid 1000")
    assert base.rescan(image) == expected


def test_merged_usr_reports_once_under_the_resolved_path(base: Base) -> None:
    new = b"/usr/bin/l0gin\n"
    image = base.copy()
    overwrite_in_place(image, "/bin/login", new)  # debugfs resolves /bin -> usr/bin too
    assert e2fsck_ok(image)
    record = base.record(image)
    assert changes(record.events) == [
        ("modified", "/usr/bin/login", ("sha256",),
         {"sha256": (sha(content("/usr/bin/login")), sha(new))}),
    ]
    assert record.events[0].policies == ("/bin", "/bin/login", "/usr/bin")


def test_disabled_entities_stop_reporting(base: Base, repo: Repository,
                                         file_state: State) -> None:
    with repo.transaction() as conn:
        set_enabled(conn, "/sbin", False)
        set_enabled(conn, "/usr/sbin", False)
    image = base.copy()
    overwrite_in_place(image, "/usr/sbin/sshd", b"/usr/sbin/SSHD\n")
    debugfs(image, f"set_current_time @{NEW_TIME}", "rm /usr/sbin/useradd",
            f"write {base.host_file(b'x')} /usr/sbin/new")
    assert e2fsck_ok(image)
    record = base.record(image)
    assert (record.events, record.added, record.removed, record.modified) == ([], 0, 0, 0)
    gone = {"/sbin", "/usr/sbin", "/usr/sbin/sshd", "/usr/sbin/useradd"}
    assert record.entities == len(MONITORED - gone)
    assert set(file_state()) == MONITORED - gone  # dropped quietly, not kept as stale state

    # enabled again: the paths come back as new coverage, not as an "added" flood
    with repo.transaction() as conn:
        set_enabled(conn, "/sbin", True)
        set_enabled(conn, "/usr/sbin", True)
    record = base.record(image)
    assert record.events == []
    assert set(file_state()) == MONITORED - {"/usr/sbin/useradd"} | {"/usr/sbin/new"}


def test_one_of_two_covering_entities_disabled_still_reports(base: Base,
                                                            repo: Repository) -> None:
    with repo.transaction() as conn:
        set_enabled(conn, "/usr/sbin", False)
    image = base.mutate("sif /usr/sbin/sshd uid 1000")
    record = base.record(image)
    assert changes(record.events) == [
        ("modified", "/usr/sbin/sshd", ("uid",), {"uid": (0, 1000)}),
    ]
    assert record.events[0].policies == ("/sbin",)


# -- custom entity with depth and excludes -----------------------------------------------------

@pytest.fixture
def app_base(tmp_path: Path, repo: Repository, scan: Callable[[Path], ScanRecord],
             file_state: State) -> Base:
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/srv/app", depth=1, excludes=("/srv/app/cache",)))
    base = make_base(tmp_path, scan)
    srv = {p for p in file_state() if p.startswith("/srv")}
    assert srv == {"/srv/app", "/srv/app/run.sh", "/srv/app/lib"}
    return base


@pytest.mark.parametrize(("commands", "expected"), [
    (["sif /srv/app/lib/deep.py uid 1000"], []),                       # depth 2
    (["rm /srv/app/lib/deep.py"], []),
    (["write {payload} /srv/app/lib/new.py"], []),
    (["sif /srv/app/cache/c.bin uid 1000"], []),                       # excluded
    (["write {payload} /srv/app/cache/new.bin"], []),
    (["sif /srv/app/run.sh uid 1000"],                                 # depth 1
     [("modified", "/srv/app/run.sh", ("uid",), {"uid": (0, 1000)})]),
    (["sif /srv/app/lib mode 040750"],                                 # a depth-1 directory
     [("modified", "/srv/app/lib", ("mode",), {"mode": (0o755, 0o750)})]),
    (["write {payload} /srv/app/new.sh"], [("added", "/srv/app/new.sh", (), {})]),
], ids=["deep-chown", "deep-rm", "deep-add", "excluded-chown", "excluded-add", "depth1-chown",
        "depth1-dir", "depth1-add"])
def test_custom_entity_depth_and_excludes(app_base: Base, commands: list[str],
                                          expected: list[Any]) -> None:
    payload = app_base.host_file(b"payload\n")
    image = app_base.mutate(*(c.format(payload=payload) for c in commands))
    record = app_base.record(image)
    assert changes(record.events) == expected
    assert all(e.policies == ("/srv/app",) for e in record.events)


# == XFS only (xfs_db, rebuilds) ===============================================================

def test_xfs_baseline_coverage_and_values(xfs_base: XfsBase, repo: Repository,
                                          file_state: State) -> None:
    coverage = last_coverage(repo)
    assert coverage["partition_table"] == "none"
    assert coverage["volumes"] == [
        vol("disk", 0, XFS_MB * MIB, "whole disk", "xfs", mountpoint="/", uuid=XFS_UUID)]
    assert (coverage["notes"], coverage["unreadable"]) == ([], {})

    recorded = file_state()
    assert recorded["/boot/vmlinuz-6.1"].values() == file_values(
        bytes(range(256)) * 11 + b"\x00" * 184, mode=0o600,
        inode=xfs_inode(xfs_base.image, "/boot/vmlinuz-6.1")["inode"])
    assert recorded["/bin"].size == len("usr/bin")
    gzip, gunzip = recorded["/usr/bin/gzip"], recorded["/usr/bin/gunzip"]
    assert gzip.inode == gunzip.inode == xfs_inode(xfs_base.image, "/usr/bin/gzip")["inode"]
    assert gzip.nlink == gunzip.nlink == 2
    usr_bin = xfs_inode(xfs_base.image, "/usr/bin")
    assert recorded["/usr/bin"].values() == {
        "type": "directory", "size": usr_bin["size"], "mode": 0o755, "uid": 0, "gid": 0,
        "link_target": None, "sha256": None, "acl": None, "capability": None, "xattrs": {},
        "attributes": None,
        "mtime": T0, "ctime": T0, "crtime": T0, "atime": T0, "nlink": 2,
        "inode": usr_bin["inode"]}
    assert usr_bin["size"] > 0  # the short-form directory's byte count, not libfsxfs's 0


def test_xfs_timestamps_are_compared_to_the_nanosecond(xfs_base: XfsBase) -> None:
    image = xfs_base.copy()
    xfs_set_times(image, ["/etc/a.conf"], BASE_TIME, 1, fields=("mtime",))
    assert xfs_base.rescan(image) == [
        ("modified", "/etc/a.conf", ("mtime",), {"mtime": (T0, T0 + 1)}),
    ]


def test_xfs_default_acl_and_acl_removed(xfs_base: XfsBase) -> None:
    image = xfs_base.copy()
    xfs_set_xattr(image, "/etc/init.d", "system.posix_acl_default",
                  xfs_acl("user::rwx,group::r-x,other::---"))
    xfs_remove_xattr(image, "/usr/bin/tool", "system.posix_acl_access")
    assert xfs_base.rescan(image) == [
        ("modified", "/etc/init.d", ("acl",),
         {"acl": (None, "default:user::rwx,default:group::r-x,default:other::---")}),
        ("modified", "/usr/bin/tool", ("acl",), {"acl": (BASE_TOOL_ACL, None)}),
    ]


def test_xfs_symlink_retargeted_in_place(xfs_base: XfsBase) -> None:
    image = xfs_base.copy()
    xfs_retarget_symlink(image, "/usr/bin/sh", "busybox")
    assert xfs_base.rescan(image) == [
        ("modified", "/usr/bin/sh", ("size", "link_target"),
         {"size": (4, 7), "link_target": ("dash", "busybox")}),
    ]


def test_xfs_file_renamed_in_place(xfs_base: XfsBase) -> None:
    inode = xfs_inode(xfs_base.image, "/usr/bin/ls")["inode"]
    image = xfs_base.copy()
    xfs_rename_in_place(image, "/usr/bin/ls", "sl")
    record = xfs_base.record(image)
    assert changes(record.events) == [
        ("removed", "/usr/bin/ls", (), {}),
        ("added", "/usr/bin/sl", (), {}),
    ]
    removed, added = record.events
    assert added.current == removed.previous == file_values(content("/usr/bin/ls"), inode=inode)


LONG_TARGET = b"/opt/" + b"\xfe" * 10 + b"y" * 400


def test_xfs_file_replaced_by_symlink_by_rebuild(xfs_base: XfsBase) -> None:
    def replace(src: Path) -> None:
        (src / "usr/bin/tool").unlink()
        os.symlink("busybox", src / "usr/bin/tool")

    image = xfs_base.rebuilt(replace, last=("usr/bin",))
    xfs_set_times(image, ["/usr/bin/tool"], NEW_TIME)
    assert xfs_base.rescan(image) == [
        ("modified", "/usr/bin/tool",
         ("type", "size", "mode", "link_target", "sha256", "acl", "mtime", "ctime", "crtime"),
         {"type": ("file", "symlink"), "size": (14, 7), "mode": (0o755, 0o777),
          "link_target": (None, "busybox"), "sha256": (sha(content("/usr/bin/tool")), None),
          "acl": (BASE_TOOL_ACL, None), "mtime": (T0, T1), "ctime": (T0, T1),
          "crtime": (T0, T1)}),
    ]


def test_xfs_changes_outside_the_policy_are_silent(xfs_base: XfsBase) -> None:
    image = xfs_base.copy()
    xfs_overwrite_in_place(image, "/var/log/syslog", b"/var/log/SYSLOG\n")
    xfs_set(image, "/home/u/notes", uid=1000)
    xfs_set(image, "/etc/passwd", mode=0o100666)  # not a *.conf
    xfs_set(image, "/etc/sub/b.conf", uid=1000)   # /etc/*.conf is one level
    xfs_set_xattr(image, "/srv/app/run.sh", "security.capability",
                  capability_xattr([CAP_NET_RAW]))
    assert xfs_base.rescan(image) == []


def test_xfs_names_and_targets_that_are_not_utf8(xfs_base: XfsBase) -> None:
    """libfsxfs refuses such names; the raw bytes come from the directory entries (short-form
    and block directories) and the symlink inode, escaped as on every other filesystem."""
    bad = os.fsdecode(b"ev\xffil")

    def add(src: Path) -> None:
        (src / "usr/bin" / bad).write_bytes(b"x\n")
        (src / "usr/bin" / bad).chmod(0o755)
        os.symlink(os.fsdecode(b"/opt/\xfe"), src / "usr/bin/zz-link")
        os.symlink(os.fsdecode(LONG_TARGET), src / "usr/bin/zz-long")  # in a block of its own
        many = src / "usr/bin/zz-many"
        many.mkdir()
        for n in range(200):  # a block-format directory
            (many / f"file-{n:03d}").write_bytes(b"")
        (many / os.fsdecode(b"bad\xc3name")).write_bytes(b"")

    image = xfs_base.rebuilt(add, last=(f"usr/bin/{bad}", "usr/bin/zz-link", "usr/bin/zz-long",
                                    "usr/bin/zz-many"))
    assert xfs_inode(image, "/usr/bin/zz-many")["format"] == 2  # extents, not short-form
    assert xfs_inode(image, "/usr/bin/zz-long")["format"] == 2
    record = xfs_base.record(image)
    events = changes(record.events)
    assert [e[:2] for e in events if e[0] == "added"] == [
        ("added", "/usr/bin/ev\\xffil"),
        ("added", "/usr/bin/zz-link"),
        ("added", "/usr/bin/zz-long"),
        ("added", "/usr/bin/zz-many"),
        *[("added", f"/usr/bin/zz-many/{name}") for name in sorted(
            ["bad\\xc3name"] + [f"file-{n:03d}" for n in range(200)])],
    ]
    assert len(events) == 205
    targets = {e.path: e.current["link_target"] for e in record.events
               if e.current is not None and e.current["type"] == "symlink"}
    assert targets == {"/usr/bin/zz-link": "/opt/\\xfe",
                       "/usr/bin/zz-long": "/opt/" + "\\xfe" * 10 + "y" * 400}
