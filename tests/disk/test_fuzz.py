"""Hostile disks, fuzzed: one-byte and multi-byte corruptions of filesystem, partition-table,
LVM and registry metadata, with fixed seeds (issue 9, "Done when").

Each test runs one chunk of seeds of one target (tests/fuzz_targets.py: ext4, XFS, NTFS,
registry hives, hive transaction logs, GPT, MBR, LVM) and asserts for every case: exit 0 or
a one-line ``snapfim: error:``, no traceback, inside the time and memory bounds
(tests/fuzzing.py: 60 s, 2 GiB of address space), and no ``removed`` event that the
independent checker does not confirm as really gone. A failure lists the violating seeds with
what happened; ``python3 -m benchmarks.fuzz_disks --targets T --first SEED --seeds 1 --keep
DIR`` reproduces one (the benchmark runs many more seeds).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz_targets import TargetSet, run_case
from tests.fuzzing import ScanServer

# Seeds per target in CI (about 0.2 s each) and how many one test runs.
CI_SEEDS = {"ext4": 50, "xfs": 30, "ntfs": 30, "hive": 50, "hivelog": 20, "gpt": 30,
            "mbr": 20, "lvm": 20}
CHUNK = 10
CHUNKS = [(target, first) for target, count in CI_SEEDS.items()
          for first in range(0, count, CHUNK)]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A scratch directory on tmpfs when there is one: the disks are built there (so
    ``mkfs -d`` sees the same directory order as the benchmark, and a seed means the same
    bytes in both) and SQLite commits cost no disk flush."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="snapfim-fuzz-", dir=shm) as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def targets(scratch: Path) -> Iterator[TargetSet]:
    with ScanServer(scratch / "io") as server:
        yield TargetSet(scratch / "targets", server)


@pytest.mark.parametrize(("target", "first"), CHUNKS,
                         ids=[f"{t}-seeds{f}-{f + CHUNK - 1}" for t, f in CHUNKS])
def test_corrupted_metadata_never_crashes_hangs_or_hides_state(
        targets: TargetSet, scratch: Path, target: str, first: int) -> None:
    built = targets.get(target)
    outcomes = [run_case(targets.server, built, seed, scratch / "cases")
                for seed in range(first, first + CHUNK)]
    assert {o.kind for o in outcomes} <= {"ok", "partial", "failed", "VIOLATION"}
    violations = [o.describe() for o in outcomes if o.violation]
    assert not violations, (f"{len(violations)} of {CHUNK} {target} cases violate the bounds:\n"
                            + "\n".join(violations))
