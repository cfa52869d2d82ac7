#!/usr/bin/env python3
"""Azure snapshot reads: a full scan of the benchmark image as a managed-disk snapshot (a page
blob holding a fixed VHD, read through its SAS URL), and an incremental scan of a second
snapshot in which 1% of the files changed (the changed ranges from the managed-disk
page-range diff), both through Azurite over TLS behind the tests' front, which adds 50 ms to
every ranged read. The same figures as :mod:`benchmarks.bench_ebs`.

    python3 -m benchmarks.bench_azure [--workdir /tmp/snapfim-bench-azure]
        [--image EXISTING-bench-ext4.img] [--entries 100000 --bytes 2200000000]
        [--pattern spread|clustered] [--latency 0.05] [--hash-workers 2] [--verify]

(``--entries 20000 --bytes 440000000`` builds a fifth of the image, for a quicker run; the
images are held in Azurite's memory, twice.) Needs Azurite (scripts/setup.sh).

Prints: MB/s of file data for the full scan, ranged reads of each scan (target: incremental
<= 5% of full), wall times, and the same full scan on the local file (the floor).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.bench_ebs import CHANGED_SHARE, change_files, regular_files, timed
from benchmarks.bench_image import build_bench_image
from scanner.cloud.azure.pageblob import AZURE_CACHE, BLOCK_SIZE, open_sas_url, page_range_diff
from scanner.incremental import ChangedRanges, Reuse, locator_key, mount_layout
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.cache import CacheSettings
from scanner.sources.local import open_local
from tests.azure.azurite import AzureBlobs
from tests.azure.tls import make_test_ca


def scan_blob(url: str, policy: list[Any], workers: int, cache: CacheSettings,
              reuse: Reuse | None = None) -> ScanOutcome:
    """One scan of a snapshot's SAS URL (``reuse``'s pending changed ranges keyed to it)."""
    source = open_sas_url(url, cache=cache)
    try:
        if reuse is not None:
            reuse.changed[locator_key(source.locator)] = reuse.changed.pop("pending")
        return scan_source(source, policy, ScanOptions(workers, reuse=reuse))
    finally:
        source.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench-azure"))
    parser.add_argument("--image", type=Path, help="an existing benchmark image to copy")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=2_200_000_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--hash-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pattern", choices=("spread", "clustered"), default="spread",
                        help="which 1%% of the files change: one in every 100, or 1%% "
                             "consecutive in directory order")
    parser.add_argument("--verify", action="store_true",
                        help="also scan the second snapshot in full and compare")
    parser.add_argument("--read-ahead", type=int, help="blocks (default: AZURE_CACHE's)")
    parser.add_argument("--threads", type=int, help="fetch threads (default: AZURE_CACHE's)")
    args = parser.parse_args(argv)
    values = AZURE_CACHE.as_dict()
    if args.read_ahead:
        values["read_ahead"] = args.read_ahead
    if args.threads:
        values["threads"] = args.threads
    cache = CacheSettings.from_dict(values)

    args.workdir.mkdir(parents=True, exist_ok=True)
    first_image = args.workdir / "snapshot-1.img"
    if args.image is not None:
        if not first_image.exists():
            subprocess.run(["cp", "--sparse=always", str(args.image), str(first_image)],
                           check=True)
    else:
        first_image = build_bench_image(args.workdir, args.entries, args.bytes)
    second_image = args.workdir / "snapshot-2.img"
    subprocess.run(["cp", "--sparse=always", str(first_image), str(second_image)], check=True)
    files = regular_files(first_image)
    count = max(1, len(files) // CHANGED_SHARE)
    start = len(files) // 3
    chosen = (files[::CHANGED_SHARE] if args.pattern == "spread"
              else files[start:start + count])
    change_files(second_image, chosen)

    ca = make_test_ca(args.workdir / "tls")
    os.environ.update(ca.environment())
    blobs = AzureBlobs(ca, args.workdir / "azurite")
    try:
        _, upload_wall = timed("uploading both snapshots to Azurite", lambda: (
            blobs.upload_disk("snapshot-1", first_image, lineage="disk"),
            blobs.upload_disk("snapshot-2", second_image, lineage="disk")))
        first, second = blobs.sas_url("snapshot-1"), blobs.sas_url("snapshot-2")
        blobs.state.latency = args.latency
        policy = [make_entity("/", name="everything")]
        print(f"image {first_image} ({first_image.stat().st_size / 2**30:.2f} GiB), "
              f"{len(files)} regular files with data, {len(chosen)} changed ({args.pattern}); "
              f"{args.latency * 1000:.0f} ms per ranged read; read-ahead {cache.read_ahead} "
              f"blocks, {cache.threads} threads; {args.hash_workers} hashing processes",
              flush=True)

        with open_local(first_image) as local:
            floor, floor_wall = timed("full scan of the local file (floor)", lambda: scan_source(
                local, policy, ScanOptions(args.hash_workers)))
        full, full_wall = timed("full scan of snapshot 1 through its SAS URL",
                                lambda: scan_blob(first, policy, args.hash_workers, cache))
        full_reads = blobs.state.block_reads.get(blobs.blob_path("snapshot-1"), 0)
        blobs.state.latency = 0.0
        ranges, diff_wall = timed("page-range diff (1 GiB windows)",
                                  lambda: page_range_diff(first, second))
        blobs.state.latency = args.latency
        layout = mount_layout((v.volume, v.mountpoint, v.uuid) for v in full.coverage.volumes)
        reuse = Reuse(full.entities, {"pending": ChangedRanges(ranges)}, layout)
        incr, incr_wall = timed("incremental scan of snapshot 2 through its SAS URL",
                                lambda: scan_blob(second, policy, args.hash_workers, cache,
                                                  reuse))
        incr_reads = blobs.state.block_reads.get(blobs.blob_path("snapshot-2"), 0)
        changed_paths = {p for p, e in incr.entities.items()
                         if p in full.entities and e.sha256 != full.entities[p].sha256}
        expected = {path for path, _inode, _offset in chosen}
        data = full.coverage.bytes_hashed
        changed_bytes = sum(length for _, length in ranges)
        print(f"upload:           {upload_wall:6.1f} s (setup, not a figure)")
        print(f"full scan:        {full_wall:6.1f} s  {data / 1e6 / full_wall:7.0f} MB/s of file "
              f"data ({data / 1e9:.2f} GB, {full.coverage.entities} entities)  "
              f"{full_reads} ranged reads (one footer read per open included)")
        print(f"local file floor: {floor_wall:6.1f} s  {data / 1e6 / floor_wall:7.0f} MB/s "
              f"({floor.coverage.entities} entities)")
        print(f"page-range diff:  {diff_wall:6.1f} s  {len(ranges)} ranges, "
              f"{changed_bytes / 1e6:.1f} MB changed (~{changed_bytes / BLOCK_SIZE:.0f} blocks' "
              "worth)")
        print(f"incremental scan: {incr_wall:6.1f} s  {incr_reads} ranged reads = "
              f"{100 * incr_reads / max(full_reads, 1):.1f}% of the full scan's (target <= 5%); "
              f"{reuse.reused} files kept their digest, {incr.coverage.files_hashed} hashed "
              f"({incr.coverage.bytes_hashed / 1e6:.0f} MB); wall "
              f"{100 * incr_wall / full_wall:.0f}% of the full scan's")
        print(f"files whose digest changed: {len(changed_paths)}; the {len(expected)} changed "
              f"files all among them: {expected <= changed_paths} (more: hard links)")
        if args.verify:
            check, _ = timed("full scan of snapshot 2 (verification)",
                             lambda: scan_blob(second, policy, args.hash_workers, cache))
            same = ({p: e.values() for p, e in check.entities.items()}
                    == {p: e.values() for p, e in incr.entities.items()})
            print(f"incremental == full scan of snapshot 2: {same}")
    finally:
        blobs.stop()
        if args.image is not None:
            shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
