"""XFS benchmark: scan_source over the ~100k-entry benchmark tree as XFS, beside the ext4 image.

The tree and the ext4 image come from ``bench_image.py`` (``WORKDIR/tree``,
``WORKDIR/bench-ext4.img``); the XFS image ``WORKDIR/bench-xfs.img`` is built once from the
same tree with ``mkfs.xfs -p`` (a generated protofile; names and symlink targets a protofile
cannot hold are left out and counted, hard links become copies, owners 0:0) and reused while
its marker matches, and copied as the only logical volume of an LVM2 PV
(``WORKDIR/bench-xfs-lvm.img``): the bare image is read by libfsxfs from its path, the LV
through a file object over the block source. Each image is scanned in-process with
``scan_source`` and a policy of ``/`` (recursive), with 1 hash worker and with
``--hash-workers``; each configuration runs twice and the faster (page-cache warm) run is
printed: entries/s and MB/s hashed.

    python3 -m benchmarks.bench_xfs [--workdir /tmp/snapfim-bench] [--hash-workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_image import TREE_DIR, build_bench_image, load_bench_info
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import make_entity
from scanner.sources.local import open_local
from tests.imaging.lvm import lvm_fill, lvm_linear, lvm_pv
from tests.imaging.xfs import xfs_protofile

XFS_IMAGE = "bench-xfs.img"
LVM_IMAGE = "bench-xfs-lvm.img"
XFS_MARKER = "bench-xfs.json"
XFS_VERSION = 2
EXTENT = 4 << 20


def build_xfs_image(workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Build (or reuse) ``workdir/bench-xfs.img`` from ``workdir/tree``."""
    image = workdir / XFS_IMAGE
    marker_path = workdir / XFS_MARKER
    source = {"version": XFS_VERSION, "tree": load_bench_info(workdir)}
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError):
        marker = {}
    if image.exists() and (workdir / LVM_IMAGE).exists() and marker.get("source") == source:
        return image, marker
    tree = workdir / TREE_DIR
    skipped: list[str] = []
    start = time.perf_counter()
    proto, _ = xfs_protofile(tree, skipped=skipped, copy_hard_links=True)
    used = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file() and not f.is_symlink())
    size = max(1 << 30, int(used * 1.6)) // (1 << 20) << 20
    with tempfile.TemporaryDirectory() as tmp:
        proto_path = Path(tmp) / "proto"
        proto_path.write_bytes(proto)
        image.unlink(missing_ok=True)
        with image.open("wb") as fh:
            fh.truncate(size)
        subprocess.run(["mkfs.xfs", "-q", "-f", "-p", str(proto_path), str(image)], check=True)
    # the same filesystem as the only LV of a whole-disk LVM2 PV (extents start at 1 MiB)
    lvm = workdir / LVM_IMAGE
    lvm.unlink(missing_ok=True)
    extents = -(-size // EXTENT)
    with lvm.open("wb") as fh:
        fh.truncate((1 << 20) + extents * EXTENT)
    pv = lvm_pv(lvm, 0, (1 << 20) + extents * EXTENT, "benchvg",
                [lvm_linear("root", [(0, extents)])])
    lvm_fill(lvm, pv, [(0, extents)], image)
    marker = {"source": source, "skipped": len(skipped), "skipped_examples": skipped[:10],
              "size": size, "build_s": round(time.perf_counter() - start, 1)}
    marker_path.write_text(json.dumps(marker, indent=2) + "\n")
    return image, marker


def timed_scan(image: Path, workers: int, runs: int = 2) -> dict[str, Any]:
    """The fastest of ``runs`` in-process scans of ``image`` with a policy of ``/``."""
    best: dict[str, Any] | None = None
    for _ in range(runs):
        start = time.perf_counter()
        with open_local(image) as source:
            outcome = scan_source(source, [make_entity("/")], ScanOptions(hash_workers=workers))
        wall = time.perf_counter() - start
        result = {"wall_s": wall, "entities": outcome.coverage.entities,
                  "bytes": outcome.coverage.bytes_hashed, "files": outcome.coverage.files_hashed,
                  "unreadable": len(outcome.coverage.unreadable),
                  "fs": [v.filesystem for v in outcome.coverage.volumes]}
        if best is None or wall < best["wall_s"]:
            best = result
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench"))
    parser.add_argument("--hash-workers", type=int, default=min(os.cpu_count() or 1, 4))
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)

    ext4 = build_bench_image(args.workdir, quiet=True)
    xfs, marker = build_xfs_image(args.workdir)
    print(f"tree: {args.workdir / TREE_DIR}; XFS image {xfs} ({marker['size'] / 2**30:.2f} GiB, "
          f"built in {marker['build_s']} s); {marker['skipped']} entries left out of the "
          f"protofile (whitespace, ':' or '$' in the name or symlink target; sockets), "
          "hard links copied")
    for workers in sorted({1, args.hash_workers}):
        for name, image in (("ext4", ext4), ("xfs", xfs),
                            ("xfs in LVM", args.workdir / LVM_IMAGE)):
            r = timed_scan(image, workers, args.runs)
            print(f"{name:10} hash_workers={workers}: {r['entities']:7,} entities "
                  f"{r['files']:6,} files {r['bytes'] / 1e6:8,.0f} MB in {r['wall_s']:6.2f} s  "
                  f"{r['entities'] / r['wall_s']:8,.0f} entries/s "
                  f"{r['bytes'] / 1e6 / r['wall_s']:6,.0f} MB/s"
                  + (f"  ({r['unreadable']} unreadable)" if r["unreadable"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
