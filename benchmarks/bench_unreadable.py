"""Unreadable paths in the diff: N files whose state could not be read this time.

Issue 9, item 11: when N files become unreadable (their xattrs, say), each of them is a path
present before and absent now, and each must be checked against the N unreadable paths
("unreadable is not removed"). Done pairwise this was quadratic (40,000 files: 111 s; 200,000:
about 3 h). :class:`scanner.paths.WithinAny` looks each gone path's ancestors up in a set.

Two figures per size: the pure in-memory diff (:func:`scanner.diff.diff_files`) and the whole
set-based SQL diff on SQLite (:meth:`Repository.commit_scan`, staging included). Every path
must be kept (no ``removed`` event, no delete); this is asserted.

    python3 -m benchmarks.bench_unreadable [--sizes 40000,200000] [--naive]

``--naive`` also times the old pairwise check on a tenth of the paths, for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from scanner.diff import diff_files
from scanner.entities import FileEntity
from scanner.paths import is_within
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository

POLICY = "/srv"


def entities(n: int) -> list[FileEntity]:
    """``n`` files under ``/srv``, 500 per directory."""
    return [FileEntity(f"/srv/d{i // 500:04d}/f{i:06d}", "file", 10, 0o644, 0, 0, 1, 1, 1, 1,
                       inode=i + 12, nlink=1, sha256=f"{i:064x}", policies=(POLICY,))
            for i in range(n)]


def bench_memory(n: int) -> float:
    before = {e.path: e for e in entities(n)}
    start = time.perf_counter()
    diff = diff_files(before, {}, previous_policies=[POLICY], current_policies=[POLICY],
                      unreadable=list(before))
    took = time.perf_counter() - start
    assert diff.events == [] and diff.deletes == [] and diff.kept_unreadable == n
    return took


def bench_naive(n: int) -> float:
    paths = [e.path for e in entities(n)]
    start = time.perf_counter()
    kept = sum(1 for p in paths if any(is_within(p, u) for u in paths))
    took = time.perf_counter() - start
    assert kept == n
    return took


def bench_sqlite(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        upgrade(engine)
        repo = Repository(engine)
        now = datetime.now(UTC)
        common = dict(started_at=now, finished_at=now, source={}, coverage={},
                      policies=[POLICY])
        with repo.transaction() as conn:
            machine = repo.machine_id(conn, "bench", create=True)
            repo.commit_scan(conn, machine, entities=entities(n), unreadable=[],
                             previous=None, status="succeeded", **common)  # type: ignore[arg-type]
        with repo.transaction() as conn:
            previous = repo.previous_scan(conn, machine)
            unreadable = [e.path for e in entities(n)]
            start = time.perf_counter()
            _, diff = repo.commit_scan(conn, machine, entities=[], unreadable=unreadable,
                                       previous=previous, status="partial",
                                       **common)  # type: ignore[arg-type]
            took = time.perf_counter() - start
        assert diff.events == [] and diff.deletes == [] and diff.kept_unreadable == n
        engine.dispose()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="40000,200000")
    parser.add_argument("--naive", action="store_true")
    args = parser.parse_args()
    print(f"{'unreadable files':>17} | {'in-memory diff':>14} | {'commit_scan, SQLite':>19}"
          + (" | naive pairwise, n/10" if args.naive else ""))
    for n in (int(s) for s in args.sizes.split(",")):
        row = f"{n:>17,} | {bench_memory(n):>12.3f} s | {bench_sqlite(n):>17.3f} s"
        if args.naive:
            row += f" | {bench_naive(n // 10):.2f} s for {n // 10:,}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
