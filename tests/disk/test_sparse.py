"""Sparse files cost what their data costs (issue 9, item 10).

A file whose inode claims 1 TiB of mostly holes used to take ~9 minutes of SHA-256 over zeros.
Its holes are known from the extent map: past ``Limits.hole_bytes`` (and past its own
allocated data) the file gets the sparse-aware digest (extent map + allocated data; recorded
with attributes ``sparse``), so hashing reads only what is allocated, and any change of the
content, a byte written into a hole included, is still a change.

No timed test: the bytes fed to SHA-256 are counted (and capped, so the test fails fast if a
hole is hashed as zeros). Expected digests are computed here from the test's own knowledge of
the layout, following the documented encoding, never from the scanner.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from scanner.collectors import hashing
from scanner.errors import SourceReadError
from scanner.storage.repository import ScanRecord
from tests.conftest import changes
from tests.disk.fs_baselines import T0, sha, xfs_linux_image
from tests.imaging.ext4 import (
    BASE_TOOL_ACL,
    block_size,
    build_ext4,
    e2fsck_ok,
    pin_owners,
    pin_times,
    set_xattr,
)
from tests.imaging.tools import BASE_TIME, copy_image
from tests.imaging.trees import linux_tree, tree_paths
from tests.imaging.xattrs import acl_xattr
from tests.imaging.xfs import xfs_db, xfs_inode, xfs_repair_ok

Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, Any]]
TIB = 1 << 40
HASHED_CAP = 64 << 20  # far above what the images below hold, far below a hole of 1 TiB


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the bytes the scanner feeds to SHA-256 (and fails past HASHED_CAP)."""
    total = [0]

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self._h = hashlib.sha256()
            self.update(data)

        def update(self, data: Any) -> None:
            total[0] += len(data)
            assert total[0] <= HASHED_CAP, "holes are being hashed as zeros"
            self._h.update(data)

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr(hashing, "hashlib", SimpleNamespace(sha256=Counting))
    yield total


def sparse_digest(size: int, runs: list[tuple[int, bytes]]) -> str:
    """The documented sparse-aware digest: tag, le64 size, then per data run le64 offset,
    le64 length and the bytes."""
    digest = hashlib.sha256(b"snapfim-sparse-sha256-v1\0" + struct.pack("<Q", size))
    for offset, data in runs:
        digest.update(struct.pack("<QQ", offset, len(data)) + data)
    return digest.hexdigest()


def sparse_image(workdir: Path, name: str, writes: dict[int, bytes]) -> Path:
    """linux_tree plus ``/usr/bin/big``: 1 TiB, holes but for ``writes`` (offset -> bytes),
    and ``/usr/bin/holey``: 6 KiB with a 2 KiB hole (hashed plainly); owners, times and the
    tool ACL as in :func:`tests.imaging.ext4.linux_image`."""
    src = linux_tree(workdir / f"src-{name}")
    with open(src / "usr/bin/big", "wb") as fh:
        fh.truncate(TIB)
        for offset, data in writes.items():
            os.pwrite(fh.fileno(), data, offset)
    with open(src / "usr/bin/holey", "wb") as fh:
        fh.write(b"a" * 3072)
        os.pwrite(fh.fileno(), b"b" * 1024, 5120)
    image = build_ext4(src, workdir / name)
    set_xattr(image, "/usr/bin/tool", "system.posix_acl_access", acl_xattr(BASE_TOOL_ACL))
    paths = list(tree_paths(src))
    pin_owners(image, paths)
    pin_times(image, paths, BASE_TIME)
    assert e2fsck_ok(image)
    return image


def test_a_1_tib_sparse_file_costs_its_data_and_a_byte_in_a_hole_is_a_change(
        tmp_path: Path, scan: Scan, file_state: State, hashed: list[int]) -> None:
    ends = {0: b"head", TIB - 4: b"tail"}
    base = sparse_image(tmp_path, "base.img", ends)
    block = block_size(base)
    first = b"head" + bytes(block - 4)
    last = bytes(block - 4) + b"tail"
    record = scan(base)
    assert (record.baseline, record.status) == (True, "succeeded")
    assert hashed[0] < 1 << 20  # every file of the image, holes not included
    big = file_state()["/usr/bin/big"]
    before = sparse_digest(TIB, [(0, first), (TIB - block, last)])
    assert (big.size, big.attributes, big.sha256) == (TIB, "sparse", before)
    holey = file_state()["/usr/bin/holey"]  # small holes: the plain SHA-256 of the content
    assert (holey.attributes, holey.sha256) == \
        (None, sha(b"a" * 3072 + bytes(2048) + b"b" * 1024))

    middle = TIB // 2 + 12345
    changed = sparse_image(tmp_path, "changed.img", {**ends, middle: b"\x01"})
    at = middle - middle % block
    after = sparse_digest(TIB, [(0, first), (at, bytes(middle - at) + b"\x01"
                                             + bytes(block - 1 - (middle - at))),
                                (TIB - block, last)])
    hashed[0] = 0
    assert changes(scan(changed)) == [
        ("modified", "/usr/bin/big", ("sha256",), {"sha256": (before, after)}),
    ]
    assert hashed[0] < 1 << 20


def test_xfs_sparse_file_is_hashed_from_its_extent_map(tmp_path: Path, scan: Scan,
                                                       file_state: State,
                                                       hashed: list[int]) -> None:
    """XFS: a 1 TiB file made of one 4 KiB extent (the inode's extent list, edited with
    xfs_db); moving the extent into the middle of the hole is a change."""
    data = b"x" * 4096
    src = linux_tree(tmp_path / "src")
    (src / "usr/bin/big").write_bytes(data)
    image = xfs_linux_image(tmp_path, src, "base.img")
    assert xfs_inode(image, "/usr/bin/big")["format"] == 2  # extents in the inode
    xfs_db(image, "path /usr/bin/big", f"write core.size {TIB}")
    assert xfs_repair_ok(image)
    record = scan(image)
    assert (record.baseline, record.status) == (True, "succeeded")
    big = file_state()["/usr/bin/big"]
    before = sparse_digest(TIB, [(0, data)])
    assert (big.size, big.attributes, big.sha256) == (TIB, "sparse", before)
    assert big.values()["mtime"] == T0

    moved = copy_image(image, tmp_path / "moved.img")
    offset_blocks = (TIB // 2) // 4096
    xfs_db(moved, "path /usr/bin/big", f"write u3.bmx[0].startoff {offset_blocks}")
    assert xfs_repair_ok(moved)
    hashed[0] = 0
    after = sparse_digest(TIB, [(offset_blocks * 4096, data)])
    assert changes(scan(moved)) == [
        ("modified", "/usr/bin/big", ("sha256",), {"sha256": (before, after)}),
    ]
    assert hashed[0] < 1 << 20


def test_unreadable_content_keeps_the_digest_and_its_kind(
        tmp_path: Path, scan: Scan, file_state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the content cannot be read this time, the previous sparse-aware digest is kept
    together with ``attributes`` = ``sparse`` (no event, scan partial)."""
    image = sparse_image(tmp_path, "base.img", {0: b"head"})
    assert scan(image).status == "succeeded"
    kept = file_state()["/usr/bin/big"]
    assert kept.attributes == "sparse"

    def unreadable(*args: Any) -> str:
        raise SourceReadError("read of inode 13 at 0 failed: injected")

    monkeypatch.setattr(hashing, "sparse_digest", unreadable)
    record = scan(image)
    assert (record.status, changes(record)) == ("partial", [])
    again = file_state()["/usr/bin/big"]
    assert (again.sha256, again.attributes) == (kept.sha256, "sparse")
