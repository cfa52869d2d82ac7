#!/usr/bin/env python3
"""EBS snapshot reads: a full scan of the ~100k-entry benchmark image as an EBS snapshot, and
an incremental scan of a second snapshot in which 1% of the files changed, both through the
EBS direct APIs of a local server that adds 50 ms to every GetSnapshotBlock.

    python3 -m benchmarks.bench_ebs [--workdir /tmp/snapfim-bench-aws]
        [--image EXISTING-bench-ext4.img] [--entries 100000 --bytes 2200000000]
        [--pattern spread|clustered] [--latency 0.05] [--hash-workers 2] [--verify]
        [--full-only [--repeat N]]

(``--entries 20000 --bytes 440000000`` builds a fifth of the image, for a quicker run.)

Prints: MB/s of file data for the full scan (target >= 200 MB/s), blocks fetched by each scan
(target: incremental <= 5% of full), wall times, and the same full scan on the local file
(the floor). The 1% of files are changed in place (16 bytes at the start of the data, times
untouched: the forged-timestamp case), and the incremental scan must report exactly them.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytsk3

from benchmarks.bench_image import build_bench_image
from scanner.cloud.aws.ebs import EBS_CACHE, open_ebs
from scanner.cloud.aws.provider import AwsProvider
from scanner.incremental import ChangedRanges, Reuse, locator_key, mount_layout
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.base import follow_parent
from scanner.sources.cache import CacheStats
from scanner.sources.local import open_local
from tests.aws.fakeproc import FakeAwsProcess

REGION = "eu-west-1"
BLOCK_BYTES = 512 << 10
CHANGED_SHARE = 100  # one file in 100


def regular_files(image: Path) -> list[tuple[str, int, int]]:
    """(path, inode, byte offset of the first data run) of every regular file with data
    outside its inode, in walk order."""
    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(image)))
    block = fs.info.block_size
    out: list[tuple[str, int, int]] = []

    def walk(directory: Any, prefix: str) -> None:
        for entry in directory:
            name = entry.info.name.name.decode("utf-8", "replace")
            meta = entry.info.meta
            if name in (".", "..") or meta is None or name == "$OrphanFiles":
                continue
            path = f"{prefix}/{name}"
            if meta.type == pytsk3.TSK_FS_META_TYPE_DIR:
                walk(entry.as_directory(), path)
            elif meta.type == pytsk3.TSK_FS_META_TYPE_REG and meta.size >= 16:
                for attr in entry:
                    if int(attr.info.type) != int(pytsk3.TSK_FS_ATTR_TYPE_DEFAULT):
                        continue
                    runs = [r for r in attr if int(r.len) and not int(r.flags)]
                    if runs:
                        out.append((path, int(meta.addr), int(runs[0].addr) * block))
                    break

    walk(fs.open_dir("/"), "")
    return out


def change_files(image: Path, chosen: list[tuple[str, int, int]]) -> None:
    """Flip the first 16 bytes of each chosen file's data, in place (no metadata changes)."""
    with image.open("r+b") as handle:
        for _path, _inode, offset in chosen:
            handle.seek(offset)
            head = handle.read(16)
            handle.seek(offset)
            handle.write(bytes(b ^ 0x5A for b in head))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the hash workers), user + system:
    what a scan costs whatever else the machine runs."""
    return sum(cpu_split())


def cpu_split() -> tuple[float, float]:
    """CPU seconds of this process (the scanning one) and of its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


CPU: dict[str, float] = {}
SERVER_CPU: dict[str, float] = {}
SPLIT: dict[str, tuple[float, float]] = {}
IN_FLIGHT: list[Callable[[], float]] = []  # the local AWS's integral of calls in flight
FLIGHT: dict[str, float] = {}  # (scanning process, hash workers)
SERVER: list[Callable[[], float]] = []  # the local AWS's CPU seconds, when it has its process


def timed(label: str, run: Any) -> tuple[Any, float]:
    """Run ``run()``; print and record its wall, its CPU (this process and its finished
    children) and, apart, the local AWS server's CPU over the same time."""
    server = SERVER[0] if SERVER else None
    start, (own, kids) = time.perf_counter(), cpu_split()
    server_start = server() if server is not None else 0.0
    flight = IN_FLIGHT[0]() if IN_FLIGHT else 0.0
    result = run()
    wall = time.perf_counter() - start
    own_after, kids_after = cpu_split()
    CPU[label] = own_after - own + kids_after - kids
    SPLIT[label] = (own_after - own, kids_after - kids)
    served = ""
    if server is not None:
        SERVER_CPU[label] = server() - server_start
        served = f" (+ {SERVER_CPU[label]:.1f} s CPU in the local AWS's process)"
    if IN_FLIGHT:
        FLIGHT[label] = (IN_FLIGHT[0]() - flight) / wall
        served += f", {FLIGHT[label]:.1f} GetSnapshotBlock calls in flight on average"
    print(f"  {label}: {wall:.1f} s wall, {CPU[label]:.1f} s CPU{served} (load average "
          f"{os.getloadavg()[0]:.1f})", flush=True)
    return result, wall


def add_image_args(parser: argparse.ArgumentParser, workdir: Path) -> None:
    """The options of the two snapshot images and the scans, shared by the cloud benchmarks."""
    parser.add_argument("--workdir", type=Path, default=workdir)
    parser.add_argument("--image", type=Path, help="an existing benchmark image to copy")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=2_200_000_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--hash-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pattern", choices=("spread", "clustered"), default="spread",
                        help="which 1%% of the files change: one in every 100 (spread over "
                             "the disk) or 1%% consecutive in directory order (a package "
                             "upgrade)")
    parser.add_argument("--verify", action="store_true",
                        help="also scan the second snapshot in full and compare")


def prepare_images(args: argparse.Namespace
                   ) -> tuple[Path, Path, list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """The first snapshot's image (built, or copied from ``--image``), the second (a copy
    with 1% of the files changed in place), the regular files and the changed ones."""
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
    return first_image, second_image, files, chosen


def report_changes(full: ScanOutcome, incr: ScanOutcome, chosen: list[tuple[str, int, int]],
                   verify: Callable[[], ScanOutcome] | None = None) -> None:
    """Print whether the incremental scan found the changed files and, with ``verify`` (a
    full scan of the second snapshot), whether it equals that scan entity for entity."""
    changed_paths = {p for p, e in incr.entities.items()
                     if p in full.entities and e.sha256 != full.entities[p].sha256}
    expected = {path for path, _inode, _offset in chosen}
    print(f"files whose digest changed: {len(changed_paths)}; the {len(expected)} changed "
          f"files all among them: {expected <= changed_paths} (more: hard links)")
    if verify is not None:
        check, _ = timed("full scan of snapshot 2 (verification)", verify)
        same = ({p: e.values() for p, e in check.entities.items()}
                == {p: e.values() for p, e in incr.entities.items()})
        print(f"incremental == full scan of snapshot 2: {same}")


CACHE: dict[str, Any] = {}
THREADS: dict[str, dict[str, float]] = {}  # CPU seconds per thread role of each snapshot's scan


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's live threads so far, by role: the
    thread's name without its number (MainThread: the walk; snapfim-fetch: the fetches;
    snapfim-keep: the kept blocks' writer)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        role = re.sub(r"[-_]?\d+$", "", names.get(int(tid), "other"))
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def ebs_locator(snapshot: str) -> dict[str, Any]:
    return {"kind": "ebs", "snapshot": snapshot, "region": REGION}


def scan_snapshot(snapshot: str, policy: list[Any], workers: int,
                  reuse: Reuse | None = None, read_ahead: int | None = None,
                  parent: tuple[str, list[tuple[int, int]]] | None = None) -> ScanOutcome:
    """One scan of an EBS snapshot; ``parent``: the parent snapshot and the changed ranges
    the source is told (its kept blocks serve the rest), as an incremental scan does."""
    locator = ebs_locator(snapshot)
    if CACHE or read_ahead:
        locator["cache"] = {**EBS_CACHE.as_dict(), **CACHE}
        if read_ahead:
            locator["cache"]["read_ahead"] = read_ahead
    before = thread_cpu()
    source = open_ebs(locator)
    try:
        if parent is not None:
            follow_parent(source, ebs_locator(parent[0]), parent[1])
        if reuse is not None:
            changed = reuse.changed.pop("pending")
            reuse.changed[locator_key(source.locator)] = changed
        return scan_source(source, policy, ScanOptions(workers, reuse=reuse))
    finally:
        STATS[snapshot] = source.stats
        THREADS[snapshot] = {role: cpu - before.get(role, 0.0)
                             for role, cpu in thread_cpu().items()}
        source.close()


STATS: dict[str, CacheStats] = {}


def report_full(full: ScanOutcome, wall: float, blocks: int, snapshot: str) -> None:
    """Print the full scan's MB/s, its client CPU per GB fetched and that CPU's split."""
    label = "full scan of snapshot 1 through EBS"
    data = full.coverage.bytes_hashed
    cpu = CPU[label]
    served = blocks * BLOCK_BYTES
    print(f"full scan:        {wall:6.1f} s  {data / 1e6 / wall:7.0f} MB/s of file "
          f"data ({data / 1e9:.2f} GB, {full.coverage.entities} entities), "
          f"{served / 1e6 / wall:.0f} MB/s of blocks fetched ({blocks}) "
          f"(target >= 200 MB/s)")
    own, kids = SPLIT[label]
    print(f"  client CPU (scanning process {own:.1f} s + hash workers {kids:.1f} s): "
          f"{cpu:.1f} s = {cpu / max(served / 1e9, 1e-9):.1f} s per GB fetched; local AWS "
          f"process: {SERVER_CPU[label]:.1f} s")
    roles = THREADS[snapshot]
    named = {"MainThread": "walk (main thread)", "snapfim-fetch": "fetch threads",
             "snapfim-keep": "kept-block writer"}
    split = ", ".join(f"{name} {roles.get(role, 0.0):.1f} s" for role, name in named.items())
    print(f"  scanning process by thread: {split}, other threads and ended ones "
          f"{own - sum(roles.get(role, 0.0) for role in named):.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_args(parser, Path("/tmp/snapfim-bench-aws"))
    parser.add_argument("--read-ahead", type=int, help="blocks (default: EBS_CACHE's)")
    parser.add_argument("--threads", type=int, help="fetch threads (default: EBS_CACHE's)")
    parser.add_argument("--cache-mib", type=int, help="cache size (default: EBS_CACHE's)")
    parser.add_argument("--incremental-read-ahead", type=int,
                        help="read-ahead of the incremental scan only (blocks)")
    parser.add_argument("--keep-mib", type=int, default=4096,
                        help="budget of the blocks kept between scans (0: none kept)")
    parser.add_argument("--keep-content", action="store_true",
                        help="keep streamed file contents too (SNAPFIM_BLOCK_CACHE_CONTENT=1)")
    parser.add_argument("--full-only", action="store_true",
                        help="only the full scan through EBS (for profiling)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --full-only: the full scan this many times, one after "
                             "the other (nothing kept between them)")
    args = parser.parse_args(argv)
    keep_dir = args.workdir / "kept-blocks"
    shutil.rmtree(keep_dir, ignore_errors=True)
    os.environ["SNAPFIM_BLOCK_CACHE_DIR"] = str(keep_dir)
    os.environ["SNAPFIM_BLOCK_CACHE_BYTES"] = str(args.keep_mib << 20)
    os.environ["SNAPFIM_BLOCK_CACHE_CONTENT"] = "1" if args.keep_content else "0"
    for key, value in (("read_ahead", args.read_ahead), ("threads", args.threads),
                       ("cache_bytes", args.cache_mib and args.cache_mib << 20)):
        if value:
            CACHE[key] = value
    first_image, second_image, files, chosen = prepare_images(args)
    size_gib = -(-first_image.stat().st_size // (1 << 30))

    server = FakeAwsProcess().start()
    SERVER.append(server.cpu_seconds)
    IN_FLIGHT.append(lambda: float(server.call("in_flight")))
    os.environ.update(server.environment())
    try:
        ec2 = boto3.client("ec2", region_name=REGION)
        volume = ec2.create_volume(Size=size_gib, AvailabilityZone=f"{REGION}a")["VolumeId"]
        server.call("seed_volume", volume, str(first_image), size_gib, False)
        snap1 = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
        server.call("seed_volume", volume, str(second_image), size_gib, False)
        snap2 = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
        server.call("set_latency", args.latency)
        written = server.call("written", snap1)
        policy = [make_entity("/", name="everything")]
        print(f"image {first_image} ({first_image.stat().st_size / 2**30:.2f} GiB, "
              f"{written} written 512 KiB blocks), {len(files)} regular files with data, "
              f"{len(chosen)} changed ({args.pattern}); "
              f"{args.latency * 1000:.0f} ms per GetSnapshotBlock (local AWS in its own "
              f"process, pid {server.pid}); {args.hash_workers} hashing processes; "
              f"cache {EBS_CACHE.as_dict() | CACHE}", flush=True)

        if not args.full_only:
            with open_local(first_image) as local:
                floor, floor_wall = timed("full scan of the local file (floor)",
                                          lambda: scan_source(local, policy,
                                                              ScanOptions(args.hash_workers)))
        for repeat in range(args.repeat if args.full_only else 1):
            if repeat:  # the same scan again: nothing kept from the last one
                shutil.rmtree(keep_dir, ignore_errors=True)
            before = server.call("counts").get(snap1, 0)
            full, full_wall = timed("full scan of snapshot 1 through EBS",
                                    lambda: scan_snapshot(snap1, policy, args.hash_workers))
            full_blocks = server.call("counts").get(snap1, 0) - before
            report_full(full, full_wall, full_blocks, snap1)
        if args.full_only:
            print(f"  the scanning process's cache: {STATS[snap1]}")
            return 0
        data = full.coverage.bytes_hashed
        full_cpu = CPU["full scan of snapshot 1 through EBS"]
        print(f"local file floor: {floor_wall:6.1f} s  {data / 1e6 / floor_wall:7.0f} MB/s "
              f"({floor.coverage.entities} entities), "
              f"{CPU['full scan of the local file (floor)']:.1f} s CPU")
        ranges = AwsProvider({}).changed_ranges(
            {"kind": "ebs", "snapshot": snap1, "region": REGION},
            {"kind": "ebs", "snapshot": snap2, "region": REGION})
        assert ranges is not None
        changed = ChangedRanges(ranges)
        # the floor: changed blocks written in snapshot 2 (a changed block now unwritten is
        # read as zeros without a call) must be fetched whatever was kept
        floor_blocks = server.call("changed_written", snap1, snap2)
        layout = mount_layout((v.volume, v.mountpoint, v.uuid) for v in full.coverage.volumes)
        reuse = Reuse(full.entities, {"pending": changed}, layout)
        incr, incr_wall = timed("incremental scan of snapshot 2 through EBS",
                                lambda: scan_snapshot(snap2, policy, args.hash_workers, reuse,
                                                      args.incremental_read_ahead,
                                                      (snap1, ranges)))
        incr_blocks = server.call("counts").get(snap2, 0)
        share = 100 * incr_blocks / max(full_blocks, 1)
        print(f"incremental scan: {incr_wall:6.1f} s  {incr_blocks} blocks fetched = "
              f"{share:.1f}% of the full scan's (target <= 5%); "
              f"{reuse.reused} files kept their digest, {incr.coverage.files_hashed} hashed "
              f"({incr.coverage.bytes_hashed / 1e6:.0f} MB); wall "
              f"{100 * incr_wall / full_wall:.0f}% of the full scan's")
        print(f"  physical floor: ListChangedBlocks names {changed.bytes // BLOCK_BYTES} "
              f"changed blocks, {floor_blocks} of them written in snapshot 2 (they must be "
              f"fetched) = {100 * floor_blocks / max(full_blocks, 1):.1f}% of the full "
              f"scan's; measured {share:.1f}%, {incr_blocks - floor_blocks} blocks above "
              f"the floor")
        incr_cpu = CPU["incremental scan of snapshot 2 through EBS"]
        print(f"client CPU: full {full_cpu:.1f} s, incremental {incr_cpu:.1f} s = "
              f"{100 * incr_cpu / max(full_cpu, 1e-9):.0f}%; MB/s of file data per client CPU "
              f"second, full scan: {data / 1e6 / max(full_cpu, 1e-9):.0f}")
        kept = sum(size for _ino, size in {(f.stat().st_ino, f.stat().st_size)
                                           for f in keep_dir.rglob("*.blk")})
        stats1, stats2 = STATS[snap1], STATS[snap2]
        print(f"blocks kept between scans: {stats1.kept} by the full scan, {stats2.kept} more "
              f"by the incremental one; {kept / 1e6:.0f} MB on disk "
              f"(budget {args.keep_mib} MiB); served from snapshot 1's kept blocks in the "
              f"incremental scan: {stats2.parent_hits}")

        def verification() -> ScanOutcome:  # every block fetched: none served from kept blocks
            os.environ["SNAPFIM_BLOCK_CACHE_BYTES"] = "0"
            return scan_snapshot(snap2, policy, args.hash_workers)

        report_changes(full, incr, chosen, verification if args.verify else None)
    finally:
        server.stop()
        if args.image is not None:
            shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
