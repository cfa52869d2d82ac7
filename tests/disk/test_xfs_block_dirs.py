"""Unreadable is not removed: XFS block-form directories (fuzz class H).

/etc/conf.d holds 64 names: one directory block (``XDB3``), its leaf and tail at the end.
A damaged entry there was dropped (libfsxfs skips it) and reported ``removed`` in a
``succeeded`` scan. The directory's own parse must account for every entry, consistent with
the leaf (name hashes, addresses, stale count) and the header's best-free table, with the
block's CRC recomputed as an attacker would:

- ``name``: two bytes of a name changed (fuzz seed xfs 55): the leaf's hash no longer
  matches (caught on main by the leaf check);
- ``freed``: the entry turned into free space and its leaf entry made stale, the best-free
  table left as it was (what XFS never writes: it keeps the table in step): caught by the
  best-free check.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.entities import FileEntity
from scanner.policy import make_entity
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.disk import dirfuzz
from tests.imaging.tools import copy_image, write_at
from tests.imaging.trees import linux_tree
from tests.imaging.xfs import build_xfs_tree

Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, FileEntity]]
VICTIM = b"setting-03.conf"
REASONS = {
    "name": "the block's leaf (name hashes and addresses) does not match its entries",
    "freed": "best-free table ",
}


def _entry_at(block: bytes, name: bytes) -> tuple[int, int]:
    """Offset and length of the entry named ``name`` in an ``XDB3`` block (ftype on)."""
    at = 64
    while True:
        if block[at:at + 2] == b"\xff\xff":
            at += struct.unpack_from(">H", block, at + 2)[0]
            continue
        length = block[at + 8]
        used = (8 + 1 + length + 1 + 2 + 7) & ~7
        if block[at + 9:at + 9 + length] == name:
            return at, used
        at += used


def _damage(block: bytearray, how: str) -> None:
    at, used = _entry_at(bytes(block), VICTIM)
    if how == "name":
        block[at + 9 + 5:at + 9 + 7] = b"\x80\x00"
        return
    struct.pack_into(">HH", block, at, 0xFFFF, used)   # a free region ...
    struct.pack_into(">H", block, at + used - 2, at)   # ... ending in its own offset
    end = len(block)
    count, stale = struct.unpack_from(">II", block, end - 8)
    leaf = end - 8 - 8 * count
    for index in range(count):
        hashval, address = struct.unpack_from(">II", block, leaf + 8 * index)
        if address == at >> 3:
            struct.pack_into(">II", block, leaf + 8 * index, hashval, 0)
    struct.pack_into(">II", block, end - 8, count, stale + 1)


@pytest.mark.parametrize("how", ["name", "freed"])
def test_damaged_entry_of_a_block_directory_is_unreadable(tmp_path: Path, scan: Scan,
                                                         repo: Repository, file_state: State,
                                                         how: str) -> None:
    src = linux_tree(tmp_path / "src")
    (src / "etc/conf.d").mkdir()
    for n in range(64):
        (src / "etc/conf.d" / f"setting-{n:02d}.conf").write_bytes(b"x=%d\n" % n)
    image = build_xfs_tree(src, tmp_path / "xfs.img")
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/etc/conf.d"))
    first = scan(image)
    assert (first.baseline, first.status) == (True, "succeeded")
    before = file_state()
    assert "/etc/conf.d/setting-03.conf" in before

    [target] = [t for t in dirfuzz.xfs_targets(image, src) if t[0] == "/etc/conf.d"]
    _directory, start, length, inode = target
    bad = copy_image(image, tmp_path / "bad.img")
    block = bytearray(bad.read_bytes()[start:start + length])
    assert block[:4] == b"XDB3"
    _damage(block, how)
    write_at(bad, start, bytes(block))
    dirfuzz.xfs_refresh(bad, target)  # the CRC recomputed

    record = scan(bad)
    coverage = repo.scans(MACHINE, limit=1)[0]["coverage"]
    assert (record.status, coverage["status"]) == ("partial", "partial")
    assert list(coverage["unreadable"]) == ["/etc/conf.d"]
    assert coverage["unreadable"]["/etc/conf.d"].startswith(
        f"cannot list directory (inode {inode}): {REASONS[how]}")
    assert (changes(record), record.removed) == ([], 0)
    assert file_state() == before
