"""Snapshot blocks kept on local disk between scans: verified on every read (a damaged entry
is a miss, never wrong data), bounded by the byte budget (evicting whole snapshots no process
holds open, least recently opened first), hard links free, safe across processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from scanner.errors import ConfigError
from scanner.sources.blockstore import HEADER, BlockStore, StoreSettings, snapshot_key

BLOCK = 4096
ENTRY = HEADER.size + BLOCK  # bytes one kept block takes


def data(n: int) -> bytes:
    return hashlib.sha256(f"block {n}".encode()).digest() * (BLOCK // 32)


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.blk"))


def on_disk(root: Path) -> int:
    """Bytes of the kept entries, each file once however many links it has."""
    return sum(size for _ino, size in {(p.stat().st_ino, p.stat().st_size)
                                       for p in entries(root)})


def test_a_kept_block_reads_back_and_a_damaged_one_is_a_miss(tmp_path: Path) -> None:
    store = BlockStore(tmp_path, 1 << 20)
    snap = store.open("snapshot:snap-1")
    assert snap is not None
    assert snap.get(3, BLOCK) is None
    assert snap.put(3, data(3)) and snap.put(4, data(4)) and snap.put(5, data(5))
    assert [snap.get(n, BLOCK) == data(n) for n in (3, 4, 5)] == [True, True, True]
    three, four, five = entries(tmp_path)
    raw = bytearray(three.read_bytes())
    raw[HEADER.size + 100] ^= 1  # one bit of the data
    three.write_bytes(bytes(raw))
    four.write_bytes(four.read_bytes()[:-1])  # truncated
    five.write_bytes(b"x" * ENTRY)  # another header
    assert [snap.get(n, BLOCK) for n in (3, 4, 5)] == [None, None, None]
    assert entries(tmp_path) == []  # damaged entries are removed...
    assert int((tmp_path / ".usage").read_text()) == 0  # ...and no longer counted
    assert snap.put(3, data(3)) and snap.get(3, BLOCK) == data(3)  # kept again once fetched
    assert snap.get(3, BLOCK - 1) is None  # the length is part of what is checked
    snap.close()


def test_only_snapshots_are_kept_and_settings_come_from_the_environment(
        tmp_path: Path) -> None:
    assert snapshot_key({"kind": "ebs", "snapshot": "snap-1", "region": "r"}) == \
        "snapshot:snap-1"
    assert snapshot_key({"kind": "local", "path": "/x.img"}) is None
    found = StoreSettings.from_env({"SNAPFIM_BLOCK_CACHE_DIR": str(tmp_path),
                                    "SNAPFIM_BLOCK_CACHE_BYTES": "1048576"})
    assert found == StoreSettings(str(tmp_path), 1 << 20)
    assert StoreSettings.from_env({}).budget == 4 << 30
    with pytest.raises(ConfigError, match="SNAPFIM_BLOCK_CACHE_BYTES must be a whole number "
                                          "of bytes, at least 0, not '-1'"):
        StoreSettings.from_env({"SNAPFIM_BLOCK_CACHE_BYTES": "-1"})


def test_the_budget_holds_evicting_the_least_recently_opened_unused_snapshot(
        tmp_path: Path) -> None:
    store = BlockStore(tmp_path, 4 * ENTRY)
    old = store.open("snapshot:old")
    assert old is not None and old.put(0, data(0)) and old.put(1, data(1))
    old.close()
    recent = store.open("snapshot:recent")
    assert recent is not None and recent.put(0, data(10))
    os.utime(old.path / ".open", (1, 1))  # opened long ago
    recent.close()
    current = store.open("snapshot:current")
    assert current is not None
    assert current.put(0, data(20))  # fits: 4 entries
    assert on_disk(tmp_path) == 4 * ENTRY
    assert current.put(1, data(21))  # evicts "old" whole (2 entries), not "recent"
    assert not old.path.exists() and recent.get(0, BLOCK) is None  # recent closed: unused
    reopened = store.open("snapshot:recent", create=False)
    assert reopened is not None and reopened.get(0, BLOCK) == data(10)
    assert on_disk(tmp_path) == 3 * ENTRY
    assert current.put(2, data(22))
    # 4 entries; "recent" is held open by `reopened`, "current" by `current`: nothing can go
    assert not current.put(3, data(23))
    assert current.get(3, BLOCK) is None
    assert on_disk(tmp_path) == 4 * ENTRY == int((tmp_path / ".usage").read_text())
    reopened.close()
    assert current.put(3, data(23))  # "recent" is unused now: evicted
    assert on_disk(tmp_path) <= 4 * ENTRY
    assert [current.get(n, BLOCK) == data(20 + n) for n in range(4)] == [True] * 4
    current.close()


@pytest.mark.parametrize("damage", [b"", b"12", "\u00b2".encode() * 10, b"x" * 20])
def test_a_damaged_usage_count_is_recounted_so_the_budget_holds(tmp_path: Path,
                                                                 damage: bytes) -> None:
    """A crash right after the count file was created leaves it empty: read as 0, the
    store would grow past its budget by what it already holds."""
    store = BlockStore(tmp_path, 2 * ENTRY)
    snap = store.open("snapshot:s1")
    assert snap is not None
    assert snap.put(0, data(0)) and snap.put(1, data(1))
    (tmp_path / ".usage").write_bytes(damage)
    assert not snap.put(2, data(2))  # recounted: 2 entries, the budget is full
    assert on_disk(tmp_path) == 2 * ENTRY
    snap.close()


def test_a_block_recorded_for_the_next_snapshot_is_a_link_and_costs_nothing(
        tmp_path: Path) -> None:
    store = BlockStore(tmp_path, 2 * ENTRY)
    parent, child = store.open("snapshot:s1"), store.open("snapshot:s2")
    assert parent is not None and child is not None
    assert parent.put(7, data(7)) and parent.put(8, data(8))
    assert child.link_from(parent, 7) and child.link_from(parent, 8)
    assert not child.link_from(parent, 9)  # the parent does not have it
    assert child.get(7, BLOCK) == data(7)
    assert on_disk(tmp_path) == 2 * ENTRY == int((tmp_path / ".usage").read_text())
    parent.close()
    child.close()
    # evicting the parent frees nothing the child still links; evicting both frees it all
    third = store.open("snapshot:s3")
    assert third is not None
    os.utime(parent.path / ".open", (1, 1))
    assert third.put(0, data(0))
    assert not parent.path.exists() and not child.path.exists()
    assert on_disk(tmp_path) == ENTRY == int((tmp_path / ".usage").read_text())
    third.close()


def _writer(root: str, budget: int, key: str, first: int, count: int) -> None:
    store = BlockStore(root, budget)
    snap = store.open(key)
    assert snap is not None
    for n in range(first, first + count):
        snap.put(n, data(n))
        got = snap.get(n, BLOCK)
        assert got is None or got == data(n)
    snap.close()


def test_processes_writing_at_once_keep_the_budget_and_whole_entries(tmp_path: Path) -> None:
    budget = 40 * ENTRY
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), budget, f"snapshot:s{i % 3}",
                                               (i % 2) * 20, 30)) for i in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0] * 6
    assert on_disk(tmp_path) <= budget
    assert on_disk(tmp_path) == int((tmp_path / ".usage").read_text())
    assert not list(tmp_path.rglob(".tmp-*"))
    store = BlockStore(tmp_path, budget)
    for sub in (p for p in tmp_path.iterdir() if p.is_dir()):
        for entry in sub.glob("*.blk"):
            n = int(entry.stem)
            assert entry.read_bytes()[HEADER.size:] == data(n)
    assert store.reserve(0)


def test_a_fork_never_inherits_the_stores_lock(tmp_path: Path) -> None:
    """A hash worker forked while another thread (the keeper) held the store's flock would
    hold it for as long as it lives: the fork waits until the holder leaves."""
    store = BlockStore(tmp_path / "kept", 1 << 30)
    (tmp_path / "kept").mkdir()
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with store._locked():
            entered.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(5)
    threading.Timer(0.3, leave.set).start()
    pid = os.fork()  # waits for the holder to leave its section
    if pid == 0:  # a worker that lives on, holding nothing
        time.sleep(3)
        os._exit(0)
    try:
        holder.join(5)
        done = threading.Event()
        threading.Thread(target=lambda: (store.reserve(10), done.set()), daemon=True).start()
        assert done.wait(2), "the store's lock is held by the forked child"
    finally:
        os.waitpid(pid, 0)
