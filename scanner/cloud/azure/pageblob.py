"""Azure page blobs read through a SAS URL: the block fetcher behind the caching layer, and
the managed-disk page-range diff.

A managed disk's snapshot, once read access is granted, is a page blob holding a fixed VHD:
the disk's bytes, then a 512-byte footer (cookie ``conectix``, disk type 2, the disk's size).
:class:`SasFetcher` implements the ``BlockFetcher`` protocol of :mod:`scanner.sources.cache`:
at open it reads the blob's properties and its footer (both checked: a size that is not a
multiple of 512, a missing or inconsistent footer is a :class:`SourceError`), then serves the
disk (blob size − 512) in 512 KiB ranged reads whose ``Content-MD5`` (asked for with
``x-ms-range-get-content-md5``) and length must match, or the read is a
:class:`TransientSourceError` the caching layer retries. Throttling (429 with
``Retry-After``, honoured up to a bound) and outages are transient too; a refused SAS
(403: expired, revoked) is an :class:`AccountAccessError`.

:func:`page_range_diff` asks for the pages that changed or were cleared between two snapshots
of one managed disk (``x-ms-previous-snapshot-url``), in windows of :data:`WINDOW` bytes
(the SDK drops ``NextMarker``; here each window's markers are followed as well).

Locator: ``{"kind": "azure-sas", "url": SAS URL, "snapshot": ARM id or the URL without its
query}``. The SAS signature never leaves the process: :func:`redact` is what may be stored,
logged or printed, :func:`stored_locator` is the locator a scan records, and every error
message is built from the redacted URL.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from typing import Any

import requests

from scanner.cloud.azure.blobhttp import (
    FOOTER_SIZE,
    blob_size,
    check_url,
    ranged_read,
    redact,
    session,
)
from scanner.cloud.azure.pagelist import page_range_diff, written_windows
from scanner.errors import SourceError, SourceReadError
from scanner.sources.cache import CachedSource, CacheSettings, open_cached, retrying

__all__ = ["AZURE_CACHE", "BLOCK_SIZE", "KIND", "SasFetcher", "open_sas", "open_sas_url",
           "page_range_diff", "parse_footer", "redact", "stored_locator"]

KIND = "azure-sas"
BLOCK_SIZE = 512 * 1024
VHD_COOKIE = b"conectix"
VHD_FIXED = 2
# as for EBS: throughput comes from requests in flight within a bounded cache
AZURE_CACHE = CacheSettings(cache_bytes=128 << 20, read_ahead=48, threads=48)

OnClose = Callable[[], None]


def parse_footer(footer: bytes, blob_size: int, name: str) -> int:
    """The disk size a fixed VHD footer announces, checked against the blob: cookie
    ``conectix``, disk type fixed, a valid checksum, current size = blob size − 512."""
    if len(footer) != FOOTER_SIZE or not footer.startswith(VHD_COOKIE):
        raise SourceError(f"{name}: no fixed VHD footer (cookie 'conectix') at the end of the "
                          "blob: not a managed disk snapshot")
    (disk_type,) = struct.unpack_from(">I", footer, 60)
    if disk_type != VHD_FIXED:
        raise SourceError(f"{name}: VHD disk type {disk_type}, expected {VHD_FIXED} (fixed)")
    (checksum,) = struct.unpack_from(">I", footer, 64)
    blanked = footer[:64] + b"\0\0\0\0" + footer[68:]
    if ~sum(blanked) & 0xFFFFFFFF != checksum:
        raise SourceError(f"{name}: the VHD footer's checksum does not match")
    (current,) = struct.unpack_from(">Q", footer, 48)
    if current != blob_size - FOOTER_SIZE:
        raise SourceError(f"{name}: the VHD footer says {current} bytes, the blob holds "
                          f"{blob_size - FOOTER_SIZE} before it")
    return current


class SasFetcher:
    """The disk inside one page blob (a fixed VHD), fetched 512 KiB at a time through its
    SAS URL. ``on_close`` runs once, in this process, when the fetcher closes (or its
    opening fails)."""

    def __init__(self, url: str, snapshot: str | None = None, on_close: OnClose | None = None
                 ) -> None:
        self._on_close = on_close
        self._pid = os.getpid()
        self._closed = False
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self.url = url
        self.name = snapshot or redact(url)
        self.snapshot = snapshot
        self.fetches = 0
        try:
            check_url(url)
            self._session = http = session()
            self.blob_size = blob_size(http, url, self.name)
            footer = retrying(lambda: ranged_read(
                http, url, self.blob_size - FOOTER_SIZE, FOOTER_SIZE,
                f"reading the VHD footer of {self.name}"))
            self._size = parse_footer(footer, self.blob_size, self.name)
            self._written = self._list_written(http)
        except BaseException:
            self.close()
            raise

    def _list_written(self, http: requests.Session) -> bytearray:
        """One bit per block: set when the block holds a written page."""
        bits = bytearray(-(-self._size // BLOCK_SIZE) // 8 + 1)
        for pairs in written_windows(http, self.url, self.blob_size, self.name):
            for first, last in pairs:
                for index in range(first // BLOCK_SIZE,
                                   min(last, self._size - 1) // BLOCK_SIZE + 1):
                    bits[index >> 3] |= 1 << (index & 7)
        return bits

    def written(self, index: int) -> bool:
        """Whether block ``index`` holds a written page (else it reads as zeros)."""
        return bool(self._written[index >> 3] >> (index & 7) & 1)

    @property
    def written_blocks(self) -> int:
        """How many blocks hold a written page."""
        return sum(bin(byte).count("1") for byte in self._written)

    @property
    def block_size(self) -> int:
        """512 KiB."""
        return BLOCK_SIZE

    @property
    def size(self) -> int:
        """The disk's size: the blob's less the VHD footer."""
        return self._size

    @property
    def locator(self) -> dict[str, Any]:
        """``{"kind": "azure-sas", "url": ..., "snapshot": ...}`` (in this process only:
        :func:`stored_locator` is what may be recorded)."""
        return {"kind": KIND, "url": self.url, "snapshot": self.name}

    def fetch(self, index: int) -> bytes:
        """Block ``index`` of the disk (the last one may be shorter), MD5 and length checked;
        zeros without a request when none of its pages was ever written."""
        offset = index * BLOCK_SIZE
        if index < 0 or offset >= self._size:
            raise SourceReadError(f"{self.name}: block {index} is past the disk's end")
        length = min(BLOCK_SIZE, self._size - offset)
        if not self.written(index):
            return bytes(length)
        with self._lock:
            self.fetches += 1
        session = self._session
        if session is None or self._closed:
            raise SourceReadError(f"{self.name}: closed")
        return ranged_read(session, self.url, offset, length,
                            f"reading block {index} of {self.name}")

    def close(self) -> None:
        """Close the HTTP session; run ``on_close`` once (never in a forked process)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._session is not None:
            self._session.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None and os.getpid() == self._pid:
            on_close()


def open_sas_url(url: str, snapshot: str | None = None, on_close: OnClose | None = None,
                 cache: CacheSettings | None = None) -> CachedSource:
    """The block source of a managed-disk snapshot's SAS URL: a :class:`SasFetcher` behind
    the shared caching layer. ``snapshot`` names it (an ARM id; default the URL without its
    query); ``on_close`` runs once when the source closes, or when opening fails (a
    provider revokes the SAS there)."""
    fetcher = SasFetcher(url, snapshot, on_close)  # runs on_close itself when it fails
    try:
        return open_cached(fetcher, {"cache": (cache or AZURE_CACHE).as_dict()})
    except BaseException:
        fetcher.close()  # on_close still runs once
        raise


def open_sas(locator: dict[str, Any]) -> CachedSource:
    """The block source of an ``azure-sas`` locator (the locator table's opener)."""
    url = locator.get("url")
    if not isinstance(url, str) or not url:
        raise SourceError("an azure-sas locator needs its SAS URL (a stored scan's locator "
                          "holds none: ask for read access again)")
    if "cache" not in locator:
        locator = {**locator, "cache": AZURE_CACHE.as_dict()}
    snapshot = locator.get("snapshot")
    fetcher = SasFetcher(url, snapshot if isinstance(snapshot, str) else None)
    return open_cached(fetcher, locator)


def stored_locator(locator: dict[str, Any]) -> dict[str, Any]:
    """What a scan records of an ``azure-sas`` locator: the SAS URL replaced by the blob's
    URL without its query (it identifies, it cannot read)."""
    out = {k: v for k, v in locator.items() if k != "url"}
    url = locator.get("url")
    if isinstance(url, str):
        out["blob"] = redact(url)
        if not out.get("snapshot"):
            out["snapshot"] = out["blob"]
    return out


