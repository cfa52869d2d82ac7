"""A small TLS front for Azurite: the managed-disk page-range diff Azurite lacks, and faults.

Every request is forwarded to Azurite untouched, except:

* ``GET ...?comp=pagelist`` with the ``x-ms-previous-snapshot-url`` header (what
  ``get_page_range_diff_for_managed_disk`` and snapfim send): the front reads both blobs from
  Azurite with their own SAS (so an expired or wrong SAS is refused as Azure would), compares
  them page by page (512 bytes) within the requested ``x-ms-range`` and answers the PageList
  XML: ``PageRange`` for pages whose bytes changed, ``ClearRange`` for pages that became zeros.
  Two blobs of different lineages (:meth:`DiffFront.set_lineage`) are answered 409
  ``PreviousSnapshotNotFound``. At most ``max_ranges`` ranges per reply, then a
  ``NextMarker`` (which the SDK drops: callers query windows);
* injected faults (:class:`Fault`): an HTTP status (with ``Retry-After``), a short body, a
  body whose ``Content-MD5`` does not match, a replaced reply body, a delay.

Counters (``requests``, ``diff_windows``, ``block_reads``) let tests check what was asked.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from tests.azure.tls import TestCa

PAGE = 512
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-authorization", "proxy-authenticate", "host"})


@dataclass
class Fault:
    """A fault for the next ``count`` requests of ``operation`` ("read": a ranged GET of blob
    bytes, "properties": HEAD, "diff": a page-range diff, "any") whose path contains
    ``blob`` ('' for all): ``status`` (with ``retry_after`` seconds), ``short`` (the body cut
    in half, its length and MD5 consistent with the cut), ``bad_md5`` (a flipped byte, the
    original MD5 announced), ``body`` (the reply body replaced, status 200), ``delay``."""

    operation: str
    count: int = 1
    blob: str = ""
    status: int = 0
    code: str = "ServerBusy"
    retry_after: int | None = None
    short: bool = False
    bad_md5: bool = False
    body: bytes | None = None
    delay: float = 0.0
    code_header: bool = True   # False: the error code only in the XML body


@dataclass
class FrontState:
    """What the front knows and counts, shared by its handler threads."""

    upstream: tuple[str, int]
    ca: TestCa
    max_ranges: int = 1000
    latency: float = 0.0   # seconds slept before every blob read (benchmarks)
    faults: list[Fault] = field(default_factory=list)
    lineage: dict[str, str] = field(default_factory=dict)   # blob path -> lineage name
    requests: list[tuple[str, str]] = field(default_factory=list)  # (operation, path)
    diff_windows: list[tuple[int, int]] = field(default_factory=list)  # (start, end incl.)
    block_reads: dict[str, int] = field(default_factory=dict)  # blob path -> ranged reads
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget faults and counters (lineages stay: they describe the stored blobs)."""
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            self.diff_windows.clear()
            self.block_reads.clear()
            self.latency = 0.0
            self.max_ranges = 1000

    def take(self, operation: str, path: str) -> Fault | None:
        """The first armed fault for this request (its count used up by one)."""
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.operation in (operation, "any") \
                        and fault.blob in path:
                    fault.count -= 1
                    return fault
        return None


def _operation(method: str, query: dict[str, list[str]], headers: Any) -> str:
    if method == "HEAD":
        return "properties"
    if method == "GET" and query.get("comp") == ["pagelist"]:
        return "diff" if headers.get("x-ms-previous-snapshot-url") else "pagelist"
    if method == "GET" and not query.get("comp") and (
            headers.get("x-ms-range") or headers.get("range")):
        return "read"
    return "other"


def _parse_range(text: str | None, size: int) -> tuple[int, int]:
    """``bytes=a-b`` (inclusive) clamped to the blob, or the whole blob."""
    if not text:
        return 0, size - 1
    first, _, last = text.strip().removeprefix("bytes=").partition("-")
    start = int(first)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def diff_pages(old: bytes, new: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """``(kind, first byte, last byte)`` runs of 512-byte pages in ``[start, end]`` whose
    bytes differ between ``old`` and ``new``: "PageRange" when the new page holds data,
    "ClearRange" when it is zeros; consecutive pages of one kind merged."""
    out: list[tuple[str, int, int]] = []
    zero = bytes(PAGE)
    chunk = 256 * PAGE
    first = start - start % PAGE
    for base in range(first, end + 1, chunk):  # equal chunks are skipped whole
        top = min(base + chunk, end + 1)
        if old[base:top] == new[base:top] and top <= len(old) and top <= len(new):
            continue
        for offset in range(base, top, PAGE):
            a = old[offset:offset + PAGE].ljust(PAGE, b"\0")
            b = new[offset:offset + PAGE].ljust(PAGE, b"\0")
            if a == b:
                continue
            kind = "ClearRange" if b == zero else "PageRange"
            if out and out[-1][0] == kind and out[-1][2] == offset - 1:
                out[-1] = (kind, out[-1][1], offset + PAGE - 1)
            else:
                out.append((kind, offset, offset + PAGE - 1))
    return out


def page_list_xml(ranges: list[tuple[str, int, int]], next_marker: str = "") -> bytes:
    """The PageList reply of a diff."""
    parts = ['<?xml version="1.0" encoding="utf-8"?><PageList>']
    for kind, first, last in ranges:
        parts.append(f"<{kind}><Start>{first}</Start><End>{last}</End></{kind}>")
    parts.append(f"<NextMarker>{escape(next_marker)}</NextMarker></PageList>")
    return "".join(parts).encode()


def error_xml(code: str, message: str) -> bytes:
    """An Azure Storage error body."""
    return (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    # -- plumbing ------------------------------------------------------------------------------
    def _upstream(self) -> http.client.HTTPSConnection:
        local = self.server.local
        conn = getattr(local, "conn", None)
        if conn is None:
            host, port = self.server.state.upstream
            conn = http.client.HTTPSConnection(host, port, timeout=60,
                                               context=self.server.state.ca.client_context())
            local.conn = conn
        return conn

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            conn = self._upstream()
            try:
                conn.request(method, path, body=body or None, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                return reply.status, reply.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self.server.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        length_sent = False
        for name, value in headers or []:
            if name.lower() in HOP_HEADERS or name.lower() in ("date", "server"):
                continue
            if name.lower() == "content-length":
                if head:
                    self.send_header(name, value)
                    length_sent = True
                continue
            self.send_header(name, value)
        if not length_sent:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, retry_after: int | None = None,
               code_header: bool = True) -> None:
        headers = [("Content-Type", "application/xml")]
        if code_header:
            headers.append(("x-ms-error-code", code))
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        self._send(status, error_xml(code, message), headers, head=self.command == "HEAD")

    def _headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}

    # -- requests ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        operation = _operation(method, query, self.headers)
        with state.lock:
            state.requests.append((operation, url.path))
            if operation == "read":
                state.block_reads[url.path] = state.block_reads.get(url.path, 0) + 1
        fault = state.take(operation, url.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if operation == "read" and state.latency:
            time.sleep(state.latency)
        if fault is not None and fault.status:
            self._error(fault.status, fault.code, "injected fault " + "x" * 100_000,
                        fault.retry_after, fault.code_header)
            return
        if fault is not None and fault.body is not None:
            self._send(200, fault.body, [("Content-Type", "application/xml")])
            return
        if operation == "diff":
            self._diff(url.path, url.query, query)
            return
        status, headers, data = self._forward(method, self.path, self._headers(), body)
        if fault is not None and operation == "read" and status in (200, 206) and data:
            headers = [(k, v) for k, v in headers if k.lower() != "content-md5"]
            if fault.short:
                data = data[:len(data) // 2]
                headers.append(("Content-MD5", base64.b64encode(hashlib.md5(data).digest())
                                .decode()))
            elif fault.bad_md5:
                headers.append(("Content-MD5", base64.b64encode(hashlib.md5(data).digest())
                                .decode()))
                data = bytes([data[0] ^ 0xFF]) + data[1:]
        self._send(status, data, headers, head=method == "HEAD")

    def _upstream_get(self, path_and_query: str, method: str = "GET",
                      first: int | None = None, last: int | None = None
                      ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {"x-ms-version": self.headers.get("x-ms-version") or "2021-12-02"}
        if first is not None:
            headers["x-ms-range"] = f"bytes={first}-{last}"
        return self._forward(method, path_and_query, headers, b"")

    def _diff(self, path: str, raw_query: str, query: dict[str, list[str]]) -> None:
        state = self.server.state
        blob_query = "&".join(p for p in raw_query.split("&")
                              if p.split("=", 1)[0] not in ("comp", "marker", "maxresults"))
        current = f"{path}?{blob_query}"
        status, headers, body = self._upstream_get(current, "HEAD")  # the SAS is checked
        if status != 200:
            self._send(status, body, headers)
            return
        size = int(dict((k.lower(), v) for k, v in headers)["content-length"])
        previous = urlsplit(self.headers["x-ms-previous-snapshot-url"])
        if state.lineage.get(previous.path) is None \
                or state.lineage.get(previous.path) != state.lineage.get(path):
            self._error(409, "PreviousSnapshotNotFound",
                        "The previous snapshot is not found.")
            return
        start, end = _parse_range(self.headers.get("x-ms-range") or self.headers.get("range"),
                                  size)
        with state.lock:
            state.diff_windows.append((start, end))
        marker = (query.get("marker") or [""])[0]
        if marker:
            start = int(marker.removeprefix("next:"))
        ranges: list[tuple[str, int, int]] = []
        if start <= end:
            status, headers, new = self._upstream_get(current, "GET", start, end)
            if status not in (200, 206):
                self._send(status, new, headers)
                return
            status, headers, old = self._upstream_get(f"{previous.path}?{previous.query}",
                                                      "GET", start, end)
            if status not in (200, 206):
                self._send(status, old, headers)
                return
            ranges = [(kind, first + start, last + start)
                      for kind, first, last in diff_pages(old, new, 0, len(new) - 1)]
        next_marker = ""
        if len(ranges) > state.max_ranges:
            ranges = ranges[:state.max_ranges]
            next_marker = f"next:{ranges[-1][2] + 1}"
        self._send(200, page_list_xml(ranges, next_marker),
                   [("Content-Type", "application/xml"),
                    ("x-ms-blob-content-length", str(size))])


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or refuses our certificate is no server error."""
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError | ConnectionError):
            return
        super().handle_error(request, client_address)

    def __init__(self, state: FrontState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.local = threading.local()
        self.socket = state.ca.server_context().wrap_socket(  # handshakes in the handler threads
            self.socket, server_side=True, do_handshake_on_connect=False)


class DiffFront:
    """The front server on 127.0.0.1 (a free port), forwarding to Azurite at ``upstream``."""

    def __init__(self, upstream: tuple[str, int], ca: TestCa) -> None:
        self.state = FrontState(upstream=upstream, ca=ca)
        self._server = _FrontServer(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="azure-diff-front")

    @property
    def port(self) -> int:
        """The port the front listens on."""
        return int(self._server.server_address[1])

    def start(self) -> DiffFront:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def inject(self, fault: Fault) -> Fault:
        """Arm a fault (see :class:`Fault`)."""
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def set_lineage(self, path: str, lineage: str) -> None:
        """Blobs of one lineage (one managed disk's snapshots) can be diffed."""
        with self.state.lock:
            self.state.lineage[path] = lineage

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
