"""A full scan of a real ext4 image through the caching layer gives what the direct scan
gives, with hash workers that reopen the cached source from its locator in their process."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scanner.collectors import hashing
from scanner.incremental import ChangedRanges, Reuse, locator_key, mount_layout
from scanner.limits import Limits
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.base import SELECTIVE, STREAM, WALK, BlockSource, current_read_intent
from scanner.sources.cache import CachedSource, CacheSettings, FileFetcher
from scanner.sources.local import open_local
from tests.imaging.ext4 import build_ext4
from tests.imaging.trees import linux_tree

BLOB = hashlib.sha256(b"blob").digest() * (3 * (1 << 20) // 32)  # 3 MiB over many blocks



def layout_of(outcome: ScanOutcome) -> dict[str, str]:
    """Where the scan mounted each volume (what an incremental scan must find again)."""
    return mount_layout((v.volume, v.mountpoint, v.uuid) for v in outcome.coverage.volumes)

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


def test_a_parallel_scan_through_the_cache_equals_the_direct_scan(
        ext4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)  # workers start at the first file
    with open_local(ext4) as local:
        direct = scan(local, 1)
        cached = CachedSource(FileFetcher(local, 1 << 16), CacheSettings(cache_bytes=1 << 20))
        through = scan(cached, 3)
        cached.close()
    assert through.entities == direct.entities


def test_a_hash_worker_reopens_the_cached_source_from_its_locator(ext4: Path) -> None:
    """The worker side of parallel hashing, run alone in a forked process: it reopens the
    ``file-blocks`` locator through the table and hashes the jobs it claims."""
    with open_local(ext4) as local:
        direct = scan(local, 1)
        cached = CachedSource(FileFetcher(local, 1 << 16), CacheSettings(cache_bytes=1 << 20))
        ref = hashing.VolumeRef(cached.locator, 0, cached.size, fs_type="ext4")
        cached.close()
    assert ref.reopenable
    paths = [f"/opt/blob{n}" for n in range(4)] + ["/usr/bin/login"]
    table = hashing._JobTable.create()  # noqa: SLF001 - the workers' shared job table
    assert table is not None
    for path in paths:
        table.append(0, direct.entities[path].inode or 0, direct.entities[path].size or 0)
    table.close()
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=hashing._worker_main,  # noqa: SLF001
                         args=({"v": ref}, ["v"], table, sender, Limits()))
    worker.start()
    sender.close()
    results = {}
    while (message := receiver.recv()) is not None:  # one list per run, then the end mark
        results.update(message)
    worker.join()
    table.release()
    assert worker.exitcode == 0
    assert {paths[i]: r.digest for i, r in results.items()} == \
        {p: direct.entities[p].sha256 for p in paths}
    assert results[0].digest == hashlib.sha256(b"\0" + BLOB).hexdigest()


class IntentRecorder:
    """A source that records how each read was declared (:func:`current_read_intent`)."""

    def __init__(self, inner: BlockSource) -> None:
        self._inner = inner
        self.intents: Counter[str] = Counter()

    @property
    def size(self) -> int:
        return self._inner.size

    @property
    def locator(self) -> dict[str, Any]:
        return self._inner.locator

    def read_at(self, offset: int, length: int) -> bytes:
        self.intents[current_read_intent()] += 1
        return self._inner.read_at(offset, length)

    def close(self) -> None:
        pass


def test_the_pipeline_says_how_it_reads(ext4: Path) -> None:
    """A full scan walks as WALK (data near the metadata will be read too), an incremental
    one as SELECTIVE (read-ahead would fetch data it does not need); contents are STREAM."""
    with open_local(ext4) as local:
        full_reader = IntentRecorder(local)
        full = scan(full_reader, 1)
        blob = full.entities["/opt/blob2"]
        incremental_reader = IntentRecorder(local)
        changed = ChangedRanges([(0, 1)])  # the boot block only: no file's data
        reuse = Reuse(full.entities, {locator_key(local.locator): changed}, layout_of(full))
        incremental = scan_source(incremental_reader, [make_entity("/")],
                                  ScanOptions(hash_workers=1, reuse=reuse), name="disk")
    assert blob.sha256 == hashlib.sha256(b"\2" + BLOB).hexdigest()
    assert set(full_reader.intents) == {WALK, STREAM}
    assert set(incremental_reader.intents) == {SELECTIVE}  # every file kept its digest
    assert reuse.reused == full.coverage.files_hashed
    assert incremental.entities == full.entities


class LoggingFetcher(FileFetcher):
    """A :class:`FileFetcher` that logs the blocks it fetches."""

    def __init__(self, source: BlockSource, block_size: int) -> None:
        super().__init__(source, block_size)
        self.log: Counter[int] = Counter()

    def fetch(self, index: int) -> bytes:
        self.log[index] += 1
        return super().fetch(index)


def test_an_incremental_scan_fetches_only_the_blocks_it_reads(ext4: Path) -> None:
    """No data read-ahead while walking: with every digest kept, the blocks fetched are
    exactly the blocks read (the walk's read plans fetch blocks it then reads), each once."""
    block = 1 << 16
    settings = CacheSettings(cache_bytes=1 << 20, read_ahead=8, threads=4)
    with open_local(ext4) as local:
        full = scan(local, 1)
        fetcher = LoggingFetcher(local, block)
        cached = CachedSource(fetcher, settings)
        touched: set[int] = set()
        inner_read = cached.read_at

        def read_at(offset: int, length: int) -> bytes:
            touched.update(range(offset // block, (offset + max(length, 1) - 1) // block + 1))
            return inner_read(offset, length)

        cached.read_at = read_at  # type: ignore[method-assign]
        reuse = Reuse(full.entities, {locator_key(cached.locator): ChangedRanges([(0, 1)])},
                      layout_of(full))
        incremental = scan_source(cached, [make_entity("/")],
                                  ScanOptions(hash_workers=1, reuse=reuse), name="disk")
        cached.close()
    assert incremental.entities == full.entities
    assert set(fetcher.log) == touched and max(fetcher.log.values()) == 1
    assert reuse.reused == full.coverage.files_hashed
