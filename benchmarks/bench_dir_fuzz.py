"""Directory fuzz, the long run: one-byte corruptions of ext4 and XFS directory data.

The same rule as ``tests/disk/test_dir_fuzz.py`` (no traceback; no path missing from a
``succeeded`` scan unless it is really gone from a consistent directory), over more seeds and
cases. Prints, per filesystem, the cases run, the statuses, the failures and the time.

    python3 -m benchmarks.bench_dir_fuzz [--cases 500] [--seeds 1,2,3] [--fs ext4,xfs]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.disk import dirfuzz
from tests.imaging.ext4 import linux_image
from tests.imaging.trees import linux_tree
from tests.imaging.xfs import build_xfs_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--fs", default="ext4,xfs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for fs in args.fs.split(","):
            if fs == "ext4":
                image = linux_image(work / "ext4")
                targets = dirfuzz.ext_targets(image, work / "ext4" / "src")
                gone, refresh = dirfuzz.ext_really_gone, dirfuzz.ext_refresh
            else:
                src = linux_tree(work / "xfs-src")
                for n in range(40):
                    (src / "usr/lib" / f"lib{n:02d}.so").write_bytes(b"x")
                image = build_xfs_tree(src, work / "xfs.img")
                targets = dirfuzz.xfs_targets(image, src)
                gone, refresh = dirfuzz.xfs_really_gone, dirfuzz.xfs_refresh
            for seed in (int(s) for s in args.seeds.split(",")):
                for mode, fix in (("as corrupted", None), ("checksums recomputed", refresh)):
                    start = time.perf_counter()
                    failures, statuses = dirfuzz.fuzz(image, targets, seed, args.cases, work,
                                                      gone, fix)
                    took = time.perf_counter() - start
                    print(f"{fs} seed {seed}, {mode}: {args.cases} cases in {took:.1f} s, "
                          f"{statuses}, {len(failures)} failures", flush=True)
                    for failure in failures:
                        print("  " + failure)


if __name__ == "__main__":
    main()
