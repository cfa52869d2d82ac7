"""Fuzz the scanner with corrupted disks and print the outcomes per target.

    python3 -m benchmarks.fuzz_disks                       # 300 seeds of each target
    python3 -m benchmarks.fuzz_disks --seeds 1000 --targets ext4,xfs
    python3 -m benchmarks.fuzz_disks --targets hive --first 40 --seeds 1 --keep /tmp/case

Every case is deterministic in (target, seed) (tests/fuzzing.py, tests/fuzz_targets.py): the
same seed corrupts the same bytes on any machine, so a violating seed printed here is a
reproduction. ``--keep DIR`` writes the corrupted disk and the baseline database of each
violating case to DIR and prints the command that reproduces it. The CI test
(tests/disk/test_fuzz.py) runs the first seeds of each target; this script runs more.
Outcomes: ok (exit 0, succeeded), partial (exit 0, partial), failed (a one-line error),
VIOLATION (traceback, time or memory bound, several error lines, or a ``removed`` event of a
succeeded scan that the independent checker does not confirm).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.fuzz_targets import TARGETS, TargetSet, run_case
from tests.fuzzing import MACHINE, Outcome, ScanServer, fresh_database


def main() -> int:
    """Run the cases and print the table; exit 1 when any case is a violation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seeds", type=int, default=300, help="cases per target")
    parser.add_argument("--first", type=int, default=0, help="first seed")
    parser.add_argument("--keep", type=Path, help="write violating cases here")
    parser.add_argument("--quiet", action="store_true", help="only the table")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    names = tuple(n for n in args.targets.split(",") if n)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    rows = []
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="snapfim-fuzz-", dir=shm) as tmp, \
            ScanServer(Path(tmp) / "io") as server:
        started = time.monotonic()
        built = TargetSet(Path(tmp) / "targets", server)
        targets = {name: built.get(name) for name in names}
        print(f"built {len(targets)} targets and their baselines in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        for name in names:
            target = targets[name]
            outcomes: list[Outcome] = []
            began = time.monotonic()
            for seed in range(args.first, args.first + args.seeds):
                outcome = run_case(server, target, seed, Path(tmp) / "cases")
                outcomes.append(outcome)
                if args.verbose or (outcome.violation and not args.quiet):
                    print(outcome.describe(), flush=True)
                if outcome.violation and args.keep:
                    keep(target, seed, args.keep)
            rows.append((name, outcomes, time.monotonic() - began))
    print()
    print(f"{'target':<8} {'cases':>5} {'ok':>5} {'partial':>7} {'failed':>6} {'VIOLATION':>9} "
          f"{'s/case':>6} {'peak MiB':>8}  violating seeds")
    total = 0
    for name, outcomes, seconds in rows:
        counts = Counter(o.kind for o in outcomes)
        bad = [o.case.seed for o in outcomes if o.violation]
        total += len(bad)
        peak = max((o.max_rss_mb for o in outcomes), default=0)
        print(f"{name:<8} {len(outcomes):>5} {counts['ok']:>5} {counts['partial']:>7} "
              f"{counts['failed']:>6} {counts['VIOLATION']:>9} "
              f"{seconds / max(len(outcomes), 1):>6.2f} {peak:>8.0f}  "
              f"{' '.join(map(str, bad[:40]))}{' ...' if len(bad) > 40 else ''}")
    return 1 if total else 0


def keep(target: object, seed: int, where: Path) -> None:
    """Write a case's corrupted disk and a copy of the baseline database to ``where``."""
    from tests.fuzz_targets import Target

    assert isinstance(target, Target)
    case = target.case(seed)
    out = where / f"{target.name}-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    image = target.corrupt(case, out)
    url = fresh_database(target.baseline_db, out / "db.sqlite")
    shutil.copyfile(target.baseline_db, out / "baseline.sqlite")
    (out / "README").write_text(
        f"{case.describe()}\n\nSNAPFIM_DATABASE_URL={url} SNAPFIM_HASH_WORKERS=1 "
        f"python -m scanner scan {image} --machine {MACHINE} --json\n")


if __name__ == "__main__":
    sys.exit(main())
