"""Changed blocks held as bounded runs (:class:`scanner.incremental.BlockRuns`), and
ListChangedBlocks streamed into them: memory is measured by the structure's size, never by
the number of changed blocks."""

from __future__ import annotations

import random
from pathlib import Path

from scanner.cloud.aws.ebs import BLOCK_SIZE, changed_blocks
from scanner.cloud.aws.session import AwsAccount
from scanner.incremental import BlockRuns, ChangedRanges
from tests.aws.fakeaws import EbsStore
from tests.aws.helpers import REGION, ec2

RUN_BYTES = 16  # two 8-byte integers per run


def test_a_million_consecutive_changed_blocks_are_one_run() -> None:
    runs = BlockRuns()
    for index in range(5, 1_000_005):
        runs.add(index)
    assert len(runs) == 1
    assert runs.nbytes == RUN_BYTES
    assert runs.blocks == 1_000_000
    assert runs.ranges(BLOCK_SIZE) == [(5 * BLOCK_SIZE, 1_000_000 * BLOCK_SIZE)]


def test_scattered_changes_past_the_bound_are_merged_never_dropped() -> None:
    runs = BlockRuns(max_runs=1024)
    added = list(range(0, 400_000, 2))  # 200,000 runs of one block each
    for index in added:
        runs.add(index)
    assert len(runs) <= 1024
    assert runs.nbytes <= 1024 * RUN_BYTES
    covered = set(runs)
    assert covered.issuperset(added)  # widened (a gap counts as changed), never narrowed
    assert min(covered) == 0 and max(covered) == added[-1]
    assert runs.gap >= 1
    changed = ChangedRanges(runs.ranges(BLOCK_SIZE))
    assert all(changed.touches(i * BLOCK_SIZE, 1) for i in added[::997])


def test_within_the_bound_the_runs_are_exact_in_any_order() -> None:
    rng = random.Random(12)
    indices = rng.sample(range(100_000), 5_000) + rng.sample(range(100_000), 500)  # repeats
    runs = BlockRuns(max_runs=10_000)
    for index in indices:
        runs.add(index)
    assert list(runs) == sorted(set(indices))
    assert runs.gap == 0
    assert runs.added == len(indices)


def test_the_listing_streams_into_runs(ebs_store: EbsStore, tmp_path: Path) -> None:
    image = tmp_path / "one.raw"
    image.write_bytes(b"\1" * (40 * BLOCK_SIZE))
    client = ec2()
    volume = str(client.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"])
    ebs_store.seed_volume(volume, image)
    first = str(client.create_snapshot(VolumeId=volume)["SnapshotId"])
    with image.open("r+b") as handle:  # blocks 3..12 and every other block from 20 to 38
        for index in [*range(3, 13), *range(20, 40, 2)]:
            handle.seek(index * BLOCK_SIZE)
            handle.write(b"\2" * BLOCK_SIZE)
    ebs_store.seed_volume(volume, image)
    second = str(client.create_snapshot(VolumeId=volume)["SnapshotId"])
    ebs_store.page_size = 3
    runs = changed_blocks(AwsAccount(), REGION, first, second)
    assert list(runs) == [*range(3, 13), *range(20, 40, 2)]
    assert len(runs) == 11
    bounded = changed_blocks(AwsAccount(), REGION, first, second, max_runs=4)
    assert len(bounded) <= 4
    assert set(bounded) >= set(runs)
