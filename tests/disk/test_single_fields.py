"""One compared field changed alone on a real ext4 image -> a modification of exactly that
field, through the whole pipeline and the set-based SQL diff.

Fields that usually move together with others (a chown moves ctime, a new inode a new
crtime) are changed here alone with debugfs, so that a field the SQL comparison forgot could
not hide behind another field of the same row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.storage.repository import ScanRecord
from tests.disk.fs_baselines import NEW_TIME, T0, T1, Base, content, make_base
from tests.imaging.ext4 import inode_info
from tests.imaging.tools import BASE_TIME


@pytest.fixture
def base(tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> Base:
    return make_base(tmp_path, scan)


@pytest.mark.parametrize(("path", "command", "field", "before", "after"), [
    ("/usr/bin/ls", "sif /usr/bin/ls gid 1001", "gid", 0, 1001),
    ("/etc/crontab", f"sif /etc/crontab ctime @{NEW_TIME}", "ctime", T0, T1),
    ("/etc/crontab", f"sif /etc/crontab crtime @{NEW_TIME}", "crtime", T0, T1),
    ("/etc/crontab", f"sif /etc/crontab mtime @{NEW_TIME}", "mtime", T0, T1),
    # a fast symlink keeps its target in the inode: "dash" -> "bash", same size
    ("/usr/bin/sh", f"sif /usr/bin/sh block[0] {int.from_bytes(b'bash', 'little'):#x}",
     "link_target", "dash", "bash"),
], ids=["gid", "ctime", "crtime", "mtime", "link_target"])
def test_one_field_alone(base: Base, path: str, command: str, field: str, before: object,
                         after: object) -> None:
    image = base.mutate(command)
    assert base.rescan(image) == [("modified", path, (field,), {field: (before, after)})]


def test_inode_alone(base: Base) -> None:
    """The same file (content, mode, owner, times) under a new inode number."""
    path = "/etc/a.conf"
    old = inode_info(base.image, path)["inode"]
    payload = base.host_file(content(path))
    payload.chmod(0o644)
    times = [f"sif /etc/a.conf.new {t} @{BASE_TIME}" for t in ("atime", "mtime", "ctime",
                                                                 "crtime")]
    image = base.mutate(f"write {payload} /etc/a.conf.new", *times, "sif /etc/a.conf.new uid 0",
                        "sif /etc/a.conf.new gid 0", f"rm {path}", f"ln /etc/a.conf.new {path}",
                        "unlink /etc/a.conf.new")
    new = inode_info(image, path)["inode"]
    assert new != old
    assert base.rescan(image) == [("modified", path, ("inode",), {"inode": (old, new)})]
