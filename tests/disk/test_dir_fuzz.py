"""Issue 9, item 5: one-byte corruptions of directory data, fixed seeds.

For every case: no traceback, and no ``removed`` path from a scan whose status is
``succeeded`` unless the entry is really gone from a consistent directory (see
:mod:`tests.disk.dirfuzz`). Each filesystem is fuzzed twice: as the corruption leaves it
(checksums then catch it), and with the checksums recomputed as an attacker would, so only
the structural checks (record chain, names, inode ranges, link count, leaf hashes) can tell.
Before the directory checks, such cases gave removals with "succeeded". The whole run stays
under about 60 s; ``benchmarks/bench_dir_fuzz.py`` runs many more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.disk import dirfuzz
from tests.imaging.ext4 import linux_image
from tests.imaging.trees import linux_tree
from tests.imaging.xfs import build_xfs_tree

EXT_CASES, XFS_CASES = 70, 40


def bigger_tree(src: Path) -> Path:
    """linux_tree plus a directory of 40 names (a block-form directory on XFS)."""
    linux_tree(src)
    for n in range(40):
        (src / "usr/lib" / f"lib{n:02d}.so").write_bytes(b"x")
    return src


@pytest.mark.timeout(120)
def test_ext4_directory_corruptions(tmp_path: Path) -> None:
    image = linux_image(tmp_path)
    targets = dirfuzz.ext_targets(image, tmp_path / "src")
    failures, statuses = dirfuzz.fuzz(image, targets, 9, EXT_CASES, tmp_path,
                                      dirfuzz.ext_really_gone)
    assert failures == []
    assert statuses.get("partial", 0) > EXT_CASES // 2, statuses
    failures, statuses = dirfuzz.fuzz(image, targets, 10, EXT_CASES, tmp_path,
                                      dirfuzz.ext_really_gone, dirfuzz.ext_refresh)
    assert failures == []
    assert statuses.get("partial", 0) > 5, statuses


@pytest.mark.timeout(120)
def test_xfs_directory_corruptions(tmp_path: Path) -> None:
    src = bigger_tree(tmp_path / "src")
    image = build_xfs_tree(src, tmp_path / "xfs.img")
    targets = dirfuzz.xfs_targets(image, src)
    assert any(length > 1000 for _d, _at, length, _i in targets)  # a block-form directory
    failures, statuses = dirfuzz.fuzz(image, targets, 9, XFS_CASES, tmp_path,
                                      dirfuzz.xfs_really_gone)
    assert failures == []
    assert statuses.get("partial", 0) > XFS_CASES // 2, statuses
    failures, statuses = dirfuzz.fuzz(image, targets, 10, XFS_CASES, tmp_path,
                                      dirfuzz.xfs_really_gone, dirfuzz.xfs_refresh)
    assert failures == []
    assert statuses.get("partial", 0) > 5, statuses
