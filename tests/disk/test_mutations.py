"""The ext4 mutation matrix: one change to a real image between two scans -> exact events.

Each test builds the small merged-/usr tree of :func:`tests.imaging.trees.linux_tree` into an ext4
image (every timestamp pinned to ``BASE_TIME``), scans it as the baseline, applies ONE
mutation to a copy with debugfs (clock set to ``NEW_TIME``) or by writing data blocks
directly, checks the copy with ``e2fsck -fn``, scans it again through the real pipeline and
SQLite storage, and compares the complete event list: category, path, fields_changed and the
before/after value of every changed field. Everything not mutated must stay silent.

Expected values come from the test's own knowledge of the tree (content, modes) or from
debugfs (inode numbers), never from the scanner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scanner.entities import FileEntity
from scanner.policy import make_entity
from scanner.storage.policies import add_entity, ensure_recommended, set_enabled
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import changes
from tests.imaging.ext4 import (
    BASE_TOOL_ACL,
    debugfs,
    e2fsck_ok,
    inode_info,
    linux_image,
    overwrite_in_place,
    set_xattr,
)
from tests.imaging.tools import BASE_TIME, copy_image
from tests.imaging.xattrs import acl_xattr, capability_xattr

NEW_TIME = 1_800_000_000            # debugfs clock during mutations (2027-01-15)
T0 = BASE_TIME * 10**9              # scanner times are integer nanoseconds
T1 = NEW_TIME * 10**9
CAP_NET_BIND_SERVICE, CAP_NET_RAW = 10, 13

# What the recommended policy covers in the linux_tree image, and nothing else.
MONITORED = {
    "/bin", "/sbin",
    "/boot", "/boot/grub", "/boot/grub/grub.cfg", "/boot/vmlinuz-6.1",
    "/etc/a.conf", "/etc/ld.so.conf", "/etc/crontab",
    "/etc/cron.daily", "/etc/cron.daily/logrotate", "/etc/init.d", "/etc/init.d/ssh",
    "/usr/bin", "/usr/bin/dash", "/usr/bin/gunzip", "/usr/bin/gzip", "/usr/bin/login",
    "/usr/bin/ls", "/usr/bin/passwd", "/usr/bin/ping", "/usr/bin/sh", "/usr/bin/tool",
    "/usr/sbin", "/usr/sbin/sshd", "/usr/sbin/useradd",
}
USR_BIN = ("/bin", "/usr/bin")

State = Callable[[], dict[str, FileEntity]]  # the conftest ``file_state`` fixture


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content(path: str) -> bytes:
    """Base content of a regular file of linux_tree (all but /boot/vmlinuz-6.1)."""
    return f"{path}\n".encode()




def file_values(data: bytes, *, inode: int, mode: int = 0o755, nlink: int = 1,
                time: int = T0, uid: int = 0, gid: int = 0) -> dict[str, Any]:
    """The full recorded values of a regular file without xattrs."""
    return {"type": "file", "size": len(data), "mode": mode, "uid": uid, "gid": gid,
            "link_target": None, "sha256": sha(data), "acl": None, "capability": None,
            "xattrs": {}, "attributes": None, "mtime": time, "ctime": time, "crtime": time,
            "inode": inode,
            "nlink": nlink, "atime": time}


@dataclass
class Base:
    """A scanned baseline image and a way to make mutated copies of it."""

    image: Path
    workdir: Path
    scan: Callable[[Path], ScanRecord]

    def copy(self, name: str = "mutated.img") -> Path:
        return copy_image(self.image, self.workdir / name)

    def mutate(self, *commands: str) -> Path:
        """A copy changed by one debugfs session whose clock reads NEW_TIME; fsck-checked."""
        target = self.copy()
        debugfs(target, f"set_current_time @{NEW_TIME}", *commands)
        assert e2fsck_ok(target)
        return target

    def host_file(self, data: bytes, name: str = "payload") -> Path:
        """A host file for debugfs ``write``."""
        path = self.workdir / name
        path.write_bytes(data)
        return path

    def record(self, image: Path) -> ScanRecord:
        """The next (non-baseline, fully readable) scan of the machine, from ``image``."""
        record = self.scan(image)
        assert not record.baseline
        assert record.status == "succeeded", record
        return record

    def rescan(self, image: Path) -> list[tuple[str, str, tuple[str, ...], dict[str, Any]]]:
        """The events of the next scan, as :func:`changes` lists them."""
        return changes(self.record(image).events)


def make_base(tmp_path: Path, scan: Callable[[Path], ScanRecord],
              image: Path | None = None) -> Base:
    """Scan ``image`` (default: a fresh :func:`linux_image`) as the machine's baseline."""
    image = image or linux_image(tmp_path)
    assert e2fsck_ok(image)
    record = scan(image)
    assert record.baseline and record.events == [] and record.status == "succeeded"
    return Base(image, tmp_path, scan)


@pytest.fixture
def base(tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> Base:
    return make_base(tmp_path, scan)


# -- baseline and no-op ------------------------------------------------------------------------

def test_baseline_records_exactly_the_monitored_paths(base: Base, file_state: State) -> None:
    recorded = file_state()
    assert set(recorded) == MONITORED
    login = recorded["/usr/bin/login"]
    assert login.values() == file_values(content("/usr/bin/login"),
                                         inode=inode_info(base.image, "/usr/bin/login")["inode"])
    assert recorded["/usr/bin/tool"].acl == BASE_TOOL_ACL
    assert recorded["/usr/bin/passwd"].mode == 0o4755
    assert recorded["/bin"].type == "symlink" and recorded["/bin"].link_target == "usr/bin"
    assert recorded["/usr/bin/gzip"].inode == recorded["/usr/bin/gunzip"].inode
    assert recorded["/usr/bin/gzip"].nlink == 2


def test_unchanged_rescan_reports_nothing(base: Base) -> None:
    record = base.scan(base.image)
    assert (record.baseline, record.events, record.added, record.removed, record.modified) == \
        (False, [], 0, 0, 0)
    assert record.entities == len(MONITORED)
    assert base.rescan(base.copy()) == []  # a byte-identical copy elsewhere: same state


# -- content -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "old", "new"), [
    ("/usr/bin/login", content("/usr/bin/login"), b"/usr/bin/LOGIN\n"),
    # 3000 bytes over three 1 KiB blocks; only the last block changes
    ("/boot/vmlinuz-6.1", bytes(range(256)) * 11 + b"\x00" * 184,
     bytes(range(256)) * 11 + b"\xcc" * 184),
])
def test_timestomped_content_change_reports_sha256_only(base: Base, path: str, old: bytes,
                                                        new: bytes) -> None:
    image = base.copy()
    before = inode_info(image, path)
    overwrite_in_place(image, path, new)
    assert inode_info(image, path) == before  # size, mode, owners and all four times kept
    assert e2fsck_ok(image)
    assert base.rescan(image) == [
        ("modified", path, ("sha256",), {"sha256": (sha(old), sha(new))}),
    ]


def test_hard_linked_twin_reports_the_content_change_too(base: Base) -> None:
    image = base.copy()
    overwrite_in_place(image, "/usr/bin/gzip", b"/usr/bin/GZIP\n")
    assert e2fsck_ok(image)
    change = {"sha256": (sha(content("/usr/bin/gzip")), sha(b"/usr/bin/GZIP\n"))}
    assert base.rescan(image) == [
        ("modified", "/usr/bin/gunzip", ("sha256",), change),
        ("modified", "/usr/bin/gzip", ("sha256",), change),
    ]


# -- metadata ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "new_mode", "old", "new"), [
    ("/usr/bin/login", "0100600", 0o755, 0o600),        # chmod 600
    ("/usr/bin/login", "0104755", 0o755, 0o4755),       # setuid added
    ("/usr/bin/ls", "0102755", 0o755, 0o2755),          # setgid added
    ("/usr/bin/passwd", "0100755", 0o4755, 0o755),      # setuid removed
    ("/usr/sbin/sshd", "0101755", 0o755, 0o1755),       # sticky bit
], ids=["chmod", "setuid", "setgid", "setuid-removed", "sticky"])
def test_mode_change(base: Base, path: str, new_mode: str, old: int, new: int) -> None:
    # debugfs sif changes the field only: ctime stays (the kernel would move it)
    image = base.mutate(f"sif {path} mode {new_mode}")
    assert base.rescan(image) == [("modified", path, ("mode",), {"mode": (old, new)})]


def test_chown_uid_and_gid(base: Base) -> None:
    image = base.mutate("sif /usr/bin/ls uid 1000", "sif /usr/bin/ls gid 1001")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/ls", ("uid", "gid"), {"uid": (0, 1000), "gid": (0, 1001)}),
    ]


def test_chown_with_kernel_like_ctime(base: Base) -> None:
    """What a real chown leaves: owners and ctime, listed in the compared-field order."""
    image = base.mutate("sif /usr/bin/ls uid 1000", f"sif /usr/bin/ls ctime @{NEW_TIME}")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/ls", ("uid", "ctime"), {"uid": (0, 1000), "ctime": (T0, T1)}),
    ]


def test_timestamps_alone_are_changes(base: Base) -> None:
    image = base.mutate(f"sif /etc/crontab mtime @{NEW_TIME}",
                        f"sif /etc/crontab crtime @{NEW_TIME}",
                        f"sif /etc/crontab atime @{NEW_TIME}")  # atime: recorded, not compared
    assert base.rescan(image) == [
        ("modified", "/etc/crontab", ("mtime", "crtime"), {"mtime": (T0, T1), "crtime": (T0, T1)}),
    ]


# -- extended attributes -----------------------------------------------------------------------

@pytest.mark.parametrize(("caps", "text"), [
    ((CAP_NET_RAW,), "cap_net_raw=ep"),
    ((CAP_NET_BIND_SERVICE, CAP_NET_RAW), "cap_net_bind_service,cap_net_raw=ep"),
])
def test_capability_added(base: Base, caps: tuple[int, ...], text: str) -> None:
    image = base.copy()
    set_xattr(image, "/usr/bin/ping", "security.capability", capability_xattr(caps))
    assert e2fsck_ok(image)
    assert base.rescan(image) == [
        ("modified", "/usr/bin/ping", ("capability",), {"capability": (None, text)}),
    ]


def test_capability_removed(tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    image = linux_image(tmp_path)
    set_xattr(image, "/usr/bin/ping", "security.capability", capability_xattr([CAP_NET_RAW]))
    base = make_base(tmp_path, scan, image)
    mutated = base.mutate("ea_rm /usr/bin/ping security.capability")
    assert base.rescan(mutated) == [
        ("modified", "/usr/bin/ping", ("capability",), {"capability": ("cap_net_raw=ep", None)}),
    ]


@pytest.mark.parametrize(("path", "acl", "old", "new"), [
    ("/usr/bin/tool", "user::rwx,user:1000:r--,group::r-x,group:50:r--,mask::r-x,other::r-x",
     BASE_TOOL_ACL, "user::rwx,user:1000:r--,group::r-x,group:50:r--,mask::r-x,other::r-x"),
    ("/usr/bin/ls", "user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::r-x",
     None, "user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::r-x"),
], ids=["changed", "added"])
def test_posix_acl_set(base: Base, path: str, acl: str, old: str | None, new: str) -> None:
    image = base.copy()
    set_xattr(image, path, "system.posix_acl_access", acl_xattr(acl))
    assert e2fsck_ok(image)
    assert base.rescan(image) == [("modified", path, ("acl",), {"acl": (old, new)})]


def test_posix_acl_removed(base: Base) -> None:
    image = base.mutate("ea_rm /usr/bin/tool system.posix_acl_access")
    assert base.rescan(image) == [
        ("modified", "/usr/bin/tool", ("acl",), {"acl": (BASE_TOOL_ACL, None)}),
    ]


def test_other_xattr_added(base: Base) -> None:
    image = base.mutate('ea_set /usr/sbin/sshd user.origin "pkg sshd"')
    assert base.rescan(image) == [
        ("modified", "/usr/sbin/sshd", ("xattrs",), {"xattrs": ({}, {"user.origin": "pkg sshd"})}),
    ]


# -- links and types ---------------------------------------------------------------------------

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


def test_hard_link_added(base: Base) -> None:
    # debugfs `ln` adds the name only; the link count is raised by hand (ctime untouched)
    image = base.mutate("ln /usr/bin/login /usr/bin/login.hard",
                        "sif /usr/bin/login links_count 2")
    record = base.record(image)
    inode = inode_info(image, "/usr/bin/login")["inode"]
    assert changes(record.events) == [
        ("modified", "/usr/bin/login", ("nlink",), {"nlink": (1, 2)}),
        ("added", "/usr/bin/login.hard", (), {}),
    ]
    added = record.events[1]
    assert added.previous is None
    assert added.current == file_values(content("/usr/bin/login"), inode=inode, nlink=2)
    assert added.policies == USR_BIN


# -- added, removed, renamed -------------------------------------------------------------------

def test_file_added(base: Base) -> None:
    data = b"#!/bin/sh\nexec nc -l 4444\n"
    image = base.mutate(f"write {base.host_file(data)} /usr/bin/evil",
                        "sif /usr/bin/evil mode 0104750", "sif /usr/bin/evil gid 50")
    record = base.record(image)
    assert changes(record.events) == [("added", "/usr/bin/evil", (), {})]
    event = record.events[0]
    assert event.previous is None
    assert event.current == file_values(data, inode=inode_info(image, "/usr/bin/evil")["inode"],
                                        mode=0o4750, gid=50, time=T1)
    assert event.policies == USR_BIN


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
