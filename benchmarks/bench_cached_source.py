"""Caching-layer benchmark: a full ``scan_source`` of the ~100k-entry image read through
:class:`~scanner.sources.cache.CachedSource` over a store that adds 20 ms per 512 KiB block,
against the same scan of the local file.

The image comes from ``bench_image.py`` (built once, reused). The slow store is a
:class:`~scanner.sources.cache.FileFetcher` over the image with ``delay=0.02``; hash workers
reopen it from its ``file-blocks`` locator, each with its own cache. Prints wall time and
MB/s of file data hashed (the fastest of ``--runs`` interleaved runs of each), the ratio to
the local scan (target: at least 0.5), the scanning process's cache counters (blocks
fetched, of which read ahead, hits, peak cached bytes) and peak RSS.

    python3 -m benchmarks.bench_cached_source [--workdir /tmp/snapfim-bench] [--hash-workers N]
        [--delay 0.02] [--read-ahead 32] [--threads 32] [--cache-mib 64]

(the defaults are :class:`~scanner.sources.cache.CacheSettings`'s).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_image import build_bench_image
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import make_entity
from scanner.sources.base import BlockSource
from scanner.sources.cache import BLOCK_SIZE, CachedSource, CacheSettings, FileFetcher
from scanner.sources.local import open_local


def timed(source: BlockSource, workers: int) -> dict[str, Any]:
    """One full scan with a policy of ``/`` (recursive): wall time and what was hashed."""
    start = time.perf_counter()
    outcome = scan_source(source, [make_entity("/")], ScanOptions(hash_workers=workers))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "entities": outcome.coverage.entities,
            "bytes": outcome.coverage.bytes_hashed, "status": outcome.coverage.status,
            "digests": {p: e.sha256 for p, e in outcome.entities.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench"))
    parser.add_argument("--hash-workers", type=int, default=min(os.cpu_count() or 1, 4))
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per block fetch")
    defaults = CacheSettings()
    parser.add_argument("--read-ahead", type=int, default=defaults.read_ahead, help="blocks")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="fetches at once")
    parser.add_argument("--cache-mib", type=int, default=defaults.cache_bytes >> 20)
    parser.add_argument("--runs", type=int, default=2, help="of each scan, the fastest kept")
    args = parser.parse_args(argv)

    image = build_bench_image(args.workdir, quiet=True)
    subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)  # warm cache
    settings = CacheSettings(cache_bytes=args.cache_mib << 20, read_ahead=args.read_ahead,
                             threads=args.threads)
    direct: dict[str, Any] = {}
    through: dict[str, Any] = {}
    with open_local(image) as local:
        for _ in range(args.runs):  # interleaved, so a busy spell hits both alike
            run = timed(local, args.hash_workers)
            if not direct or run["wall_s"] < direct["wall_s"]:
                direct = run
            cached = CachedSource(FileFetcher(local, BLOCK_SIZE, delay=args.delay), settings)
            run = timed(cached, args.hash_workers)
            run["stats"] = cached.stats
            cached.close()
            if not through or run["wall_s"] < through["wall_s"]:
                through = run
    stats = through["stats"]
    assert through["digests"] == direct["digests"], "the cached scan must equal the direct one"
    rss = max(resource.getrusage(who).ru_maxrss
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(f"image: {image} ({image.stat().st_size / 2**30:.2f} GiB), {direct['entities']:,} "
          f"entities, {direct['bytes'] / 1e6:,.0f} MB hashed; {args.hash_workers} hashing "
          f"processes; store: {args.delay * 1000:.0f} ms per {BLOCK_SIZE >> 10} KiB block; "
          f"cache {args.cache_mib} MiB, read-ahead {args.read_ahead} blocks, "
          f"{args.threads} fetch threads (per process)")
    for name, run in (("local file", direct), ("CachedSource over the slow store", through)):
        print(f"{name:34s} {run['wall_s']:7.2f} s  {run['bytes'] / 1e6 / run['wall_s']:7,.0f} "
              f"MB/s hashed  {run['entities'] / run['wall_s']:9,.0f} entries/s  "
              f"({run['status']})")
    print(f"cached / local speed: {direct['wall_s'] / through['wall_s']:.2f} (target >= 0.5)")
    print(f"scanning process's cache: {stats.fetched:,} blocks fetched "
          f"({stats.fetched * BLOCK_SIZE / 1e6:,.0f} MB, {stats.read_ahead:,} read ahead), "
          f"{stats.hits:,} hits, {stats.waits:,} waits, {stats.retries} retries, peak "
          f"{stats.peak_bytes / 2**20:.1f} MiB cached; peak RSS {rss:.0f} MiB (any process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
