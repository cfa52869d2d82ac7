"""Run detection for read-ahead (pure logic): which blocks come next, forward or backward."""

from __future__ import annotations

from scanner.sources.readahead import RunDetector


def test_a_forward_run_names_the_next_blocks_once_per_new_block() -> None:
    runs = RunDetector(depth=4)
    assert list(runs.observe(10, 10)) == []          # a first read is no run yet
    assert list(runs.observe(10, 10)) == []          # the same block again: still none
    assert list(runs.observe(11, 12)) == [13, 14, 15, 16]
    assert list(runs.observe(12, 12)) == []          # no new block
    assert list(runs.observe(14, 14)) == [15, 16, 17, 18]  # a gap of two blocks continues it
    assert list(runs.observe(18, 18)) == []          # a gap of four starts a new run


def test_a_backward_run_names_the_blocks_before_down_to_zero() -> None:
    runs = RunDetector(depth=3)
    assert list(runs.observe(5, 5)) == []
    assert list(runs.observe(4, 4)) == [3, 2, 1]
    assert list(runs.observe(1, 2)) == [0]


def test_interleaved_readers_keep_their_runs() -> None:
    runs = RunDetector(depth=2)
    assert list(runs.observe(100, 100)) == []
    assert list(runs.observe(500, 500)) == []
    assert list(runs.observe(101, 101)) == [102, 103]
    assert list(runs.observe(499, 499)) == [498, 497]
    assert list(runs.observe(102, 102)) == [103, 104]


def test_only_the_most_recent_runs_are_remembered() -> None:
    runs = RunDetector(depth=1, runs=2)
    runs.observe(0, 0)
    runs.observe(100, 100)
    runs.observe(200, 200)  # run at 0 forgotten
    assert list(runs.observe(1, 1)) == []
    assert list(runs.observe(201, 201)) == [202]


def test_no_depth_no_read_ahead() -> None:
    runs = RunDetector(depth=0)
    runs.observe(0, 0)
    assert list(runs.observe(1, 1)) == []


def test_the_window_doubles_with_each_step_up_to_the_depth() -> None:
    runs = RunDetector(depth=32, start=4)
    runs.observe(0, 0)
    windows = [len(runs.observe(block, block)) for block in range(1, 7)]
    assert windows == [4, 8, 16, 32, 32, 32]
    runs.observe(100, 100)
    assert list(runs.observe(99, 99)) == [98, 97, 96, 95]  # a new run starts small again
