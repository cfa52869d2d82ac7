"""Issue 9, item 5: one-byte corruptions of directory data, fixed seeds (a few seconds each).

For every case: no traceback, and no ``removed`` path from a scan whose status is
``succeeded`` unless the entry is really gone from a consistent directory (see
:mod:`tests.disk.dirfuzz`). Before the directory checks, such cases gave removals with
"succeeded" (on ext4, e.g. the ``..`` record's length grown over the entries after it; on XFS a
short-form entry count or name). ``benchmarks/bench_dir_fuzz.py`` runs many more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.disk import dirfuzz
from tests.imaging import build_xfs_tree, linux_image, linux_tree

EXT_CASES, XFS_CASES = 120, 80


def _bigger_tree(src: Path) -> Path:
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


@pytest.mark.timeout(120)
def test_xfs_directory_corruptions(tmp_path: Path) -> None:
    src = _bigger_tree(tmp_path / "src")
    image = build_xfs_tree(src, tmp_path / "xfs.img")
    targets = dirfuzz.xfs_targets(image, src)
    assert any(length > 1000 for _d, _at, length in targets)  # a block-form directory too
    failures, statuses = dirfuzz.fuzz(image, targets, 9, XFS_CASES, tmp_path,
                                      dirfuzz.xfs_really_gone)
    assert failures == []
    assert statuses.get("partial", 0) > XFS_CASES // 2, statuses
