"""The EBS block fetcher and its block source against the local AWS: pagination (empty pages
included), zeros without a call, verified blocks, throttling, checksum mismatches, token
expiry, changed blocks and lineage, parallel hashing that reopens the ebs locator."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scanner.cloud.aws import ebs
from scanner.cloud.aws.ebs import BLOCK_SIZE, EbsFetcher, changed_blocks, list_blocks, open_ebs
from scanner.cloud.aws.provider import AwsProvider
from scanner.cloud.aws.session import AwsAccount
from scanner.collectors import hashing
from scanner.errors import (
    AccountAccessError,
    LineageError,
    SourceError,
    SourceNotFound,
    SourceReadError,
    TransientSourceError,
)
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import recommended_entities
from scanner.sources.local import open_local
from tests.aws.fakeaws import EbsStore, FakeAws, Fault
from tests.aws.helpers import REGION, data_heavy_image, ec2

WRITTEN = (0, 1, 2, 5, 6, 9, 10, 11, 30, 31)  # blocks holding data; the others are zeros


def block(index: int) -> bytes:
    seed = hashlib.sha256(f"block-{index}".encode()).digest()
    return seed * (BLOCK_SIZE // len(seed))


@pytest.fixture
def snapshot(ebs_store: EbsStore, tmp_path: Path) -> str:
    """A 1 GiB volume whose blocks WRITTEN hold data, and a snapshot of it."""
    raw = tmp_path / "volume.raw"
    with raw.open("wb") as out:
        for index in range(max(WRITTEN) + 1):
            out.write(block(index) if index in WRITTEN else bytes(BLOCK_SIZE))
    client = ec2()
    volume = client.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
    ebs_store.seed_volume(volume, raw, size_gib=1)
    return str(client.create_snapshot(VolumeId=volume)["SnapshotId"])


def test_listing_pages_until_next_token_is_none_and_reads_are_exact(
        ebs_store: EbsStore, snapshot: str) -> None:
    ebs_store.page_size = 3  # an empty first page, then 3 + 3 + 3 + 1 blocks
    fetcher = EbsFetcher(snapshot, REGION)
    assert (fetcher.size, fetcher.windows_held) == (1 << 30, 1)
    assert ebs_store.calls["ListSnapshotBlocks"] == 5
    assert fetcher.locator == {"kind": "ebs", "snapshot": snapshot, "region": REGION,
                               "account": None}
    for index in range(40):
        expected = block(index) if index in WRITTEN else bytes(BLOCK_SIZE)
        assert fetcher.fetch(index) == expected
    assert ebs_store.block_gets[snapshot] == len(WRITTEN)  # zeros cost no call
    with pytest.raises(SourceReadError, match="past the volume's end"):
        fetcher.fetch((1 << 30) // BLOCK_SIZE)


def test_the_listing_is_held_one_window_at_a_time(ebs_store: EbsStore, snapshot: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Block tokens are listed per window of blocks (StartingBlockIndex) and only a few
    windows are held: memory stays bounded whatever the volume's size."""
    monkeypatch.setattr(ebs, "WINDOW_BLOCKS", 8)
    monkeypatch.setattr(ebs, "WINDOWS_KEPT", 2)
    ebs_store.page_size = 3
    fetcher = EbsFetcher(snapshot, REGION)
    held = 0
    for index in range(40):  # windows 0-4: blocks 0-7, 8-15, 16-23, 24-31, 32-39
        expected = block(index) if index in WRITTEN else bytes(BLOCK_SIZE)
        assert fetcher.fetch(index) == expected
        held = max(held, fetcher.windows_held,
                   sum(len(w.tokens) for w in fetcher._windows.values()))  # noqa: SLF001
    assert fetcher.listings == 5 and held <= 2 * 8
    assert fetcher.fetch(1) == block(1)  # window 0 was dropped: listed again
    assert fetcher.listings == 6
    assert ebs_store.block_gets[snapshot] == len(WRITTEN) + 1


def test_source_reads_across_blocks(ebs_store: EbsStore, snapshot: str) -> None:
    source = open_ebs({"kind": "ebs", "snapshot": snapshot, "region": REGION})
    try:
        assert source.size == 1 << 30
        start = 2 * BLOCK_SIZE - 100
        assert source.read_at(start, BLOCK_SIZE + 200) == (
            block(1)[-100:] + block(2) + bytes(100))
        assert source.read_at((1 << 30) - 10, 100) == bytes(10)
    finally:
        source.close()


def test_throttling_is_transient_and_retried(ebs_store: EbsStore, snapshot: str) -> None:
    fetcher = EbsFetcher(snapshot, REGION)
    ebs_store.inject(Fault("GetSnapshotBlock", "RequestThrottledException", 400, count=1,
                           message="Rate exceeded"))
    with pytest.raises(TransientSourceError, match="RequestThrottledException: Rate exceeded"):
        fetcher.fetch(1)  # block 0 was read when the snapshot was opened
    ebs_store.inject(Fault("GetSnapshotBlock", "ConcurrentLimitExceededException", 400,
                           count=2))
    source = open_ebs(fetcher.locator)
    try:
        assert source.read_at(0, 10) == block(0)[:10]
    finally:
        source.close()
    assert ebs_store.faults[-1].count == 0  # both faults were met, then the read went through


def test_a_corrupt_block_is_refetched_and_a_persistently_corrupt_one_fails(
        ebs_store: EbsStore, snapshot: str) -> None:
    fetcher = EbsFetcher(snapshot, REGION)
    ebs_store.inject(Fault("GetSnapshotBlock", corrupt=True, count=1))
    with pytest.raises(TransientSourceError, match="reading block 5 of .*: checksum mismatch"):
        fetcher.fetch(5)
    assert fetcher.fetch(5) == block(5)
    ebs_store.inject(Fault("GetSnapshotBlock", corrupt=True, count=1, match="/blocks/6"))
    source = open_ebs(fetcher.locator)
    try:
        assert source.read_at(6 * BLOCK_SIZE, 4) == block(6)[:4]
        ebs_store.inject(Fault("GetSnapshotBlock", corrupt=True, count=1000,
                               match="/blocks/9"))
        with pytest.raises(SourceReadError, match="block 9 .*checksum mismatch"):
            source.read_at(9 * BLOCK_SIZE, 4)
    finally:
        source.close()


def test_block_tokens_are_listed_again_before_they_expire(ebs_store: EbsStore,
                                                          snapshot: str) -> None:
    ebs_store.token_lifetime = 3.0
    fetcher = EbsFetcher(snapshot, REGION, token_margin=2.0)
    assert fetcher.fetch(0) == block(0)
    time.sleep(1.2)  # now within the margin of the expiry: the next fetch lists again
    assert fetcher.fetch(1) == block(1)
    assert fetcher.listings == 2


def test_an_expired_token_is_listed_again_and_retried(ebs_store: EbsStore,
                                                      snapshot: str) -> None:
    ebs_store.token_lifetime = 1.0
    ebs_store.expiry_skew = 3600.0  # the tokens expire long before the announced time
    fetcher = EbsFetcher(snapshot, REGION, token_margin=0.0)
    time.sleep(1.1)
    with pytest.raises(TransientSourceError, match="block token expired; listed again"):
        fetcher.fetch(1)
    assert fetcher.listings == 2
    assert fetcher.fetch(1) == block(1)  # the retry uses the fresh token


def test_threads_whose_tokens_expired_together_list_once(ebs_store: EbsStore,
                                                        snapshot: str) -> None:
    """Every read-ahead thread whose token expired at once gets one fresh listing, not one
    listing each (a listing of a large volume takes seconds)."""
    ebs_store.token_lifetime = 1.0
    ebs_store.expiry_skew = 3600.0
    fetcher = EbsFetcher(snapshot, REGION, token_margin=0.0)
    time.sleep(1.1)
    barrier = threading.Barrier(len(WRITTEN) - 1)

    def fetch(index: int) -> str:
        barrier.wait()
        try:
            fetcher.fetch(index)
        except TransientSourceError as exc:
            return str(exc)
        return "read"

    with ThreadPoolExecutor(len(WRITTEN) - 1) as pool:  # block 0 was read at open
        outcomes = list(pool.map(fetch, WRITTEN[1:]))
    assert all(o.endswith("block token expired; listed again") or o == "read"
               for o in outcomes), outcomes
    assert fetcher.listings == 2
    assert [fetcher.fetch(i) == block(i) for i in WRITTEN[1:]] == [True] * (len(WRITTEN) - 1)


def test_a_snapshot_that_may_be_listed_but_not_read_fails_at_open(ebs_store: EbsStore,
                                                                    snapshot: str) -> None:
    ebs_store.inject(Fault("GetSnapshotBlock", "AccessDeniedException", 403, count=1,
                           message="The KMS key is not accessible"))
    with pytest.raises(AccountAccessError, match=(
            "reading block 0 of snap-.*: AccessDeniedException: The KMS key is not accessible")):
        EbsFetcher(snapshot, REGION)
    fetcher = EbsFetcher(snapshot, REGION)  # the first block read at open is not read again
    assert fetcher.fetch(0) == block(0)
    assert ebs_store.block_gets[snapshot] == 1


def test_an_unknown_snapshot_is_not_found(fake_aws: FakeAws) -> None:
    with pytest.raises(SourceNotFound, match="snap-0123456789abcdef0' does not exist"):
        EbsFetcher("snap-0123456789abcdef0", REGION)


def test_changed_blocks_page_and_respect_lineage(ebs_store: EbsStore, snapshot: str,
                                                 tmp_path: Path) -> None:
    volume = ebs_store.snapshots[snapshot].volume_id
    raw = tmp_path / "changed.raw"
    with raw.open("wb") as out:  # block 1 rewritten, block 3 written, block 30 cleared
        for index in range(max(WRITTEN) + 1):
            data = block(index) if index in WRITTEN else bytes(BLOCK_SIZE)
            if index == 1:
                data = block(100)
            elif index == 3:
                data = block(3)
            elif index == 30:
                data = bytes(BLOCK_SIZE)
            out.write(data)
    ebs_store.seed_volume(volume, raw)
    client = ec2()
    second = str(client.create_snapshot(VolumeId=volume)["SnapshotId"])
    ebs_store.page_size = 2
    assert list(changed_blocks(AwsAccount(), REGION, snapshot, second)) == [1, 3, 30]
    provider = AwsProvider({"regions": [REGION]})
    old = provider.locator(snapshot, REGION, volume)
    new = provider.locator(second, REGION, volume)
    assert provider.changed_ranges(old, new) == [
        (BLOCK_SIZE, BLOCK_SIZE), (3 * BLOCK_SIZE, BLOCK_SIZE), (30 * BLOCK_SIZE, BLOCK_SIZE)]
    other = client.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
    stranger = str(client.create_snapshot(VolumeId=other)["SnapshotId"])
    with pytest.raises(LineageError, match="not of the same lineage"):
        changed_blocks(AwsAccount(), REGION, stranger, second)
    assert provider.changed_ranges(provider.locator(stranger, REGION), new) is None
    assert provider.changed_ranges(provider.locator(stranger, REGION, other), new) is None


def test_a_scan_through_ebs_with_parallel_hashing_equals_the_local_scan(
        ebs_store: EbsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = data_heavy_image(tmp_path / "build")
    client = ec2()
    volume = client.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
    ebs_store.seed_volume(volume, image)
    snap = str(client.create_snapshot(VolumeId=volume)["SnapshotId"])
    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)  # the forked worker reopens ebs
    policy = recommended_entities()
    source = open_ebs({"kind": "ebs", "snapshot": snap, "region": REGION})
    listed = ebs_store.calls["ListSnapshotBlocks"]
    try:
        remote = scan_source(source, policy, ScanOptions(hash_workers=2))
    finally:
        source.close()
    with open_local(image) as local_source:
        local = scan_source(local_source, policy, ScanOptions(hash_workers=1))
    assert remote.coverage.files_hashed == local.coverage.files_hashed == 40
    # the walk and the forked hash worker share one spill file: no block is fetched twice
    fetched = Counter(index for name, index in ebs_store.block_log if name == snap)
    assert fetched and max(fetched.values()) == 1
    assert sum(fetched.values()) == ebs_store.block_gets[snap] <= len(
        ebs_store.snapshots[snap].blocks)
    # and the block tokens listed once, at open: the workers start from that listing
    assert ebs_store.calls["ListSnapshotBlocks"] == listed
    assert {p: e.values() for p, e in remote.entities.items()} == {
        p: e.values() for p, e in local.entities.items()}


class _Listing:
    """An EBS-compatible endpoint's ListSnapshotBlocks answering ``pages`` (the bytes of an
    endpoint are not ours either)."""

    def __init__(self, *pages: dict[str, object]) -> None:
        self.pages = list(pages)

    def list_snapshot_blocks(self, **_: object) -> dict[str, object]:
        return self.pages.pop(0)


class _Unlimited:
    def acquire(self) -> None:
        pass


@pytest.mark.parametrize(("page", "error"), [
    ({"VolumeSize": 1, "BlockSize": BLOCK_SIZE,
      "Blocks": [{"BlockIndex": 2048, "BlockToken": "t"}]},
     "snap-x: the listing names block 2048, outside the volume's 2048 blocks"),
    ({"VolumeSize": 1, "BlockSize": BLOCK_SIZE,
      "Blocks": [{"BlockIndex": -1, "BlockToken": "t"}]},
     "snap-x: the listing names block -1, outside the volume's 2048 blocks"),
    ({"VolumeSize": 10 ** 9, "BlockSize": BLOCK_SIZE, "Blocks": []},
     "snap-x: the listing says the volume has 1000000000 GiB, more than EBS allows "
     "(65536 GiB)"),
])
def test_a_listing_outside_the_volume_is_refused(page: dict[str, object], error: str) -> None:
    with pytest.raises(SourceError) as caught:
        list_blocks(_Listing(page), "snap-x", _Unlimited())
    assert str(caught.value) == error


def test_a_listing_before_the_window_asked_for_is_refused() -> None:
    page = {"VolumeSize": 1, "BlockSize": BLOCK_SIZE,
            "Blocks": [{"BlockIndex": 3, "BlockToken": "t"}]}
    with pytest.raises(SourceError) as caught:
        list_blocks(_Listing(page), "snap-x", _Unlimited(), start=8, end=16)
    assert str(caught.value) == ("snap-x: the listing names block 3, before block 8 where it "
                                 "was asked to start")


def test_a_window_keeps_only_its_blocks_and_stops_at_its_end() -> None:
    listing = list_blocks(_Listing(
        {"VolumeSize": 1, "BlockSize": BLOCK_SIZE, "NextToken": "n",
         "Blocks": [{"BlockIndex": 8, "BlockToken": "a"}, {"BlockIndex": 15, "BlockToken": "b"}]},
        {"VolumeSize": 1, "BlockSize": BLOCK_SIZE, "NextToken": "m",
         "Blocks": [{"BlockIndex": 16, "BlockToken": "c"}]}), "snap-x", _Unlimited(),
        start=8, end=16)  # the third page is never asked for
    assert listing.tokens == {8: "a", 15: "b"}


def test_a_listing_inside_the_volume_is_kept() -> None:
    listing = list_blocks(_Listing(
        {"VolumeSize": 1, "BlockSize": BLOCK_SIZE, "NextToken": "n",
         "Blocks": [{"BlockIndex": 0, "BlockToken": "a"}]},
        {"VolumeSize": 1, "BlockSize": BLOCK_SIZE,
         "Blocks": [{"BlockIndex": 2047, "BlockToken": "b"}]}), "snap-x", _Unlimited())
    assert (listing.volume_bytes, listing.tokens) == (1 << 30, {0: "a", 2047: "b"})
