"""A scan through a SAS URL equals the scan of the local image, with forked hash workers
reopening the azure-sas locator and faults injected on the way (throttling, outages, short
and corrupt reads): retried, never visible in the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.cloud.azure.pageblob import open_sas_url
from scanner.collectors import hashing
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import recommended_entities
from scanner.sources.cache import CacheSettings
from scanner.sources.local import open_local
from tests.aws.helpers import data_heavy_image
from tests.azure.azurite import AzureBlobs, assert_no_signature
from tests.azure.diffproxy import Fault


def test_a_faulty_scan_through_a_sas_url_equals_the_local_scan(
        blobs: AzureBlobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = data_heavy_image(tmp_path / "build")
    name = blobs.unique()
    url = blobs.upload_disk(name, image)
    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)  # the forked worker reopens the blob
    policy = recommended_entities()
    settings = CacheSettings(backoff=0.001, max_backoff=0.01)
    with open_sas_url(url, cache=settings) as source:
        # four transient faults in all: fewer than the attempts of any one read; all met by
        # the first reads (of the file system's metadata, in this process, before any
        # worker is forked), each retried once
        faults = [blobs.inject(Fault("read", status=503, code="ServerBusy", blob=name)),
                  blobs.inject(Fault("read", status=429, retry_after=0, blob=name)),
                  blobs.inject(Fault("read", short=True, blob=name)),
                  blobs.inject(Fault("read", bad_md5=True, blob=name))]
        remote = scan_source(source, policy, ScanOptions(hash_workers=2))
        retries = source.stats.retries
    with open_local(image) as local_source:
        local = scan_source(local_source, policy, ScanOptions(hash_workers=1))
    assert [f.count for f in faults] == [0, 0, 0, 0]  # every fault was met
    assert retries == 4  # each fault met by a read of this process, retried once
    assert remote.coverage.status == "succeeded" and remote.coverage.unreadable == {}
    assert remote.coverage.files_hashed == local.coverage.files_hashed == 40
    assert {p: e.values() for p, e in remote.entities.items()} == {
        p: e.values() for p, e in local.entities.items()}


def test_a_scan_without_disk_names_reports_no_signature(blobs: AzureBlobs, tmp_path: Path
                                                        ) -> None:
    image = data_heavy_image(tmp_path / "build")
    url = blobs.upload_disk(blobs.unique(), image)
    with open_sas_url(url, snapshot="/subscriptions/s/snapshots/snap-1") as source:
        outcome = scan_source(source, recommended_entities(), ScanOptions(hash_workers=1))
    report = repr(outcome.coverage.to_dict())
    assert "sig=" not in report and "snap-1" in report
    assert_no_signature(report, url)
