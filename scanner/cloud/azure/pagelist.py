"""Page lists of a page blob: the written pages (Get Page Ranges) and the managed-disk
page-range diff between two snapshots (``x-ms-previous-snapshot-url``), both asked for in
windows of :data:`WINDOW` bytes (the SDK drops ``NextMarker``; here each window's markers are
followed as well), every range checked (whole pages, inside the blob) and clipped to its
window, their count bounded by the window's pages.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from scanner.cloud.azure.blobhttp import (
    FOOTER_SIZE,
    PAGE,
    blob_size,
    body,
    check_url,
    redact,
    reply_error,
    request,
    session,
)
from scanner.errors import SourceError
from scanner.sources.cache import retrying

WINDOW = 1 << 30             # bytes of disk per page-list request
MAX_LIST_BYTES = 64 << 20    # bound of one page-list reply
MAX_PAGES_PER_WINDOW = 10_000  # NextMarker followed at most this often in one window


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


def _window(http: requests.Session, url: str, start: int, end: int, what: str,
            blob_bytes: int, previous_url: str | None = None) -> list[tuple[int, int]]:
    """The ``(first, last)`` pairs of one window ``[start, end]`` (inclusive) of the blob's
    page list, or of its diff since ``previous_url``, markers followed, clipped to the
    window, sorted and merged: a server's overlapping or unordered ranges (at most as many
    as the window has pages) cost O(n log n) here and never more than one pass over the
    window's blocks later."""
    out: list[tuple[int, int]] = []
    marker = ""
    headers = {"x-ms-range": f"bytes={start}-{end}"}
    if previous_url is not None:
        headers["x-ms-previous-snapshot-url"] = previous_url
    for _ in range(MAX_PAGES_PER_WINDOW):
        query = {"comp": "pagelist"} if not marker else {"comp": "pagelist", "marker": marker}
        target = _with_query(url, **query)

        def ask(target: str = target) -> bytes:
            reply = request(http, "GET", target, what, headers=headers, stream=True)
            if reply.status_code != 200:
                raise reply_error(reply, what)
            return body(reply, MAX_LIST_BYTES, what)

        pairs, marker = _page_list(retrying(ask), what, blob_bytes)
        # only what lies in the window counts (the other windows ask for the rest)
        out.extend((max(first, start), min(last, end)) for first, last in pairs
                   if first <= end and last >= start)
        if len(out) > (end - start) // PAGE + 1:
            raise SourceError(f"{what}: more ranges than the window has pages")
        if not marker:
            return merged_pairs(out)
        if len(marker) > 1024:
            raise SourceError(f"{what}: a NextMarker of {len(marker)} characters")
    raise SourceError(f"{what}: the page list of bytes {start}-{end} does not end")


def _check_window(window: int) -> None:
    if window <= 0 or window % PAGE:
        raise ValueError(f"window {window} is not a positive multiple of {PAGE}")


def _windows(disk: int, window: int) -> list[tuple[int, int]]:
    _check_window(window)
    return [(start, min(start + window, disk) - 1) for start in range(0, disk, window)]


def merged_pairs(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` pairs sorted and merged (overlapping or adjacent ones
    joined): disjoint and strictly increasing."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(pairs):
        if first > last:
            continue
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def merged_ranges(pairs: list[tuple[int, int]], disk: int) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` pairs as sorted, merged ``(offset, length)`` ranges of a
    disk of ``disk`` bytes (what lies past it, the VHD footer, dropped)."""
    clipped = [(first, min(last, disk - 1)) for first, last in pairs]
    return [(first, last - first + 1) for first, last in merged_pairs(clipped)]


def written_windows(http: requests.Session, url: str, blob_bytes: int, name: str,
                    window: int = WINDOW) -> Iterator[list[tuple[int, int]]]:
    """Window by window, the inclusive ``(first, last)`` byte pairs of the written pages of
    the disk inside the blob (Get Page Ranges; the rest reads as zeros)."""
    disk = blob_bytes - FOOTER_SIZE
    for start, end in _windows(disk, window):
        yield _window(http, url, start, end,
                      f"listing the pages of {name} (bytes {start}-{end})", blob_bytes)


def written_pages(http: requests.Session, url: str, blob_bytes: int, name: str,
                  window: int = WINDOW) -> list[tuple[int, int]]:
    """Byte ranges ``(offset, length)`` of the disk inside the blob that hold written pages,
    merged and sorted."""
    pairs = [pair for pairs in written_windows(http, url, blob_bytes, name, window)
             for pair in pairs]
    return merged_ranges(pairs, blob_bytes - FOOTER_SIZE)


def page_range_diff(previous_url: str, current_url: str, window: int = WINDOW
                    ) -> list[tuple[int, int]]:
    """Byte ranges ``(offset, length)`` of the disk that changed or were cleared between two
    snapshots of one managed disk (their SAS URLs), merged and sorted; asked for in windows
    of ``window`` bytes. :class:`~scanner.errors.LineageError` when Azure says they cannot
    be compared."""
    _check_window(window)
    check_url(previous_url)
    check_url(current_url)
    name = f"{redact(current_url)} since {redact(previous_url)}"
    with session() as http:
        blob_bytes = blob_size(http, current_url, redact(current_url))
        disk = blob_bytes - FOOTER_SIZE
        pairs: list[tuple[int, int]] = []
        for start, end in _windows(disk, window):
            pairs.extend(_window(http, current_url, start, end,
                                 f"comparing {name} (bytes {start}-{end})", blob_bytes,
                                 previous_url))
    return merged_ranges(pairs, disk)
