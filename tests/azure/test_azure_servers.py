"""The local blob servers themselves: Azurite over TLS with the test CA, and the diff front
answering the managed-disk page-range diff as the SDK asks for it (so other tests can rely
on them)."""

from __future__ import annotations

import os
from datetime import timedelta

import certifi
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from tests.azure.azurite import AzureBlobs
from tests.azure.diffproxy import diff_pages
from tests.imaging.vhd import vhd_footer


def _client(url: str, blobs: AzureBlobs) -> BlobClient:
    return BlobClient.from_blob_url(url, connection_verify=str(blobs.ca_bundle))


def test_tls_is_trusted_through_the_test_ca_only(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), b"\1" * 4096)
    assert url.startswith(blobs.account_url + "/")
    assert requests.head(url, timeout=30).status_code == 200  # REQUESTS_CA_BUNDLE set
    with pytest.raises(requests.exceptions.SSLError):  # the public CAs do not vouch for it
        requests.head(url, timeout=30, verify=certifi.where())


def test_a_disk_is_a_page_blob_holding_a_fixed_vhd(blobs: AzureBlobs) -> None:
    disk = os.urandom(3000)  # padded to 3072
    name = blobs.unique()
    url = blobs.upload_disk(name, disk)
    stored = blobs.read_blob(name)
    assert stored == disk + bytes(72) + vhd_footer(3072)
    props = _client(url, blobs).get_blob_properties()
    assert props.blob_type == "PageBlob" and props.size == 3072 + 512
    reply = requests.get(url, headers={"x-ms-range": "bytes=512-1023", "x-ms-version":
                                       "2021-12-02"}, timeout=30)
    assert reply.status_code == 206 and reply.content == disk[512:1024]


def test_an_expired_sas_is_refused(blobs: AzureBlobs) -> None:
    name = blobs.unique()
    blobs.upload_disk(name, b"\1" * 512)
    reply = requests.head(blobs.sas_url(name, expiry=timedelta(hours=-1)), timeout=30)
    assert reply.status_code == 403


def test_the_diff_is_computed_the_way_the_sdk_asks_for_it(blobs: AzureBlobs) -> None:
    base = bytearray(os.urandom(256 * 1024) + bytes(256 * 1024))
    old_name, new_name = blobs.unique(), blobs.unique()
    old = blobs.upload_disk(old_name, bytes(base), lineage=old_name)
    base[1000:1010] = b"x" * 10          # page 1 changed
    base[4096:5120] = bytes(1024)        # pages 8-9 cleared
    base[300000:300001] = b"y"           # page 585 written (was zero)
    new = blobs.upload_disk(new_name, bytes(base), lineage=old_name)
    changed, cleared = _client(new, blobs).get_page_range_diff_for_managed_disk(old)
    assert changed == [{"start": 512, "end": 1023}, {"start": 299520, "end": 300031}]
    assert cleared == [{"start": 4096, "end": 5119}]
    # the requested range is honoured (windows)
    changed, cleared = _client(new, blobs).get_page_range_diff_for_managed_disk(
        old, offset=4096, length=4096)
    assert changed == [] and cleared == [{"start": 4096, "end": 5119}]
    assert blobs.state.diff_windows == [(0, 512 * 1024 + 511), (4096, 8191)]
    # two disks of different lineages cannot be compared
    stranger = blobs.upload_disk(blobs.unique(), bytes(base))
    with pytest.raises(HttpResponseError) as refused:
        _client(new, blobs).get_page_range_diff_for_managed_disk(stranger)
    assert refused.value.status_code == 409
    assert refused.value.error_code == "PreviousSnapshotNotFound"


def test_diff_pages_merges_runs_of_one_kind() -> None:
    old = b"a" * 2048
    new = b"a" * 512 + b"b" * 512 + bytes(1024)
    assert diff_pages(old, new, 0, 2047) == [("PageRange", 512, 1023), ("ClearRange", 1024, 2047)]
    assert diff_pages(old, new, 1024, 1535) == [("ClearRange", 1024, 1535)]
