"""Incremental scans through the pipeline seam, on local images (no cloud): the changed byte
ranges of a disk (here: the 512 KiB blocks that differ between two image files) plus the
previous state let unchanged files keep their digest; the result always equals a full scan
of the new disk."""

from __future__ import annotations

from pathlib import Path

from scanner.incremental import ChangedRanges, Reuse, locator_key, mount_layout
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import recommended_entities
from scanner.sources.local import open_local
from tests.aws.helpers import BIG_SIZE, data_heavy_image
from tests.imaging.ext4 import debugfs, e2fsck_ok, overwrite_in_place
from tests.imaging.tools import copy_image

BLOCK = 512 * 1024


def changed_blocks(a: Path, b: Path) -> list[tuple[int, int]]:
    """The 512 KiB ranges whose bytes differ between two images of one size."""
    out = []
    with a.open("rb") as fa, b.open("rb") as fb:
        offset = 0
        while True:
            x, y = fa.read(BLOCK), fb.read(BLOCK)
            if not x and not y:
                break
            if x != y:
                out.append((offset, BLOCK))
            offset += BLOCK
    return out


def scan(image: Path, reuse: Reuse | None = None) -> ScanOutcome:
    with open_local(image) as source:
        if reuse is not None:
            reuse.changed = {locator_key(source.locator): reuse.changed["disk"]}
        return scan_source(source, recommended_entities(), ScanOptions(1, reuse=reuse))


def layout_of(outcome: ScanOutcome) -> dict[str, str]:
    """Where the scan mounted each volume (what the previous scan's coverage records)."""
    return mount_layout((v.volume, v.mountpoint, v.uuid) for v in outcome.coverage.volumes)


def values(outcome: ScanOutcome) -> dict[str, dict[str, object]]:
    return {p: e.values() for p, e in outcome.entities.items()}


def test_incremental_equals_full_and_catches_renames_and_timestomped_edits(
        tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    before = scan(image)
    changed = copy_image(image, tmp_path / "changed.img")
    overwrite_in_place(changed, "/usr/bin/big-03", bytes(BIG_SIZE))  # same size and times
    debugfs(changed, "cd /usr/bin", "ln big-11 big-renamed", "unlink big-11")  # same inode
    assert e2fsck_ok(changed)
    ranges = changed_blocks(image, changed)
    assert ranges  # the disk did change
    reuse = Reuse(before.entities, {"disk": ChangedRanges(ranges)}, layout_of(before))
    incremental = scan(changed, reuse)
    full = scan(changed)
    assert values(incremental) == values(full)
    assert "/usr/bin/big-renamed" in incremental.entities
    assert incremental.entities["/usr/bin/big-03"].sha256 != before.entities[
        "/usr/bin/big-03"].sha256
    # the renamed file is alike its old self (a candidate while walking) but its path is new:
    # it is hashed after the walk, like every file on a changed block
    assert reuse.reused == 40 - incremental.coverage.files_hashed
    assert incremental.coverage.files_hashed < full.coverage.files_hashed // 2
    assert f"incremental: {reuse.reused} files kept their digest (no changed block under " \
           "them)" in incremental.coverage.notes


def test_without_changed_ranges_for_the_disk_everything_is_read(tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    before = scan(image)
    reuse = Reuse(before.entities, {"disk": ChangedRanges([])}, layout_of(before))
    reuse.changed = {}  # no ranges for this disk: no lineage
    with open_local(image) as source:
        again = scan_source(source, recommended_entities(), ScanOptions(1, reuse=reuse))
    assert again.coverage.files_hashed == before.coverage.files_hashed == 40
    assert reuse.reused == 0
    assert values(again) == values(before)


def test_nothing_changed_means_no_file_is_read(tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    before = scan(image)
    reuse = Reuse(before.entities, {"disk": ChangedRanges([])}, layout_of(before))
    again = scan(image, reuse)
    assert again.coverage.files_hashed == 0
    assert reuse.reused == 40
    assert values(again) == values(before)


def test_volumes_mounted_otherwise_than_before_are_read_in_full(tmp_path: Path) -> None:
    """A path on another volume than in the previous scan (an fstab entry moved to a clone
    whose files are alike in metadata, its blocks unchanged since its own parent) keeps no
    digest: with another mount layout every file is read, and a content change that neither
    metadata nor changed ranges show is caught."""
    image = data_heavy_image(tmp_path / "build")
    before = scan(image)
    changed = copy_image(image, tmp_path / "changed.img")
    overwrite_in_place(changed, "/usr/bin/big-03", bytes(BIG_SIZE))  # same size and times
    assert layout_of(before) == {"/": f"{before.coverage.volumes[0].volume} "
                                      f"{before.coverage.volumes[0].uuid}"}
    for layout in ({"/": "d1:p1 " + str(before.coverage.volumes[0].uuid)},
                   {**layout_of(before), "/opt": "d1:p1 -"}, None):
        reuse = Reuse(before.entities, {"disk": ChangedRanges([])}, layout)  # "no change"
        again = scan(changed, reuse)
        assert (again.coverage.files_hashed, reuse.reused) == (40, 0)
        assert again.entities["/usr/bin/big-03"].sha256 != before.entities[
            "/usr/bin/big-03"].sha256
        if layout is not None:
            assert ("incremental: the volumes are not mounted as in the previous scan; every "
                    "file is read") in again.coverage.notes
