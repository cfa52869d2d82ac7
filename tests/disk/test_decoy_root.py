"""Issue 9, item 4: a decoy root filesystem on an earlier partition is never taken as /.

The machine's disk is GPT with the real root on p2 (p1 unused at first). The attacker writes a
copy of the original root onto p1 and then changes the real root's /etc/crontab. Before: p1
was taken as / (the first volume with /etc), the real root ignored with a note: 0 changes.
Now / is unreadable (the previous state is kept, the scan is partial) and both candidates are
scanned as trees of their own, ``//p1/...`` and ``//p2/...``, so the change is visible and
stays tracked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.disk.fs_baselines import MONITORED, NEW_TIME, T1, file_values
from tests.imaging.ext4 import build_ext4_volume, debugfs, inode_info
from tests.imaging.partitions import gpt_disk
from tests.imaging.tools import copy_image, write_at
from tests.imaging.trees import linux_tree

ROOT_MB = 24
CRONTAB = b"* * * * * root /usr/local/bin/miner\n"


def test_decoy_root_on_an_earlier_partition(tmp_path: Path,
                                            scan: Callable[[Path], ScanRecord],
                                            repo: Repository) -> None:
    src = linux_tree(tmp_path / "src")
    clean = tmp_path / "clean.img"
    p1, p2 = gpt_disk(clean, [ROOT_MB, ROOT_MB])
    build_ext4_volume(src, clean, size_mb=ROOT_MB, offset=p2)
    first = scan(clean)
    assert first.baseline and first.status == "succeeded"

    attacked = copy_image(clean, tmp_path / "attacked.img")
    build_ext4_volume(src, attacked, size_mb=ROOT_MB, offset=p1)  # the decoy: the old root
    payload = tmp_path / "crontab"
    payload.write_bytes(CRONTAB)
    debugfs(attacked, f"set_current_time @{NEW_TIME}", "rm /etc/crontab",
            f"write {payload} /etc/crontab", offset=p2)
    record = scan(attacked)
    assert record.status == "partial"
    # nothing is removed (/ keeps its state); every path of both candidates is new and loud
    expected = sorted(("added", f"//{volume}{path}", (), {})
                      for volume in ("p1", "p2") for path in MONITORED)
    assert changes(record) == expected
    crontab = next(e for e in record.events if e.path == "//p2/etc/crontab")
    inode = inode_info(attacked, "/etc/crontab", offset=p2)["inode"]
    assert crontab.current == file_values(CRONTAB, inode=inode, mode=0o644, time=T1)
    coverage = repo.scans(MACHINE, limit=1)[0]["coverage"]
    assert coverage["unreadable"] == {
        "/": "several volumes could be / (p1, p2): none is taken as /; each is scanned "
             "under //<volume>"}
    assert coverage["notes"] == [
        "several volumes could be the root filesystem (p1, p2); each is scanned as its own "
        "tree, //p1, //p2"]
    assert [(v["volume"], v["status"], v["mountpoint"]) for v in coverage["volumes"]] == [
        ("p1", "scanned", "//p1"), ("p2", "scanned", "//p2")]

    # the next change inside the real root is a plain modification of its own path
    debugfs(attacked, f"set_current_time @{NEW_TIME + 60}", "sif /usr/bin/ls uid 1000",
            offset=p2)
    again = scan(attacked)
    assert again.status == "partial"
    assert changes(again) == [("modified", "//p2/usr/bin/ls", ("uid",), {"uid": (0, 1000)})]


def test_decoy_root_when_the_real_etc_cannot_be_listed(tmp_path: Path,
                                                       scan: Callable[[Path], ScanRecord],
                                                       repo: Repository) -> None:
    """Damaging the real root's /etc must not leave the decoy as the only candidate."""
    src = linux_tree(tmp_path / "src")
    clean = tmp_path / "clean.img"
    p1, p2 = gpt_disk(clean, [ROOT_MB, ROOT_MB])
    build_ext4_volume(src, clean, size_mb=ROOT_MB, offset=p2)
    assert scan(clean).baseline
    attacked = copy_image(clean, tmp_path / "attacked.img")
    build_ext4_volume(src, attacked, size_mb=ROOT_MB, offset=p1)
    out = debugfs(attacked, 'blocks "/etc"', offset=p2, write=False)
    block = int(next(w for w in out.split() if w.isdigit()))
    write_at(attacked, p2 + block * 1024, bytes(24))  # "." and ".." of the real /etc wiped
    record = scan(attacked)
    assert record.status == "partial"
    expected = sorted(("added", f"//{volume}{path}", (), {})
                      for volume in ("p1", "p2") for path in MONITORED
                      if volume == "p1" or not path.startswith("/etc/"))
    assert changes(record) == expected
    unreadable = repo.scans(MACHINE, limit=1)[0]["coverage"]["unreadable"]
    assert sorted(unreadable) == ["/", "//p2/etc"]
