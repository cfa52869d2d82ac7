"""The scan's garbage collector setting: raised inside, restored after, nesting and threads."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from scanner.gcbatch import SCAN_GC_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def _default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_inside_restored_after() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (SCAN_GC_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("scan failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_is_kept() -> None:
    gc.set_threshold(200_000, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (200_000, 5, 5)
    assert gc.get_threshold() == (200_000, 5, 5)


def test_nested_uses_restore_once_the_outer_one_leaves() -> None:
    with fewer_collections():
        with fewer_collections(1000):
            assert gc.get_threshold()[0] == SCAN_GC_THRESHOLD
        assert gc.get_threshold()[0] == SCAN_GC_THRESHOLD
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_threads_restore_the_thresholds_found_first() -> None:
    """Thread A enters, B enters, A leaves, B leaves: the default comes back (B must not
    restore what it found set by A)."""
    entered, a_left = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def second() -> None:
        with fewer_collections():
            entered.set()
            a_left.wait(10)
            seen.append(gc.get_threshold())

    with fewer_collections():
        thread = threading.Thread(target=second)
        thread.start()
        assert entered.wait(10)
    a_left.set()
    thread.join(10)
    assert seen == [(SCAN_GC_THRESHOLD, 10, 10)]  # still raised while B scans
    assert gc.get_threshold() == (700, 10, 10)
