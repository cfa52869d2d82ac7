"""Incremental scans served from the parent snapshot's kept blocks: a real ext4 image read as
snapshot s1 through the caching layer, a copy changed (content rewritten in place with every
timestamp forged, a mode changed) read as s2, told s1 and the changed ranges. The scan of s2
equals a full scan of it, fetches only changed blocks, and a damaged kept block, a budget too
small, or a parent with nothing kept only cost fetches."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from scanner.collectors import hashing
from scanner.incremental import ChangedRanges, Reuse, locator_key, mount_layout
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.base import BlockSource, follow_parent
from scanner.sources.blockstore import HEADER
from scanner.sources.cache import CachedSource, CacheSettings, FileFetcher
from scanner.sources.local import open_local
from tests.imaging.ext4 import build_ext4, debugfs, overwrite_in_place
from tests.imaging.tools import copy_image
from tests.imaging.trees import linux_tree

BLOCK = 1 << 16
BLOB = hashlib.sha256(b"kept").digest() * (2 * (1 << 20) // 32)


class LoggingFetcher(FileFetcher):
    """A :class:`FileFetcher` that counts the blocks it fetches."""

    def __init__(self, source: BlockSource, snapshot: str) -> None:
        super().__init__(source, BLOCK, owns=True, snapshot=snapshot)
        self.log: Counter[int] = Counter()

    def fetch(self, index: int) -> bytes:
        self.log[index] += 1
        return super().fetch(index)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """s1, and s2: /etc/crontab rewritten in place (same size, times untouched), /opt/blob1's
    last byte changed in place, /usr/bin/login's mode changed."""
    workdir = tmp_path_factory.mktemp("kept")
    root = linux_tree(workdir / "src")
    (root / "opt").mkdir(exist_ok=True)
    for n in range(3):
        (root / f"opt/blob{n}").write_bytes(bytes([n]) + BLOB)
    first = build_ext4(root, workdir / "s1.img")
    second = copy_image(first, workdir / "s2.img")
    crontab = (root / "etc/crontab").read_bytes()
    overwrite_in_place(second, "/etc/crontab", crontab.upper())
    overwrite_in_place(second, "/opt/blob1", b"\1" + BLOB[:-1] + b"!")
    debugfs(second, "sif /usr/bin/login mode 0100600")
    return first, second


def changed_ranges(first: Path, second: Path) -> list[tuple[int, int]]:
    """What a cloud's changed-block list says: the blocks whose bytes differ."""
    out = []
    with first.open("rb") as a, second.open("rb") as b:
        index = 0
        while (x := a.read(BLOCK)) or b.read(0):
            if x != b.read(BLOCK):
                out.append((index * BLOCK, BLOCK))
            index += 1
            if not x:
                break
    return out


def snapshot(image: Path, name: str, keep: Path, budget: int = 1 << 30
             ) -> tuple[CachedSource, LoggingFetcher]:
    fetcher = LoggingFetcher(open_local(image), name)
    return CachedSource(fetcher, CacheSettings(cache_bytes=1 << 20, read_ahead=4, threads=4,
                                               keep_dir=str(keep), keep_bytes=budget)), fetcher


def scan(source: BlockSource, workers: int = 1, reuse: Reuse | None = None) -> ScanOutcome:
    return scan_source(source, [make_entity("/")], ScanOptions(workers, reuse=reuse),
                       name="disk")


def incremental(images: tuple[Path, Path], keep: Path, full: ScanOutcome, workers: int = 1,
                parent: str = "s1", budget: int = 1 << 30
                ) -> tuple[ScanOutcome, CachedSource, LoggingFetcher, bool]:
    ranges = changed_ranges(*images)
    source, fetcher = snapshot(images[1], "s2", keep, budget)
    followed = follow_parent(source, {"kind": "file-blocks", "snapshot": parent}, ranges)
    layout = mount_layout((v.volume, v.mountpoint, v.uuid) for v in full.coverage.volumes)
    reuse = Reuse(full.entities, {locator_key(source.locator): ChangedRanges(ranges)}, layout)
    try:
        return scan(source, workers, reuse), source, fetcher, followed
    finally:
        source.close()


def changed_blocks(images: tuple[Path, Path]) -> set[int]:
    return {offset // BLOCK for offset, _ in changed_ranges(*images)}


@pytest.fixture
def direct(images: tuple[Path, Path]) -> tuple[ScanOutcome, ScanOutcome]:
    with open_local(images[0]) as one, open_local(images[1]) as two:
        return scan(one), scan(two)


def full_scan(images: tuple[Path, Path], keep: Path, budget: int = 1 << 30
              ) -> tuple[ScanOutcome, CachedSource]:
    source, _ = snapshot(images[0], "s1", keep, budget)
    try:
        return scan(source), source
    finally:
        source.close()


def test_an_incremental_scan_served_from_the_parent_equals_a_full_scan(
        images: tuple[Path, Path], direct: tuple[ScanOutcome, ScanOutcome],
        tmp_path: Path) -> None:
    full, first = full_scan(images, tmp_path)
    assert full.entities == direct[0].entities
    assert first.stats.kept > 0  # the walk's blocks
    result, second, fetcher, followed = incremental(images, tmp_path, full)
    assert followed
    assert result.entities == direct[1].entities  # the same entities: the same events
    before, after = full.entities, result.entities
    assert [p for p in sorted(after) if after[p].values() != before[p].values()] == [
        "/etc/crontab", "/opt/blob1", "/usr/bin/login"]
    assert after["/etc/crontab"].mtime == before["/etc/crontab"].mtime  # forged, still caught
    assert after["/etc/crontab"].sha256 != before["/etc/crontab"].sha256
    # every block fetched is a changed one, once; the rest came from s1's kept blocks
    assert set(fetcher.log) <= changed_blocks(images)
    assert max(fetcher.log.values()) == 1
    assert second.stats.parent_hits > 0 and second.stats.fetched == len(fetcher.log)


def test_hash_workers_follow_the_parent_too(images: tuple[Path, Path],
                                           direct: tuple[ScanOutcome, ScanOutcome],
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    full, _ = full_scan(images, tmp_path)
    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)
    result, _, _, _ = incremental(images, tmp_path, full, workers=3)
    assert result.entities == direct[1].entities


def test_a_damaged_kept_block_is_fetched_again(images: tuple[Path, Path],
                                               direct: tuple[ScanOutcome, ScanOutcome],
                                               tmp_path: Path) -> None:
    full, _ = full_scan(images, tmp_path)
    [parent_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    kept = sorted(int(p.stem) for p in parent_dir.glob("*.blk"))
    unchanged = [n for n in kept if n not in changed_blocks(images)]
    victim, truncated = unchanged[0], unchanged[-1]  # the superblock's, and another
    entry = parent_dir / f"{victim}.blk"
    raw = bytearray(entry.read_bytes())
    raw[HEADER.size + 1024] ^= 0xFF
    entry.write_bytes(bytes(raw))
    (parent_dir / f"{truncated}.blk").write_bytes(raw[:HEADER.size + 10])
    result, _, fetcher, _ = incremental(images, tmp_path, full)
    assert result.entities == direct[1].entities
    assert fetcher.log[victim] == 1 and fetcher.log[truncated] == 1
    assert set(fetcher.log) <= changed_blocks(images) | {victim, truncated}


def test_the_budget_holds_and_a_small_one_only_costs_fetches(
        images: tuple[Path, Path], direct: tuple[ScanOutcome, ScanOutcome],
        tmp_path: Path) -> None:
    budget = 5 * (HEADER.size + BLOCK)
    full, first = full_scan(images, tmp_path, budget)
    on_disk = {(p.stat().st_ino, p.stat().st_size) for p in tmp_path.rglob("*.blk")}
    assert len(on_disk) == first.stats.kept
    assert sum(size for _, size in on_disk) <= budget  # zero blocks take a header only
    assert [size for _, size in on_disk].count(HEADER.size + BLOCK) == 4
    result, _, fetcher, _ = incremental(images, tmp_path, full, budget=budget)
    assert result.entities == direct[1].entities
    assert len(fetcher.log) > 50
    assert sum(size for _, size in {(p.stat().st_ino, p.stat().st_size)
                                    for p in tmp_path.rglob("*.blk")}) <= budget


def test_a_parent_with_nothing_kept_means_every_block_is_fetched(
        images: tuple[Path, Path], direct: tuple[ScanOutcome, ScanOutcome],
        tmp_path: Path) -> None:
    full, _ = full_scan(images, tmp_path)
    result, second, fetcher, followed = incremental(images, tmp_path, full, parent="other")
    assert not followed
    assert result.entities == direct[1].entities
    assert second.stats.parent_hits == 0
    assert not set(fetcher.log) <= changed_blocks(images)


class DigestFetcher(LoggingFetcher):
    """Hands each block's SHA-256 with it, as the EBS fetcher does after checking the reply's
    checksum; ``wrong``: a block whose digest it gets wrong."""

    def __init__(self, source: BlockSource, snapshot: str, wrong: int) -> None:
        super().__init__(source, snapshot)
        self.wrong = wrong

    def fetch_with_digest(self, index: int) -> tuple[bytes, bytes]:
        data = self.fetch(index)
        return data, bytes(32) if index == self.wrong else hashlib.sha256(data).digest()


def test_kept_blocks_carry_the_digest_the_fetcher_computed(images: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """The digest handed with a block is the one stored (not computed again), and a wrong
    one only costs a fetch when the block is next read: never wrong bytes."""
    outcomes, logs = [], []
    for _ in range(2):  # a scan of s1, then the same snapshot's scan again (redelivered)
        fetcher = DigestFetcher(open_local(images[0]), "s1", wrong=0)
        source = CachedSource(fetcher, CacheSettings(cache_bytes=1 << 20, read_ahead=4,
                                                     threads=4, keep_dir=str(tmp_path)))
        try:
            outcomes.append(scan(source))
        finally:
            source.close()
        logs.append(fetcher.log)
    [snap_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    entries = {int(p.stem): p.read_bytes() for p in snap_dir.glob("*.blk")}
    assert 0 in entries and len(entries) > 10
    for index, raw in entries.items():
        digest = HEADER.unpack_from(raw)[2]
        assert digest == (bytes(32) if index == 0 else hashlib.sha256(
            raw[HEADER.size:] or bytes(BLOCK)).digest())
    assert outcomes[1].entities == outcomes[0].entities
    assert logs[1][0] == 1  # the entry with the wrong digest: a miss, fetched again
    assert not (set(logs[1]) & set(entries)) - {0}  # every other kept block served
