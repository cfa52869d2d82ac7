"""Azure page blobs through SAS URLs (scanner.cloud.azure.pageblob) against Azurite over TLS:
exact ranged reads of the disk inside a fixed VHD, hostile blobs and replies, retried faults,
the managed-disk page-range diff in windows, and the SAS signature kept out of every record."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from urllib.parse import quote, quote_plus

import pytest

from scanner.cli_sources import locator_of
from scanner.cloud.azure.blobhttp import session
from scanner.cloud.azure.pageblob import (
    BLOCK_SIZE,
    SasFetcher,
    open_sas,
    open_sas_url,
    page_range_diff,
    redact,
    stored_locator,
)
from scanner.cloud.azure.pagelist import written_windows
from scanner.errors import (
    AccountAccessError,
    ConfigError,
    LineageError,
    SourceError,
    SourceNotFound,
    SourceReadError,
)
from scanner.redact import scrub
from scanner.runner import same_snapshot
from scanner.sources.cache import CacheSettings
from scanner.sources.locators import open_locator, reopenable
from scanner.sources.locators import stored_locator as stored_form
from scanner.sources.machine import machine_locator
from tests.azure.azurite import AzureBlobs, assert_no_signature
from tests.azure.diffproxy import Fault, page_list_xml
from tests.imaging.vhd import VHD_DYNAMIC, vhd_footer

FAST = CacheSettings(backoff=0.001, max_backoff=0.01, spill_bytes=0)


def disk_bytes(size: int, seed: int = 1) -> bytes:
    """Deterministic, block-distinct bytes (every 512 bytes tell where they lie)."""
    out = bytearray()
    for offset in range(0, size, 512):
        out += f"{seed}:{offset:012d}:".encode().ljust(512, b".")
    return bytes(out[:size])


def test_reads_are_exact_across_blocks_and_at_the_disk_end(blobs: AzureBlobs) -> None:
    size = 3 * BLOCK_SIZE + 1536          # the last block is short
    disk = disk_bytes(size)
    url = blobs.upload_disk(blobs.unique(), disk)
    with open_sas_url(url, cache=FAST) as source:
        assert source.size == size
        assert source.read_at(0, 4096) == disk[:4096]
        assert source.read_at(BLOCK_SIZE - 100, 300) == disk[BLOCK_SIZE - 100:BLOCK_SIZE + 200]
        assert source.read_at(size - 1000, 5000) == disk[size - 1000:]  # never the footer
        assert source.read_at(size, 10) == b""
        assert source.locator["kind"] == "azure-sas" and source.locator["url"] == url
        assert source.locator["snapshot"] == redact(url) == url.split("?")[0]
    # the locator table reopens it (a hash worker does)
    assert reopenable(source.locator)
    with open_locator(source.locator) as again:
        assert again.read_at(2 * BLOCK_SIZE, 512) == disk[2 * BLOCK_SIZE:2 * BLOCK_SIZE + 512]


def test_the_stored_locator_holds_no_signature(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(4096))
    assert "sig=" in url
    with open_sas_url(url, snapshot="/subscriptions/s/snapshots/one", cache=FAST) as source:
        live = source.locator
    kept = stored_locator(live)
    assert "url" not in kept and "sig=" not in repr(kept)
    assert_no_signature(repr(kept), url)
    assert kept["snapshot"] == "/subscriptions/s/snapshots/one"
    assert kept["blob"] == url.split("?")[0]
    assert stored_form(live) == kept  # through the locator table
    two = machine_locator([live, {"kind": "slice", "parent": live, "offset": 0, "length": 1}])
    assert "sig=" not in repr(two)
    assert_no_signature(repr(two), url)
    assert not reopenable(kept)
    with pytest.raises(SourceError, match="needs its SAS URL"):
        open_sas(kept)


def test_a_blob_without_a_vhd_footer_is_refused(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(8192), footer=b"")
    with pytest.raises(SourceError, match=r"no fixed VHD footer \(cookie 'conectix'\) at the end"):
        open_sas_url(url)


def test_a_dynamic_vhd_or_an_inconsistent_footer_is_refused(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(8192), footer=vhd_footer(8192,
                                                                                VHD_DYNAMIC))
    with pytest.raises(SourceError, match="VHD disk type 3, expected 2"):
        open_sas_url(url)
    url = blobs.upload_disk(blobs.unique(), disk_bytes(8192), footer=vhd_footer(4096))
    with pytest.raises(SourceError, match="footer says 4096 bytes, the blob holds 8192"):
        open_sas_url(url)
    broken = bytearray(vhd_footer(8192))
    broken[100] ^= 1
    url = blobs.upload_disk(blobs.unique(), disk_bytes(8192), footer=bytes(broken))
    with pytest.raises(SourceError, match="checksum does not match"):
        open_sas_url(url)


def test_a_size_that_is_not_whole_pages_is_refused(blobs: AzureBlobs) -> None:
    data = disk_bytes(1000) + vhd_footer(1000)
    url = blobs.put_block_blob(blobs.unique(), data)
    with pytest.raises(SourceError, match="blob size 1512 is not a disk plus a VHD footer"):
        open_sas_url(url)


def test_an_expired_or_missing_sas_is_one_clear_error(blobs: AzureBlobs) -> None:
    name = blobs.unique()
    blobs.upload_disk(name, disk_bytes(4096))
    expired = blobs.sas_url(name, expiry=timedelta(hours=-1))
    with pytest.raises(AccountAccessError) as refused:
        open_sas_url(expired)
    message = str(refused.value)
    assert message == (f"reading the properties of {redact(expired)}: HTTP 403 "
                       "AuthorizationFailure (the SAS was refused: expired, revoked or without "
                       "read permission)")
    assert "sig=" not in message and "?" not in message
    assert_no_signature(message, expired)
    with pytest.raises(SourceNotFound, match="HTTP 404"):
        open_sas_url(blobs.sas_url(blobs.unique()))
    with pytest.raises(ConfigError, match="a SAS is only ever sent over https"):
        open_sas_url(expired.replace("https://", "http://"))


def test_an_unreachable_server_says_so_without_the_signature(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(4096))
    port = url.split("/")[2].split(":")[1]
    dead = url.replace(f":{port}/", ":9/")  # the discard port: nothing listens
    settings = CacheSettings(attempts=1)
    with pytest.raises(SourceError) as failed:
        open_sas_url(dead, cache=settings)
    assert "ConnectionError" in str(failed.value)
    assert "sig=" not in str(failed.value) and "sv=" not in str(failed.value)
    assert_no_signature(str(failed.value), dead)


def test_throttling_and_outages_are_retried(blobs: AzureBlobs) -> None:
    disk = disk_bytes(2 * BLOCK_SIZE)
    name = blobs.unique()
    url = blobs.upload_disk(name, disk)
    blobs.inject(Fault("properties", count=2, status=503, blob=name))
    with open_sas_url(url, cache=FAST) as source:
        blobs.inject(Fault("read", count=1, status=429, code="ServerBusy", retry_after=1,
                           blob=name))
        blobs.inject(Fault("read", count=1, status=500, code="InternalError", blob=name))
        assert source.read_at(BLOCK_SIZE, 512) == disk[BLOCK_SIZE:BLOCK_SIZE + 512]
        assert source.stats.retries == 2
    assert [f.count for f in blobs.state.faults] == [0, 0, 0]
    # the two refused properties requests were asked again: three in all, no more
    assert [op for op, _ in blobs.state.requests].count("properties") == 3


def test_short_and_corrupt_reads_are_fetched_again_then_fail_clearly(blobs: AzureBlobs) -> None:
    disk = disk_bytes(4 * BLOCK_SIZE)
    name = blobs.unique()
    url = blobs.upload_disk(name, disk)
    with open_sas_url(url, cache=FAST) as source:
        blobs.inject(Fault("read", count=1, short=True, blob=name))
        blobs.inject(Fault("read", count=1, bad_md5=True, blob=name))
        assert source.read_at(0, BLOCK_SIZE) == disk[:BLOCK_SIZE]
        assert source.stats.retries == 2
        blobs.inject(Fault("read", count=100, bad_md5=True, blob=name))
        with pytest.raises(SourceReadError,
                           match=r"block 3 .* reading block 3 of .*: checksum mismatch \(MD5"):
            source.read_at(3 * BLOCK_SIZE, 10)
        blobs.state.faults.clear()
        blobs.inject(Fault("read", count=100, short=True, blob=name))
        with pytest.raises(SourceReadError, match="262144 bytes received, None announced, "
                                                  "524288 expected"):
            source.read_at(2 * BLOCK_SIZE, 10)


def test_on_close_runs_once_and_also_when_opening_fails(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(4096))
    calls: list[str] = []
    source = open_sas_url(url, on_close=lambda: calls.append("revoke"), cache=FAST)
    assert calls == []
    source.close()
    source.close()
    assert calls == ["revoke"]
    broken = blobs.upload_disk(blobs.unique(), disk_bytes(4096), footer=b"")
    with pytest.raises(SourceError):
        open_sas_url(broken, on_close=lambda: calls.append("revoke again"))
    assert calls == ["revoke", "revoke again"]


# -- the page-range diff ---------------------------------------------------------------------------
def _two_snapshots(blobs: AzureBlobs, size: int) -> tuple[str, str, bytes, bytes]:
    lineage = blobs.unique("lineage")
    old = bytearray(disk_bytes(size))
    old[size // 2:] = bytes(size - size // 2)   # the second half never written
    new = bytearray(old)
    new[1000:1001] = b"!"                          # page 1
    new[70_000:80_000] = bytes(10_000)             # pages 136-156 cleared (within one window)
    new[size // 2 + 4096:size // 2 + 4097] = b"?"  # one page written in the empty half
    new[size - 512:] = b"e" * 512                  # the disk's last page
    old_url = blobs.upload_disk(blobs.unique(), bytes(old), lineage=lineage)
    new_url = blobs.upload_disk(blobs.unique(), bytes(new), lineage=lineage)
    return old_url, new_url, bytes(old), bytes(new)


def _expected(old: bytes, new: bytes) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for offset in range(0, len(new), 512):
        if old[offset:offset + 512] != new[offset:offset + 512]:
            if out and out[-1][0] + out[-1][1] == offset:
                out[-1] = (out[-1][0], out[-1][1] + 512)
            else:
                out.append((offset, 512))
    return out


def test_the_diff_is_exact_and_asked_for_in_windows(blobs: AzureBlobs) -> None:
    size = 1 << 20
    old_url, new_url, old, new = _two_snapshots(blobs, size)
    ranges = page_range_diff(old_url, new_url, window=256 * 1024)
    assert ranges == _expected(old, new) == [
        (512, 512), (69_632, 10_752), (size // 2 + 4096, 512), (size - 512, 512)]
    assert blobs.state.diff_windows == [(0, 262143), (262144, 524287), (524288, 786431),
                                        (786432, 1048575)]  # the footer's page never asked
    blobs.state.diff_windows.clear()
    assert page_range_diff(old_url, new_url) == ranges     # one window of 1 GiB
    assert blobs.state.diff_windows == [(0, size - 1)]


def test_the_diff_follows_next_markers_within_a_window(blobs: AzureBlobs) -> None:
    size = 1 << 20
    old_url, new_url, old, new = _two_snapshots(blobs, size)
    blobs.state.max_ranges = 1        # every reply holds one range and a NextMarker
    assert page_range_diff(old_url, new_url, window=512 * 1024) == _expected(old, new)
    assert len(blobs.state.diff_windows) > 2


def test_a_wrong_diff_would_be_caught(blobs: AzureBlobs) -> None:
    """The front computes the diff from the blobs' bytes: a change is always reported."""
    size = 256 * 1024
    old_url, new_url, old, new = _two_snapshots(blobs, size)
    assert page_range_diff(old_url, new_url) == _expected(old, new)
    assert page_range_diff(new_url, new_url) == []
    assert page_range_diff(new_url, old_url) == _expected(new, old)


def test_snapshots_of_another_disk_are_not_comparable(blobs: AzureBlobs) -> None:
    old_url, new_url, _, _ = _two_snapshots(blobs, 64 * 1024)
    stranger = blobs.upload_disk(blobs.unique(), disk_bytes(64 * 1024))
    with pytest.raises(LineageError, match="HTTP 409 PreviousSnapshotNotFound"):
        page_range_diff(stranger, new_url)


@pytest.mark.parametrize(("body", "error"), [
    (page_list_xml([("PageRange", 0, 99)]), "page range 0-99 is not whole pages"),
    (page_list_xml([("ClearRange", 0, 1 << 40)]), "inside the blob's 66048 bytes"),
    (b"<PageList><PageRange><Start>x</Start><End>511</End></PageRange></PageList>",
     "a page range without numbers"),
    (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><PageList/>", "holds a DTD"),
    (b"not xml", "the page list is not XML"),
    (b"<Error/>", "expected a PageList, got <Error>"),
])
def test_hostile_page_lists_are_refused(blobs: AzureBlobs, body: bytes, error: str) -> None:
    old_url, new_url, _, _ = _two_snapshots(blobs, 64 * 1024)
    blobs.inject(Fault("diff", body=body))
    with pytest.raises(SourceError, match=error) as refused:
        page_range_diff(old_url, new_url)
    assert "sig=" not in str(refused.value)
    assert_no_signature(str(refused.value), old_url, new_url)


def test_the_error_code_is_read_from_a_bounded_body_too(blobs: AzureBlobs) -> None:
    old_url, new_url, _, _ = _two_snapshots(blobs, 64 * 1024)
    blobs.inject(Fault("diff", status=409, code="PreviousSnapshotOperationNotSupported",
                       code_header=False))
    with pytest.raises(LineageError, match="HTTP 409 PreviousSnapshotOperationNotSupported$"):
        page_range_diff(old_url, new_url)


def test_a_throttled_diff_is_retried(blobs: AzureBlobs) -> None:
    old_url, new_url, old, new = _two_snapshots(blobs, 64 * 1024)
    blobs.inject(Fault("diff", count=2, status=503))
    assert page_range_diff(old_url, new_url) == _expected(old, new)


def test_diff_windows_must_be_whole_pages() -> None:
    with pytest.raises(ValueError, match="multiple of 512"):
        page_range_diff("https://a/b/c?sig=x", "https://a/b/d?sig=y", window=1000)


def test_redact_keeps_the_blob_and_drops_the_query() -> None:
    url = "https://md-1.blob.core.windows.net/abcd/abcd?sv=2021&sr=b&sig=SECRET%3D&se=x"
    assert redact(url) == "https://md-1.blob.core.windows.net/abcd/abcd"
    assert redact("https://user:pw@host/c/b?sig=1#frag") == "https://host/c/b"
    assert os.fspath(redact("/tmp/disk.img")) == "/tmp/disk.img"


def test_redact_keeps_which_snapshot_is_read_and_drops_every_credential() -> None:
    blob = "https://acct.blob.core.windows.net/vhds/os.vhd"
    t0, t1 = "2026-01-01T00:00:00.1000000Z", "2026-01-02T00:00:00.2000000Z"
    secret = "c2VjcmV0LXNpZ25hdHVyZQ"
    one = f"{blob}?snapshot={t0}&sv=2021-12-02&sr=bs&sp=r&se=2026-02-01&sig={secret}%3D"
    assert redact(one) == f"{blob}?snapshot={t0}"
    # the same snapshot through another grant: the same identity
    again = f"{blob}?sp=r&sig=other{secret}&snapshot={t0}&se=2026-03-01&st=2026-02-01"
    assert redact(again) == redact(one)
    # another snapshot, or a version, of the same blob: never the same identity
    assert redact(f"{blob}?snapshot={t1}&sig={secret}") == f"{blob}?snapshot={t1}"
    assert redact(f"{blob}?versionid={t1}&sig={secret}") == f"{blob}?versionid={t1}"
    assert redact(f"{blob}?sig={secret}") == blob
    # a credential however it is spelled or encoded, of SAS or any other scheme
    for url in (f"{blob}?%73ig={secret}&snapshot={t0}", f"{blob}?SIG={secret}",
                f"{blob}?X-Amz-Signature={secret}&token={secret}", f"{blob}?a=1&sig={secret}#x"):
        assert secret not in redact(url)
    local = [locator_of(f"{blob}?snapshot={t}&sv=2021&sig={secret}{t}") for t in (t0, t1, t0)]
    assert not same_snapshot(local[0], local[1])
    assert same_snapshot(local[0], local[2])
    stored = [stored_locator(loc) for loc in local]
    assert secret not in repr(stored)
    assert not same_snapshot(stored[0], stored[1]) and same_snapshot(stored[0], stored[2])
    assert same_snapshot(stored[0], local[2])


def test_scrub_cuts_url_queries_out_of_free_text() -> None:
    text = ("HTTPSConnectionPool(host='h', port=1): Max retries exceeded with url: "
            "/c/b?sv=2021&sig=SECRET (Caused by X)")
    assert scrub(text) == ("HTTPSConnectionPool(host='h', port=1): Max retries exceeded with "
                           "url: /c/b (Caused by X)")
    assert scrub("expired? yes") == "expired? yes"


def test_ranges_outside_the_window_are_clipped_and_duplicates_bounded(
        blobs: AzureBlobs) -> None:
    old_url, new_url, old, new = _two_snapshots(blobs, 64 * 1024)
    blobs.inject(Fault("diff", body=page_list_xml([("PageRange", 0, 65535)])))
    assert page_range_diff(old_url, new_url, window=32 * 1024)[0] == (0, 32 * 1024)
    blobs.inject(Fault("diff", body=page_list_xml([("PageRange", 0, 511)] * 200)))
    with pytest.raises(SourceError, match="more ranges than the window has pages"):
        page_range_diff(old_url, new_url, window=32 * 1024)


def test_overlapping_and_unordered_page_ranges_are_merged_once(blobs: AzureBlobs) -> None:
    # a hostile server: every range covers (nearly) the whole disk, in no order; read
    # block by block, each would cost a pass over all the disk's blocks
    size = 4 * BLOCK_SIZE
    name = blobs.unique()
    url = blobs.upload_disk(name, disk_bytes(size))
    ranges = [("PageRange", 512 * n, size - 1) for n in range(60, 0, -1)]
    ranges += [("ClearRange", 0, size - 1 - 512 * n) for n in range(60)]
    blobs.inject(Fault("pagelist", body=page_list_xml(ranges)))
    with session() as http:
        assert list(written_windows(http, url, size + 512, name)) == [[(0, size - 1)]]
    blobs.inject(Fault("pagelist", body=page_list_xml(
        [("PageRange", 3 * BLOCK_SIZE, size - 1), ("PageRange", 0, 511),
         ("PageRange", 0, 1023), ("PageRange", 3 * BLOCK_SIZE, 3 * BLOCK_SIZE + 511)])))
    fetcher = SasFetcher(url)
    try:
        assert [fetcher.written(i) for i in range(4)] == [True, False, False, True]
        assert fetcher.fetch(0) == disk_bytes(size)[:BLOCK_SIZE]
        assert fetcher.fetch(1) == bytes(BLOCK_SIZE)  # never written: zeros
    finally:
        fetcher.close()


def test_blocks_never_written_read_as_zeros_without_a_request(blobs: AzureBlobs) -> None:
    chunk = 4 << 20
    disk = bytearray(3 * chunk)
    disk[10:20] = b"x" * 10               # piece 0 written
    disk[2 * chunk + 5:2 * chunk + 6] = b"y"  # piece 2 written; piece 1 never
    name = blobs.unique()
    url = blobs.upload_disk(name, bytes(disk))
    with open_sas_url(url, cache=FAST) as source:
        before = blobs.state.block_reads.get(blobs.blob_path(name), 0)
        assert source.read_at(chunk, chunk) == bytes(chunk)       # 8 blocks of zeros
        assert blobs.state.block_reads.get(blobs.blob_path(name), 0) == before
        assert source.read_at(2 * chunk, 8) == bytes(disk[2 * chunk:2 * chunk + 8])
        assert blobs.state.block_reads[blobs.blob_path(name)] > before  # written: read
        assert source.read_at(0, 32) == bytes(disk[:32])
    assert [op for op, _ in blobs.state.requests].count("pagelist") == 1


def test_a_hostile_page_list_fails_the_open(blobs: AzureBlobs) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(8192))
    blobs.inject(Fault("pagelist", body=page_list_xml([("PageRange", 512, 8191 + 4096)])))
    with pytest.raises(SourceError, match="page range 512-12287 is not whole pages inside the "
                                          "blob's 8704 bytes"):
        open_sas_url(url)


def test_the_http_library_debug_log_holds_no_signature(blobs: AzureBlobs,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    url = blobs.upload_disk(blobs.unique(), disk_bytes(BLOCK_SIZE))
    with caplog.at_level(logging.DEBUG):
        with open_sas_url(url, cache=FAST) as source:
            source.read_at(0, 512)
        page_range_diff(url, url)
    requests_logged = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any('"GET /devstoreaccount1/disks/' in m for m in requests_logged)
    assert not any("sig=" in m for m in requests_logged)
    assert_no_signature("\n".join(r.getMessage() for r in caplog.records), url)


def test_the_leak_check_finds_an_encoded_signature() -> None:
    sig = "AbC/dEf+gHiJkLmNoPqRsTuVwXyZ0123456789abcd="
    url = f"https://a/c/b?sv=2021&sig={quote(sig, safe='')}"
    encoded = quote(sig, safe="")
    for leak in (sig, encoded, encoded.replace("%2B", "%2b"), f"sig%3D{quote(sig)}",
                 quote_plus(sig), sig.rstrip("="), quote(encoded, safe="")):
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_signature(f"GET /c/b?{leak} 200", url)
    assert_no_signature("GET /c/b 200", url)
