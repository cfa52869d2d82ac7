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
from pathlib import Path
from typing import Any

from benchmarks.bench_ebs import add_image_args, prepare_images, report_changes, timed
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
    add_image_args(parser, Path("/tmp/snapfim-bench-azure"))
    parser.add_argument("--read-ahead", type=int, help="blocks (default: AZURE_CACHE's)")
    parser.add_argument("--threads", type=int, help="fetch threads (default: AZURE_CACHE's)")
    args = parser.parse_args(argv)
    values = AZURE_CACHE.as_dict()
    if args.read_ahead:
        values["read_ahead"] = args.read_ahead
    if args.threads:
        values["threads"] = args.threads
    cache = CacheSettings.from_dict(values)

    first_image, second_image, files, chosen = prepare_images(args)

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
        report_changes(full, incr, chosen, (lambda: scan_blob(
            second, policy, args.hash_workers, cache)) if args.verify else None)
    finally:
        blobs.stop()
        if args.image is not None:
            shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
