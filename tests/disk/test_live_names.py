"""Unreadable is not removed: a live directory entry whose inode or record cannot be used
is an inconsistency, not a deletion (fuzz classes D and A).

NTFS (class D): a damaged MFT record.

The directory index of ``C:\\Windows\\System32\\config`` still lists ``DEFAULT.LOG1``, but the
file's MFT record cannot be used: its update-sequence fixup no longer matches (TSK rejects
the record: the entry comes with no metadata) or its in-use flag is cleared (the record
reads as unallocated). Before: the file was dropped like a deleted one: ``removed`` in a
``succeeded`` scan. A live index entry naming a record that cannot be read is an
inconsistency, not a deletion: that path is unreadable (its state kept, the scan partial),
and the rest of the directory (the hives next to it) is read as usual.

ext4 (class A): a cleared bit in the inode bitmap makes a live, linked inode look
unallocated; TSK lists its entry as a name of a free inode and the walk dropped it as
deleted. The directory's own parse lists the record, pytsk3 gives no allocated inode for
it: the directory cannot be listed consistently (unreadable, partial, its subtree kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytsk3

from scanner.policy import make_entity
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE as LINUX_MACHINE
from tests.conftest import changes
from tests.disk.test_windows_mutations import MACHINE, scan_image
from tests.imaging.ext4 import debugfs, inode_info, linux_image
from tests.imaging.tools import copy_image, write_at
from tests.imaging.windows import base_layout, build_windows_image, system_volume_offset

LOG1 = "C:\\Windows\\System32\\config\\DEFAULT.LOG1"
RECORD = 1024
_NTFS_DATA = 128


def mft_record_offset(image: Path, volume: int, path: str) -> int:
    """Byte offset in ``image`` of the MFT record of ``path`` (``/``-separated) of the NTFS
    volume at ``volume`` (the record must lie in the first run of ``$MFT``)."""
    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(image)), offset=volume)
    inode = int(fs.open(path).info.meta.addr)
    mft = fs.open_meta(inode=0)
    attr = next(a for a in mft if int(a.info.type) == _NTFS_DATA and not a.info.name)
    first = next(iter(attr))
    assert (inode + 1) * RECORD <= int(first.len) * fs.info.block_size
    return volume + int(first.addr) * fs.info.block_size + inode * RECORD


@pytest.mark.parametrize("damage", ["fixup", "not-in-use"])
def test_index_entry_whose_record_cannot_be_read_is_unreadable(
        repo: Repository, tmp_path: Path, damage: str) -> None:
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("C:\\Windows\\System32\\config\\*.LOG1"))
    image = build_windows_image(tmp_path / "base.img", base_layout())
    first = scan_image(repo, image)
    assert first.baseline and first.status == "succeeded"
    with repo.transaction() as conn:
        before = repo.load_file_state(conn, repo.machine_id(conn, MACHINE))
    assert LOG1 in before

    bad = copy_image(image, tmp_path / "bad.img")
    record = mft_record_offset(bad, system_volume_offset("gpt"),
                               "/Windows/System32/config/DEFAULT.LOG1")
    if damage == "fixup":  # the last two bytes of the first sector no longer match the USN
        old = write_at(bad, record + 510, b"\xee\xee")
        assert old != b"\xee\xee"
    else:  # flags (offset 22): in use 0x01 cleared
        flags = bad.read_bytes()[record + 22:record + 24]
        assert flags == b"\x01\x00"
        write_at(bad, record + 22, b"\x00\x00")
    scanned = scan_image(repo, bad)
    coverage = repo.scan_row(scanned.id)["coverage"]
    assert (scanned.status, coverage["status"]) == ("partial", "partial")
    inode = int(pytsk3.FS_Info(pytsk3.Img_Info(str(image)), offset=system_volume_offset("gpt"))
                .open("/Windows/System32/config/DEFAULT.LOG1").info.meta.addr)
    assert coverage["unreadable"] == {
        LOG1: f"the directory lists this name but its record ({inode}) cannot be read or is "
              "not in use"}
    assert (changes(scanned), scanned.removed) == ([], 0)
    with repo.transaction() as conn:
        assert repo.load_file_state(conn, repo.machine_id(conn, MACHINE)) == before


def test_ext4_live_entry_whose_inode_bitmap_bit_is_cleared(
        tmp_path: Path, repo: Repository,
        scan: Callable[[Path], ScanRecord]) -> None:
    image = linux_image(tmp_path)
    first = scan(image)
    assert first.baseline and first.status == "succeeded"
    with repo.transaction() as conn:
        before = repo.load_file_state(conn, repo.machine_id(conn, LINUX_MACHINE))
    assert "/etc/crontab" in before

    bad = copy_image(image, tmp_path / "bad.img")
    debugfs(bad, "freei /etc/crontab")  # the inode bitmap only: the entry and inode stay
    record = scan(bad)
    coverage = repo.scans(LINUX_MACHINE, limit=1)[0]["coverage"]
    assert (record.status, coverage["status"]) == ("partial", "partial")
    etc = inode_info(bad, "/etc")["inode"]
    assert coverage["unreadable"] == {
        "/etc": f"cannot list directory (inode {etc}) consistently: 1 of its entries name an "
                "unallocated or unusable inode"}
    assert (changes(record), record.removed) == ([], 0)
    with repo.transaction() as conn:
        assert repo.load_file_state(conn, repo.machine_id(conn, LINUX_MACHINE)) == before
