"""Scanned baselines of the Linux tree, one class per filesystem builder, for the mutation
matrix (:mod:`tests.disk.test_mutations`) and the tests that reuse its baselines.

Each builds the small merged-/usr tree of :func:`tests.imaging.trees.linux_tree` into an image
(everything owned by 0:0, every timestamp pinned to ``BASE_TIME``, ``/usr/bin/tool`` carrying
the POSIX ACL ``BASE_TOOL_ACL``), scans it as the machine's baseline, and makes changed copies
of it with the filesystem's own tools:

* :class:`Base` (ext4, :func:`make_base`): debugfs (clock set to ``NEW_TIME``) or data blocks
  written directly; ``e2fsck -fn`` checks every copy.
* :class:`XfsBase` (XFS): xfs_db in place (modes, owners, timestamps with nanoseconds, xattrs);
  files are added and removed by rebuilding (xfs_db 6.1 cannot create or unlink entries) with
  the changed path last in the protofile, so every other inode keeps its number;
  ``xfs_repair -n`` checks every copy.

Both offer the same mutations (:class:`FsBase`), so one test can run on either. Expected
values come from the tests' own knowledge of the tree or from debugfs / xfs_db (inode
numbers), never from the scanner.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scanner.entities import FileEntity
from scanner.storage.repository import ScanRecord
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
from tests.imaging.trees import linux_tree
from tests.imaging.xattrs import acl_xattr
from tests.imaging.xfs import (
    build_xfs_tree,
    xfs_acl,
    xfs_inode,
    xfs_overwrite_in_place,
    xfs_remove_xattr,
    xfs_repair_ok,
    xfs_set,
    xfs_set_times,
    xfs_set_xattr,
)

NEW_TIME = 1_800_000_000            # the clock of mutations (2027-01-15)
T0 = BASE_TIME * 10**9              # scanner times are integer nanoseconds
T1 = NEW_TIME * 10**9
CAP_NET_BIND_SERVICE, CAP_NET_RAW = 10, 13
XFS_UUID = "5f1e0c2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b"
XFS_MB = 300

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

Scan = Callable[[Path], ScanRecord]  # the conftest ``scan`` fixture
State = Callable[[], dict[str, FileEntity]]  # the conftest ``file_state`` fixture
Events = list[tuple[str, str, tuple[str, ...], dict[str, Any]]]


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


class FsBase(Protocol):
    """What the mutation matrix asks of a baseline, whatever its filesystem.

    In-place changes (``set_*``, ``overwrite``, ``remove_xattr``) change an image the caller
    made with :meth:`copy`; ``with_*`` / ``without`` return a new image."""

    name: str
    image: Path
    workdir: Path

    def copy(self, name: str = "mutated.img") -> Path: ...
    def check(self, image: Path) -> None: ...
    def record(self, image: Path) -> ScanRecord: ...
    def rescan(self, image: Path) -> Events: ...
    def inode(self, image: Path, path: str) -> int: ...
    def inode_fields(self, image: Path, path: str) -> dict[str, int]: ...
    def ns(self, nanoseconds: int) -> int: ...
    def overwrite(self, image: Path, path: str, data: bytes) -> None: ...
    def set_mode(self, image: Path, path: str, mode: int) -> None: ...
    def set_owner(self, image: Path, path: str, *, uid: int | None = None,
                  gid: int | None = None) -> None: ...
    def set_times(self, image: Path, path: str, seconds: int, nanoseconds: int,
                  fields: Iterable[str]) -> None: ...
    def set_xattr(self, image: Path, path: str, name: str, value: bytes) -> None: ...
    def set_acl(self, image: Path, path: str, text: str) -> None: ...
    def remove_xattr(self, image: Path, path: str, name: str) -> None: ...
    def with_file(self, path: str, data: bytes, *, mode: int, gid: int) -> Path: ...
    def with_hard_link(self, existing: str, link: str) -> Path: ...
    def without(self, path: str) -> Path: ...


# -- ext4 ----------------------------------------------------------------------------------------

class _Scanned:
    """What both baselines do alike: copies of the baseline image, the next scan."""

    image: Path
    workdir: Path
    scan: Scan

    def copy(self, name: str = "mutated.img") -> Path:
        return copy_image(self.image, self.workdir / name)

    def record(self, image: Path) -> ScanRecord:
        """The next (non-baseline, fully readable) scan of the machine, from ``image``."""
        record = self.scan(image)
        assert not record.baseline
        assert record.status == "succeeded", record
        return record

    def rescan(self, image: Path) -> Events:
        """The events of the next scan, as :func:`changes` lists them."""
        return changes(self.record(image).events)


@dataclass
class Base(_Scanned):
    """A scanned baseline ext4 image and a way to make mutated copies of it."""

    image: Path
    workdir: Path
    scan: Scan
    name = "ext4"

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

    # the mutations of FsBase
    def check(self, image: Path) -> None:
        assert e2fsck_ok(image)

    def inode(self, image: Path, path: str) -> int:
        return inode_info(image, path)["inode"]

    def inode_fields(self, image: Path, path: str) -> dict[str, int]:
        return inode_info(image, path)

    def ns(self, nanoseconds: int) -> int:
        """The nanoseconds a time set here keeps: none (debugfs sets whole seconds)."""
        return 0

    def overwrite(self, image: Path, path: str, data: bytes) -> None:
        overwrite_in_place(image, path, data)

    def set_mode(self, image: Path, path: str, mode: int) -> None:
        # debugfs sif changes the field only: ctime stays (the kernel would move it)
        debugfs(image, f"sif {path} mode 0{mode:o}")

    def set_owner(self, image: Path, path: str, *, uid: int | None = None,
                  gid: int | None = None) -> None:
        debugfs(image, *([f"sif {path} uid {uid}"] if uid is not None else []),
                *([f"sif {path} gid {gid}"] if gid is not None else []))

    def set_times(self, image: Path, path: str, seconds: int, nanoseconds: int,
                  fields: Iterable[str]) -> None:
        assert nanoseconds == 0, "debugfs sets whole seconds"
        debugfs(image, *(f"sif {path} {field} @{seconds}" for field in fields))

    def set_xattr(self, image: Path, path: str, name: str, value: bytes) -> None:
        set_xattr(image, path, name, value)

    def set_acl(self, image: Path, path: str, text: str) -> None:
        set_xattr(image, path, "system.posix_acl_access", acl_xattr(text))

    def remove_xattr(self, image: Path, path: str, name: str) -> None:
        debugfs(image, f"ea_rm {path} {name}")

    def with_file(self, path: str, data: bytes, *, mode: int, gid: int) -> Path:
        return self.mutate(f"write {self.host_file(data)} {path}",
                           f"sif {path} mode 0{0o100000 | mode:o}", f"sif {path} gid {gid}")

    def with_hard_link(self, existing: str, link: str) -> Path:
        # debugfs `ln` adds the name only; the link count is raised by hand (ctime untouched)
        nlink = inode_info(self.image, existing)["links"]
        return self.mutate(f"ln {existing} {link}", f"sif {existing} links_count {nlink + 1}")

    def without(self, path: str) -> Path:
        return self.mutate(f"rm {path}")


def make_base(tmp_path: Path, scan: Scan, image: Path | None = None) -> Base:
    """Scan ``image`` (default: a fresh :func:`linux_image`) as the machine's baseline."""
    image = image or linux_image(tmp_path)
    assert e2fsck_ok(image)
    record = scan(image)
    assert record.baseline and record.events == [] and record.status == "succeeded"
    return Base(image, tmp_path, scan)


# -- XFS -----------------------------------------------------------------------------------------

def copy_tree(src: Path, dst: Path) -> Path:
    """A copy of a source tree keeping hard links, symlinks and modes (``cp -a``)."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def xfs_linux_image(workdir: Path, src: Path, name: str, *, last: tuple[str, ...] = ("usr/bin",),
                    **kwargs: Any) -> Path:
    """The XFS twin of :func:`tests.imaging.ext4.linux_image` built from ``src``: owners 0:0,
    times BASE_TIME, ``/usr/bin/tool`` (when present) with BASE_TOOL_ACL, ``/usr/bin`` last
    in the protofile (so a file added there by a rebuild leaves every other inode alone)."""
    image = build_xfs_tree(src, workdir / name, uuid=XFS_UUID, last=last, **kwargs)
    if (src / "usr/bin/tool").exists():
        xfs_set_xattr(image, "/usr/bin/tool", "system.posix_acl_access", xfs_acl(BASE_TOOL_ACL))
    assert xfs_repair_ok(image)
    return image


class XfsBase(_Scanned):
    """A scanned baseline XFS image and ways to make changed copies of it."""

    name = "xfs"

    def __init__(self, workdir: Path, scan: Scan) -> None:
        self.workdir = workdir
        self.src = linux_tree(workdir / "src")
        self.image = xfs_linux_image(workdir, self.src, "base.img")
        self.scan = scan
        record = scan(self.image)
        assert record.baseline and record.events == [] and record.status == "succeeded"

    def rebuilt(self, change: Callable[[Path], None], *, last: tuple[str, ...]) -> Path:
        """A new image from a changed copy of the source tree."""
        src = copy_tree(self.src, self.workdir / "src2")
        change(src)
        return xfs_linux_image(self.workdir, src, "rebuilt.img", last=last)

    def record(self, image: Path) -> ScanRecord:
        assert xfs_repair_ok(image)
        return super().record(image)

    # the mutations of FsBase
    def check(self, image: Path) -> None:
        assert xfs_repair_ok(image)

    def inode(self, image: Path, path: str) -> int:
        return xfs_inode(image, path)["inode"]

    def inode_fields(self, image: Path, path: str) -> dict[str, int]:
        return xfs_inode(image, path)

    def ns(self, nanoseconds: int) -> int:
        """The nanoseconds a time set here keeps: all of them."""
        return nanoseconds

    def overwrite(self, image: Path, path: str, data: bytes) -> None:
        xfs_overwrite_in_place(image, path, data)

    def set_mode(self, image: Path, path: str, mode: int) -> None:
        xfs_set(image, path, mode=mode)

    def set_owner(self, image: Path, path: str, *, uid: int | None = None,
                  gid: int | None = None) -> None:
        xfs_set(image, path, **({"uid": uid} if uid is not None else {}),
                **({"gid": gid} if gid is not None else {}))

    def set_times(self, image: Path, path: str, seconds: int, nanoseconds: int,
                  fields: Iterable[str]) -> None:
        xfs_set_times(image, [path], seconds, nanoseconds, fields=tuple(fields))

    def set_xattr(self, image: Path, path: str, name: str, value: bytes) -> None:
        xfs_set_xattr(image, path, name, value)

    def set_acl(self, image: Path, path: str, text: str) -> None:
        xfs_set_xattr(image, path, "system.posix_acl_access", xfs_acl(text))

    def remove_xattr(self, image: Path, path: str, name: str) -> None:
        xfs_remove_xattr(image, path, name)

    def with_file(self, path: str, data: bytes, *, mode: int, gid: int) -> Path:
        rel = path.lstrip("/")

        def add(src: Path) -> None:
            (src / rel).write_bytes(data)
            (src / rel).chmod(mode)

        image = self.rebuilt(add, last=(rel,))
        xfs_set(image, path, gid=gid)
        xfs_set_times(image, [path], NEW_TIME)
        return image

    def with_hard_link(self, existing: str, link: str) -> Path:
        return self.rebuilt(lambda src: os.link(src / existing.lstrip("/"),
                                                src / link.lstrip("/")),
                            last=(link.lstrip("/"),))

    def without(self, path: str) -> Path:
        parent = path.lstrip("/").rsplit("/", 1)[0]
        return self.rebuilt(lambda src: (src / path.lstrip("/")).unlink(), last=(parent,))
