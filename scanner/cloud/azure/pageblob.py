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
import re
import struct
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from scanner.cloud.httpstatus import status_error, transient_status
from scanner.errors import (
    ConfigError,
    LineageError,
    SnapfimError,
    SourceError,
    SourceReadError,
    TransientSourceError,
)
from scanner.redact import redact_url, scrub
from scanner.sources.cache import CachedSource, CacheSettings, open_cached, retrying
from scanner.sources.integrity import check_digest, check_length

KIND = "azure-sas"
BLOCK_SIZE = 512 * 1024
PAGE = 512
FOOTER_SIZE = 512
VHD_COOKIE = b"conectix"
VHD_FIXED = 2
WINDOW = 1 << 30             # bytes of disk per page-range diff request
API_VERSION = "2021-12-02"   # x-ms-previous-snapshot-url needs 2019-07-07 or later
MAX_BLOB_BYTES = (64 << 40) + FOOTER_SIZE  # the largest managed disk (64 TiB) and its footer
MAX_LIST_BYTES = 64 << 20    # bound of one page-list reply
MAX_PAGES_PER_WINDOW = 10_000  # NextMarker followed at most this often in one window
MAX_RETRY_AFTER = 10.0       # seconds a Retry-After is honoured, at most
TIMEOUT = (10.0, 60.0)       # connect, read (seconds)
POOL = 64                    # HTTP connections per fetcher (parallel read-ahead)
# as for EBS: throughput comes from requests in flight within a bounded cache
AZURE_CACHE = CacheSettings(cache_bytes=128 << 20, read_ahead=48, threads=48)

OnClose = Callable[[], None]


def redact(url: str) -> str:
    """The URL without its query: names the blob, holds no signature."""
    return redact_url(url)


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigError("an azure-sas locator needs a SAS URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{redact(url)}: not a URL") from exc
    if parts.scheme != "https" or not parts.netloc or parts.path.count("/") < 2:
        raise ConfigError(f"{redact(url)}: expected https://ACCOUNT.blob.../CONTAINER/BLOB?SAS "
                          "(a SAS is only ever sent over https)")
    return url


def _session() -> requests.Session:
    """An HTTP session: the process's proxy and CA settings (REQUESTS_CA_BUNDLE), a pool
    sized for read-ahead, no retries of its own (the caching layer retries)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL,
                                            max_retries=0)
    session.mount("https://", adapter)
    session.headers.update({"x-ms-version": API_VERSION, "Accept-Encoding": "identity",
                            "User-Agent": "snapfim"})
    return session


def _error_code(reply: requests.Response) -> str:
    code = reply.headers.get("x-ms-error-code") or ""
    if not code and reply.headers.get("Content-Type", "").startswith("application/xml"):
        match = re.search(rb"<Code>([^<]{1,100})</Code>", reply.content[:4096])
        code = match.group(1).decode("ascii", "replace") if match else ""
    return re.sub(r"[^A-Za-z0-9_.-]", "", code)[:100]


def _reply_error(reply: requests.Response, what: str) -> SnapfimError:
    """Our error for a failed reply; a Retry-After is honoured (bounded) before a transient
    error is raised."""
    status = reply.status_code
    code = _error_code(reply)
    text = f"{what}: HTTP {status}" + (f" {code}" if code else "")
    if status == 403:
        text += " (the SAS was refused: expired, revoked or without read permission)"
    if code.startswith("PreviousSnapshot"):
        return LineageError(text)
    if transient_status(status):
        wait = _retry_after(reply.headers.get("Retry-After"))
        if wait:
            time.sleep(wait)
    reply.close()
    return status_error(status, text)


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, min(MAX_RETRY_AFTER, float(value))) if value else 0.0
    except ValueError:
        return 0.0


def _request(session: requests.Session, method: str, url: str, what: str,
             headers: dict[str, str] | None = None, stream: bool = False) -> requests.Response:
    """One request; transport failures translated (their messages scrubbed of the URL's
    query)."""
    try:
        return session.request(method, url, headers=headers, timeout=TIMEOUT, stream=stream,
                               allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        raise SourceError(f"{what}: TLS failure: {scrub(str(exc))[:300]}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TransientSourceError(f"{what}: {type(exc).__name__}: "
                                   f"{scrub(str(exc))[:300]}") from None
    except requests.exceptions.RequestException as exc:
        raise SourceError(f"{what}: {type(exc).__name__}: {scrub(str(exc))[:300]}") from None


def _body(reply: requests.Response, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of a reply body (more is a :class:`SourceReadError`)."""
    parts: list[bytes] = []
    total = 0
    try:
        for chunk in reply.iter_content(chunk_size=256 * 1024):
            total += len(chunk)
            if total > limit:
                raise SourceReadError(f"{what}: the reply is longer than {limit} bytes")
            parts.append(chunk)
    except requests.exceptions.RequestException as exc:
        raise TransientSourceError(f"{what}: reply cut short: {type(exc).__name__}") from None
    finally:
        reply.close()
    return b"".join(parts)


def _ranged_read(session: requests.Session, url: str, offset: int, length: int,
                 what: str) -> bytes:
    """``length`` bytes at ``offset`` of the blob, their length and MD5 checked."""
    reply = _request(session, "GET", url, what, stream=True, headers={
        "x-ms-range": f"bytes={offset}-{offset + length - 1}",
        "x-ms-range-get-content-md5": "true"})
    if reply.status_code not in (200, 206):
        raise _reply_error(reply, what)
    data = _body(reply, length, what) if reply.status_code == 206 else b""
    if reply.status_code == 200:  # a server that ignored the range
        reply.close()
        raise SourceReadError(f"{what}: the server ignored the requested range")
    check_length(data, length, what)
    check_digest(data, "MD5", reply.headers.get("Content-MD5"), what)
    return data


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


def blob_size(session: requests.Session, url: str, name: str) -> int:
    """The blob's size (Get Blob Properties), checked: a multiple of 512, room for a footer,
    at most the largest managed disk."""
    what = f"reading the properties of {name}"
    reply = retrying(lambda: _properties(session, url, what))
    text = reply.headers.get("Content-Length") or ""
    if not text.isdigit():
        raise SourceError(f"{name}: the blob's properties give no size")
    size = int(text)
    if size % PAGE or size < PAGE + FOOTER_SIZE:
        raise SourceError(f"{name}: blob size {size} is not a disk plus a VHD footer (a "
                          f"multiple of {PAGE} bytes, at least {PAGE + FOOTER_SIZE})")
    if size > MAX_BLOB_BYTES:
        raise SourceError(f"{name}: blob size {size} is larger than any managed disk")
    return size


def _properties(session: requests.Session, url: str, what: str) -> requests.Response:
    reply = _request(session, "HEAD", url, what)
    if reply.status_code != 200:
        raise _reply_error(reply, what)
    reply.close()
    return reply


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
            _check_url(url)
            self._session = session = _session()
            self.blob_size = blob_size(session, url, self.name)
            footer = retrying(lambda: _ranged_read(
                session, url, self.blob_size - FOOTER_SIZE, FOOTER_SIZE,
                f"reading the VHD footer of {self.name}"))
            self._size = parse_footer(footer, self.blob_size, self.name)
        except BaseException:
            self.close()
            raise

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
        """Block ``index`` of the disk (the last one may be shorter), MD5 and length checked."""
        offset = index * BLOCK_SIZE
        if index < 0 or offset >= self._size:
            raise SourceReadError(f"{self.name}: block {index} is past the disk's end")
        length = min(BLOCK_SIZE, self._size - offset)
        with self._lock:
            self.fetches += 1
        session = self._session
        if session is None or self._closed:
            raise SourceReadError(f"{self.name}: closed")
        return _ranged_read(session, self.url, offset, length,
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
    return open_cached(fetcher, {"cache": (cache or AZURE_CACHE).as_dict()})


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


# -- the page-range diff -------------------------------------------------------------------------
def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params] + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _page_list(data: bytes, what: str, blob_bytes: int
               ) -> tuple[list[tuple[int, int]], str]:
    """The ``(first, last)`` byte pairs of a PageList reply (PageRange and ClearRange alike)
    and its NextMarker, every pair checked: page-aligned, inside the blob."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SourceError(f"{what}: the page list holds a DTD")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise SourceError(f"{what}: the page list is not XML ({exc})") from None
    if root.tag != "PageList":
        raise SourceError(f"{what}: expected a PageList, got <{root.tag[:40]}>")
    pairs: list[tuple[int, int]] = []
    for element in root:
        if element.tag not in ("PageRange", "ClearRange"):
            continue
        start_text, end_text = element.findtext("Start"), element.findtext("End")
        try:
            first, last = int(start_text or ""), int(end_text or "")
        except ValueError:
            raise SourceError(f"{what}: a page range without numbers") from None
        if not 0 <= first <= last < blob_bytes or first % PAGE or (last + 1) % PAGE:
            raise SourceError(f"{what}: page range {first}-{last} is not whole pages inside "
                              f"the blob's {blob_bytes} bytes")
        pairs.append((first, last))
    return pairs, (root.findtext("NextMarker") or "").strip()


def _diff_window(session: requests.Session, url: str, previous_url: str, start: int, end: int,
                 what: str, blob_bytes: int) -> list[tuple[int, int]]:
    """The changed and cleared pairs in ``[start, end]`` (inclusive), markers followed."""
    out: list[tuple[int, int]] = []
    marker = ""
    for _ in range(MAX_PAGES_PER_WINDOW):
        query = {"comp": "pagelist"} if not marker else {"comp": "pagelist", "marker": marker}
        target = _with_query(url, **query)
        headers = {"x-ms-previous-snapshot-url": previous_url,
                   "x-ms-range": f"bytes={start}-{end}"}

        def ask(target: str = target, headers: dict[str, str] = headers) -> bytes:
            reply = _request(session, "GET", target, what, headers=headers, stream=True)
            if reply.status_code != 200:
                raise _reply_error(reply, what)
            return _body(reply, MAX_LIST_BYTES, what)

        pairs, marker = _page_list(retrying(ask), what, blob_bytes)
        # only what lies in the window counts (the other windows ask for the rest)
        out.extend((max(first, start), min(last, end)) for first, last in pairs
                   if first <= end and last >= start)
        if len(out) > (end - start) // PAGE + 1:
            raise SourceError(f"{what}: more ranges than the window has pages")
        if not marker:
            return out
        if len(marker) > 1024:
            raise SourceError(f"{what}: a NextMarker of {len(marker)} characters")
    raise SourceError(f"{what}: the page list of bytes {start}-{end} does not end")


def page_range_diff(previous_url: str, current_url: str, window: int = WINDOW
                    ) -> list[tuple[int, int]]:
    """Byte ranges ``(offset, length)`` of the disk that changed or were cleared between two
    snapshots of one managed disk (their SAS URLs), merged and sorted; asked for in windows
    of ``window`` bytes. :class:`LineageError` when Azure says they cannot be compared."""
    if window <= 0 or window % PAGE:
        raise ValueError(f"window {window} is not a positive multiple of {PAGE}")
    _check_url(previous_url)
    _check_url(current_url)
    name = f"{redact(current_url)} since {redact(previous_url)}"
    with _session() as session:
        blob_bytes = blob_size(session, current_url, redact(current_url))
        disk = blob_bytes - FOOTER_SIZE
        pairs: list[tuple[int, int]] = []
        for start in range(0, disk, window):
            end = min(start + window, disk) - 1
            pairs.extend(_diff_window(session, current_url, previous_url, start, end,
                                      f"comparing {name} (bytes {start}-{end})", blob_bytes))
    merged: list[list[int]] = []
    for first, last in sorted(pairs):
        last = min(last, disk - 1)  # the footer is not the disk's
        if first > last:
            continue
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(first, last - first + 1) for first, last in merged]
