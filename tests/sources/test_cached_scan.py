"""A full scan of a real ext4 image through the caching layer gives what the direct scan
gives, with hash workers that reopen the cached source from its locator in their process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from scanner.collectors import hashing
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.base import BlockSource
from scanner.sources.cache import CachedSource, CacheSettings, FileFetcher
from scanner.sources.local import open_local
from tests.imaging import build_ext4, linux_tree

BLOB = hashlib.sha256(b"blob").digest() * (3 * (1 << 20) // 32)  # 3 MiB over many blocks


def scan(source: BlockSource, workers: int) -> ScanOutcome:
    return scan_source(source, [make_entity("/")], ScanOptions(hash_workers=workers),
                       name="disk")


@pytest.fixture(scope="module")
def ext4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("cached")
    root = linux_tree(workdir / "src")
    (root / "opt").mkdir(exist_ok=True)
    for n in range(4):
        (root / f"opt/blob{n}").write_bytes(bytes([n]) + BLOB)
    return build_ext4(root, workdir / "disk.img")


def test_a_scan_through_the_cache_equals_the_direct_scan(ext4: Path) -> None:
    with open_local(ext4) as local:
        direct = scan(local, 1)
        cached = CachedSource(FileFetcher(local, 1 << 16),
                              CacheSettings(cache_bytes=1 << 20, read_ahead=4, threads=4))
        through = scan(cached, 1)
        stats = cached.stats
        cached.close()
    assert direct.coverage.status == "succeeded"
    assert through.entities == direct.entities
    assert len(direct.entities) == direct.coverage.entities > 40
    assert through.entities["/opt/blob1"].sha256 == hashlib.sha256(b"\1" + BLOB).hexdigest()
    assert [(v.volume, v.filesystem, v.status) for v in through.coverage.volumes] == \
        [(v.volume, v.filesystem, v.status) for v in direct.coverage.volumes]
    assert stats.peak_bytes <= 1 << 20
    assert stats.read_ahead > 0 and stats.hits > stats.fetched


def test_hash_workers_reopen_the_cached_source(ext4: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    opened = tmp_path / "opened"
    real_open = hashing.open_volume_filesystem

    def spy(ref: hashing.VolumeRef) -> Any:  # runs in the forked workers
        with opened.open("a") as fh:
            fh.write(f"{os.getpid()} {ref.disk_locator['kind']}\n")
        return real_open(ref)

    monkeypatch.setattr(hashing, "open_volume_filesystem", spy)
    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)
    with open_local(ext4) as local:
        direct = scan(local, 1)
        cached = CachedSource(FileFetcher(local, 1 << 16), CacheSettings(cache_bytes=1 << 20))
        through = scan(cached, 3)
        cached.close()
    assert through.entities == direct.entities
    calls = opened.read_text().splitlines()
    assert calls and all(int(c.split()[0]) != os.getpid() for c in calls)
    assert {c.split()[1] for c in calls} == {"file-blocks"}
