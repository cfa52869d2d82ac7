"""The caching layer over a fetcher with injected latency and faults: the same bytes as the
raw data, retries, verification, single-flight, the LRU bound and read-ahead."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.errors import SourceError, SourceReadError
from scanner.sources.cache import CachedSource, CacheSettings, FileFetcher
from scanner.sources.local import open_local
from scanner.sources.locators import open_locator, reopenable
from tests.sources.fetchers import FaultyFetcher, checksums

BLOCK = 4096
DATA = random.Random(7).randbytes(10 * BLOCK + 1234)  # the last block is short
FAST = CacheSettings(cache_bytes=4 * BLOCK, read_ahead=2, threads=2, backoff=0.001,
                     max_backoff=0.004)


def cached(fetcher: FaultyFetcher, **settings: object) -> CachedSource:
    values = {**FAST.as_dict(), **settings}
    return CachedSource(fetcher, CacheSettings.from_dict(values), verify=checksums(fetcher))


def settle(source: CachedSource) -> None:
    """Wait until no read-ahead is in flight."""
    deadline = time.monotonic() + 10
    while source._inflight and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.005)
    assert not source._inflight  # noqa: SLF001


@given(reads=st.lists(st.tuples(st.integers(0, len(DATA) + BLOCK),
                                st.integers(0, 3 * BLOCK + 7)), min_size=1, max_size=30),
       cache_blocks=st.integers(2, 6), read_ahead=st.integers(0, 4))
def test_random_reads_give_the_raw_bytes(reads: list[tuple[int, int]], cache_blocks: int,
                                         read_ahead: int) -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, cache_bytes=cache_blocks * BLOCK, read_ahead=read_ahead) as source:
        assert source.size == len(DATA)
        for offset, length in reads:
            assert source.read_at(offset, length) == DATA[offset:offset + length]
            assert source.stats.cached_bytes <= cache_blocks * BLOCK
        # across a block boundary, and the short end of the last block
        assert source.read_at(BLOCK - 3, 6) == DATA[BLOCK - 3:BLOCK + 3]
        assert source.read_at(len(DATA) - 5, 100) == DATA[-5:]
        assert source.read_at(len(DATA), 10) == b""


def test_wrapping_a_local_file_gives_the_same_bytes(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(DATA)
    with open_local(image) as local:
        source = CachedSource(FileFetcher(local, BLOCK), FAST)
        for offset in range(0, len(DATA), 1000):
            assert source.read_at(offset, 5000) == DATA[offset:offset + 5000]
        source.close()


def test_a_block_failing_twice_then_succeeding_is_read() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={3: ["transient", "transient"]})
    with cached(fetcher, read_ahead=0) as source:
        assert source.read_at(3 * BLOCK + 10, 100) == DATA[3 * BLOCK + 10:3 * BLOCK + 110]
        assert fetcher.calls[3] == 3
        stats = source.stats
        assert (stats.retries, stats.fetched) == (2, 1)
        assert source.read_at(3 * BLOCK, 10) == DATA[3 * BLOCK:3 * BLOCK + 10]
        assert fetcher.calls[3] == 3  # cached


def test_a_block_that_keeps_failing_is_a_read_error_with_the_reason() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={2: ["transient"] * 10})
    with cached(fetcher, read_ahead=0, attempts=4) as source:
        with pytest.raises(SourceReadError) as info:
            source.read_at(2 * BLOCK, 10)
        assert str(info.value) == (f"block 2 (offset {2 * BLOCK}): still failing after 4 "
                                   "attempts: throttled on block 2")
        assert fetcher.calls[2] == 4
        assert source.stats.retries == 3


def test_a_permanent_failure_is_not_retried_nor_cached() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={1: ["fail"]})
    with cached(fetcher, read_ahead=0) as source:
        with pytest.raises(SourceReadError, match="^block 1 is gone$"):
            source.read_at(BLOCK, 10)
        assert fetcher.calls[1] == 1
        assert source.stats.retries == 0
        assert source.read_at(BLOCK, 10) == DATA[BLOCK:BLOCK + 10]  # fetched again
        assert fetcher.calls[1] == 2


def test_a_persistent_checksum_mismatch_names_the_block() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={5: ["corrupt"] * 10})
    with cached(fetcher, read_ahead=0, mismatch_attempts=3) as source:
        with pytest.raises(SourceReadError) as info:
            source.read_at(5 * BLOCK + 1, 2)
        assert str(info.value) == (f"block 5 (offset {5 * BLOCK}): verification failed: "
                                   "checksum mismatch on block 5 (fetched 3 times)")
        assert fetcher.calls[5] == 3
        assert source.read_at(4 * BLOCK, 10) == DATA[4 * BLOCK:4 * BLOCK + 10]


def test_a_transient_mismatch_and_a_short_block_recover() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={0: ["corrupt"], 10: ["short"]})
    with cached(fetcher, read_ahead=0) as source:
        assert source.read_at(0, 50) == DATA[:50]
        assert source.read_at(10 * BLOCK, 2000) == DATA[10 * BLOCK:]
        assert (fetcher.calls[0], fetcher.calls[10]) == (2, 2)
        assert source.stats.retries == 2


def test_a_block_of_the_wrong_length_is_refused_without_verify_hook() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={4: ["short"] * 5})
    source = CachedSource(fetcher, CacheSettings.from_dict({**FAST.as_dict(), "read_ahead": 0}))
    with pytest.raises(SourceReadError) as info:
        source.read_at(4 * BLOCK, 1)
    assert str(info.value) == (f"block 4 (offset {4 * BLOCK}): {BLOCK - 1} bytes where "
                               f"{BLOCK} were expected (fetched 3 times)")
    source.close()
    assert fetcher.closed


def test_concurrent_readers_of_one_block_fetch_it_once() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    fetcher.gate = threading.Event()
    source = cached(fetcher, read_ahead=0)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def reader(offset: int) -> None:
        try:
            results.append(source.read_at(offset, 100))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(6 * BLOCK + 100,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while source.stats.waits < 7 and time.monotonic() < deadline:
        time.sleep(0.002)
    fetcher.gate.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [DATA[6 * BLOCK + 100:6 * BLOCK + 200]] * 8
    assert fetcher.calls == {6: 1}
    assert (source.stats.fetched, source.stats.waits) == (1, 7)
    source.close()


def test_a_failure_reaches_every_waiter_and_is_not_cached() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={6: ["fail"]})
    fetcher.gate = threading.Event()
    source = cached(fetcher, read_ahead=0)
    errors: list[str] = []

    def reader() -> None:
        try:
            source.read_at(6 * BLOCK, 10)
        except SourceReadError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=reader) for _ in range(5)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while source.stats.waits < 4 and time.monotonic() < deadline:
        time.sleep(0.002)
    fetcher.gate.set()
    for thread in threads:
        thread.join()
    assert errors == ["block 6 is gone"] * 5
    assert fetcher.calls[6] == 1
    assert source.read_at(6 * BLOCK, 10) == DATA[6 * BLOCK:6 * BLOCK + 10]
    assert fetcher.calls[6] == 2
    source.close()


def test_the_cache_bound_holds_under_every_access_pattern() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, cache_bytes=3 * BLOCK, read_ahead=8) as source:
        rng = random.Random(3)
        for _ in range(200):
            offset = rng.randrange(len(DATA))
            assert source.read_at(offset, 3000) == DATA[offset:offset + 3000]
        for offset in range(0, len(DATA), 1000):  # forward: read-ahead runs
            assert source.read_at(offset, 1000) == DATA[offset:offset + 1000]
        settle(source)
        stats = source.stats
        assert stats.peak_bytes == 3 * BLOCK
        assert stats.cached_bytes <= 3 * BLOCK
        assert stats.read_ahead > 0


def test_random_reads_do_not_fetch_ahead() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, cache_bytes=8 * BLOCK, read_ahead=3) as source:
        for index in (10, 2, 6, 0):  # no two within two blocks of each other
            source.read_at(index * BLOCK, 10)
        settle(source)
        assert fetcher.calls == {10: 1, 2: 1, 6: 1, 0: 1}
        assert source.stats.read_ahead == 0


def test_forward_reads_fetch_the_next_blocks() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, cache_bytes=8 * BLOCK, read_ahead=3) as source:
        source.read_at(8 * BLOCK, 10)
        source.read_at(2 * BLOCK, 10)  # apart: nothing ahead yet
        source.read_at(3 * BLOCK, 10)  # block 3 continues the run that block 2 started
        settle(source)
        assert fetcher.calls == {8: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}
        assert source.stats.read_ahead == 3
        hits = source.stats.hits
        assert source.read_at(4 * BLOCK, 3 * BLOCK) == DATA[4 * BLOCK:7 * BLOCK]
        assert source.stats.hits == hits + 3
        settle(source)  # 7 and 9 ahead of the run, 8 cached
        assert fetcher.calls == {2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1}


def test_backward_reads_fetch_the_blocks_before() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, cache_bytes=8 * BLOCK, read_ahead=3) as source:
        source.read_at(9 * BLOCK + 5, 10)
        source.read_at(8 * BLOCK + 5, 10)
        settle(source)
        assert fetcher.calls == {9: 1, 8: 1, 7: 1, 6: 1, 5: 1}
        assert source.stats.read_ahead == 3
        assert source.read_at(5 * BLOCK, 3 * BLOCK) == DATA[5 * BLOCK:8 * BLOCK]
        assert source.stats.hits == 3


def test_a_read_over_several_blocks_fetches_them_in_parallel() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    fetcher.gate = threading.Event()
    source = cached(fetcher, cache_bytes=8 * BLOCK, read_ahead=4, threads=4)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(source.read_at(100, 4 * BLOCK)))
    reader.start()
    deadline = time.monotonic() + 10
    while fetcher.active < 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    fetcher.gate.set()  # the five blocks of the read were all being fetched at once
    reader.join()
    assert out == [DATA[100:100 + 4 * BLOCK]]
    assert fetcher.calls == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1}
    assert fetcher.peak == 5
    assert (source.stats.fetched, source.stats.read_ahead) == (5, 0)  # all for the read
    source.close()


def test_the_locator_reopens_the_cached_file(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(DATA)
    settings = CacheSettings(cache_bytes=8 * BLOCK, read_ahead=3, threads=3)
    with open_local(image) as local:
        source = CachedSource(FileFetcher(local, BLOCK, delay=0.001), settings)
        locator = source.locator
    assert locator == {"kind": "file-blocks",
                       "source": {"kind": "local", "path": str(image.resolve())},
                       "block_size": BLOCK, "delay": 0.001, "cache": settings.as_dict()}
    assert reopenable(locator)
    again = open_locator(locator)
    try:
        assert isinstance(again, CachedSource)
        assert again.locator == locator
        assert again.read_at(0, len(DATA) + 5) == DATA
    finally:
        again.close()


def test_settings_that_cannot_work_are_refused() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with pytest.raises(SourceError, match="cannot hold two blocks"):
        CachedSource(fetcher, CacheSettings(cache_bytes=BLOCK))


def test_a_closed_source_refuses_reads() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    source = cached(fetcher)
    source.read_at(0, 10)
    source.close()
    assert fetcher.closed and source.stats.cached_bytes == 0
    with pytest.raises(SourceReadError, match="closed"):
        source.read_at(0, 10)


def test_many_threads_reading_at_once_get_the_raw_bytes() -> None:
    faults = {i: ["transient"] for i in range(0, 11, 3)}  # some blocks fail once
    fetcher = FaultyFetcher(DATA, BLOCK, delay=0.001, faults=faults)
    source = cached(fetcher, cache_bytes=3 * BLOCK, read_ahead=2, threads=3)
    wrong: list[object] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            offset, length = rng.randrange(len(DATA)), rng.randrange(1, 2 * BLOCK)
            try:
                if source.read_at(offset, length) != DATA[offset:offset + length]:
                    wrong.append((offset, length))
            except Exception as exc:  # reported by the assert below
                wrong.append(exc)

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert source.stats.peak_bytes <= 3 * BLOCK
    assert source.stats.retries == len(faults)
    source.close()


def test_a_fetchers_own_verify_method_is_the_hook() -> None:
    class Checked(FaultyFetcher):
        verify = staticmethod(checksums(FaultyFetcher(DATA, BLOCK)))

    fetcher = Checked(DATA, BLOCK, faults={7: ["corrupt"] * 3})
    source = CachedSource(fetcher, CacheSettings.from_dict({**FAST.as_dict(), "read_ahead": 0}))
    with pytest.raises(SourceReadError, match=r"^block 7 \(offset 28672\): verification "
                                              r"failed: checksum mismatch on block 7"):
        source.read_at(7 * BLOCK, 1)
    source.close()
