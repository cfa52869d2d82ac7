"""The scan's shared spill file behind the memory cache, read intents and read plans: a
block is fetched once per scan across processes and evictions, the file is bounded and
private, only reads that will go on are followed by read-ahead, and a plan fetches exactly
the blocks it names."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from scanner.errors import SourceReadError
from scanner.sources import spill as spills
from scanner.sources.base import (
    SELECTIVE,
    STREAM,
    WALK,
    SliceSource,
    current_read_intent,
    read_intent,
    will_read,
)
from scanner.sources.cache import CachedSource, CacheSettings
from tests.sources.fetchers import FaultyFetcher, checksums

BLOCK = 4096
DATA = random.Random(11).randbytes(12 * BLOCK + 100)
BLOCKS = 13
SETTINGS = CacheSettings(cache_bytes=2 * BLOCK, read_ahead=0, threads=2, backoff=0.001,
                         max_backoff=0.004, spill_bytes=1 << 30)


def cached(fetcher: FaultyFetcher, **changes: Any) -> CachedSource:
    values = {**SETTINGS.as_dict(), **changes}
    return CachedSource(fetcher, CacheSettings.from_dict(values), verify=checksums(fetcher))


def read_all(source: CachedSource) -> bytes:
    return b"".join(source.read_at(i * BLOCK, BLOCK) for i in range(BLOCKS))


def test_blocks_evicted_from_memory_are_read_back_not_fetched(tmp_path: Path) -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, spill_dir=str(tmp_path)) as source:
        assert read_all(source) == DATA
        # memory holds the last 2 blocks read: all come back from the file
        assert read_all(source) == DATA
        assert set(fetcher.calls.values()) == {1} and len(fetcher.calls) == BLOCKS
        stats = source.stats
        assert (stats.fetched, stats.spilled, stats.spill_hits) == (BLOCKS, BLOCKS, BLOCKS)
        assert stats.peak_bytes == 2 * BLOCK
        assert os.listdir(tmp_path) == []  # the file has no name: it goes with the scan


def test_without_a_spill_file_evicted_blocks_are_fetched_again() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, spill_bytes=0) as source:
        assert read_all(source) == DATA and read_all(source) == DATA
        assert fetcher.calls[0] == 2 and source.stats.spill_hits == 0


def test_the_spill_file_is_bounded_in_bytes() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, spill_bytes=3 * BLOCK) as source:
        assert read_all(source) == DATA and read_all(source) == DATA
        assert source.stats.spilled == 3
        assert [fetcher.calls[i] for i in range(BLOCKS)] == [1, 1, 1] + [2] * 10


def test_a_failed_fetch_is_not_stored_and_is_fetched_again() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK, faults={4: ["fail"]})
    with cached(fetcher) as source:
        with pytest.raises(SourceReadError, match="block 4 is gone"):
            source.read_at(4 * BLOCK, 10)
        assert source.read_at(4 * BLOCK, 10) == DATA[4 * BLOCK:4 * BLOCK + 10]
        assert fetcher.calls[4] == 2


def _child_reads(conn: Any) -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)  # the same disk, reopened in a forked process
    source = cached(fetcher)
    conn.send((read_all(source) == DATA, dict(fetcher.calls), source.stats.spill_hits))
    conn.close()


def test_a_forked_process_reopening_the_disk_shares_the_parents_blocks() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher) as source:
        assert read_all(source) == DATA
        ctx = multiprocessing.get_context("fork")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child_reads, args=(sender,))
        child.start()
        same, calls, hits = receiver.recv()
        child.join(30)
        assert (same, calls, hits) == (True, {}, BLOCKS)  # nothing fetched in the child
    assert len(fetcher.calls) == BLOCKS


def test_a_second_source_in_the_same_process_gets_its_own_file() -> None:
    first, second = FaultyFetcher(DATA, BLOCK), FaultyFetcher(bytes(len(DATA)), BLOCK)
    with cached(first) as one, cached(second) as two:  # one locator, other bytes (tests)
        assert read_all(one) == DATA
        assert read_all(two) == bytes(len(DATA))
        assert len(second.calls) == BLOCKS


def _claim_and_die(store: spills.SpillStore) -> None:
    assert store.claim(3) is None
    os._exit(0)  # killed mid-fetch: the claim is left behind


def test_a_claim_left_by_a_dead_process_is_taken_over() -> None:
    store = spills.SpillStore(len(DATA), BLOCK, 1 << 20)
    try:
        child = multiprocessing.get_context("fork").Process(target=_claim_and_die,
                                                             args=(store,))
        child.start()
        child.join(30)
        assert store.claim(3) is None  # not stored, and the dead claim does not block
        assert store.put(3, DATA[3 * BLOCK:4 * BLOCK])
        assert store.claim(3) == DATA[3 * BLOCK:4 * BLOCK]
        assert store.stored_bytes == BLOCK
    finally:
        store.close()


def forward(source: CachedSource) -> None:
    for index in range(4):
        source.read_at(index * BLOCK + 100, 10)


@pytest.mark.parametrize(("intent", "ahead"), [(WALK, True), (STREAM, True),
                                               (SELECTIVE, False)])
def test_only_reads_that_will_go_on_fetch_ahead(intent: str, ahead: bool) -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, read_ahead=3, cache_bytes=8 * BLOCK) as source:
        with read_intent(intent):
            assert current_read_intent() == intent
            forward(source)
        assert current_read_intent() == WALK
        assert (source.stats.read_ahead > 0) is ahead
        if not ahead:  # only the four blocks asked for
            assert sorted(fetcher.calls) == [0, 1, 2, 3]


def test_an_unknown_intent_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown read intent"), read_intent("guess"):
        pass


def test_a_read_plan_fetches_exactly_its_blocks_through_a_slice() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, read_ahead=4, cache_bytes=8 * BLOCK) as source:
        volume = SliceSource(source, 2 * BLOCK, 8 * BLOCK)  # a partition from block 2
        will_read(volume, [(100, 10), (3 * BLOCK - 1, 2), (20 * BLOCK, 5)])  # last: outside
        settle(source)
        assert sorted(fetcher.calls) == [2, 4, 5]
        assert source.stats.read_ahead == 3
        with read_intent(SELECTIVE):
            assert volume.read_at(3 * BLOCK - 1, 2) == DATA[5 * BLOCK - 1:5 * BLOCK + 1]
        assert source.stats.hits == 2 and sorted(fetcher.calls) == [2, 4, 5]


def test_a_read_plan_is_bounded_by_the_read_ahead_depth() -> None:
    fetcher = FaultyFetcher(DATA, BLOCK)
    with cached(fetcher, read_ahead=2, cache_bytes=8 * BLOCK) as source:
        source.will_read([(0, BLOCKS * BLOCK)])
        settle(source)
        assert sorted(fetcher.calls) == [0, 1]


def settle(source: CachedSource) -> None:
    deadline = time.monotonic() + 10
    while source._inflight and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.005)
    assert not source._inflight  # noqa: SLF001
