"""Azure Storage's REST API as snapfim speaks it: requests over one pooled session, replies
read within bounds, failures translated into snapfim's errors (:mod:`scanner.errors`) by
status (:mod:`scanner.cloud.httpstatus`) and error code, ranged reads whose length and
``Content-MD5`` are checked (:mod:`scanner.sources.integrity`).

Every message names a blob by its URL without its SAS (:func:`redact`): a SAS URL's query
is its credential, and an HTTP library's own messages are scrubbed of it too.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit

import requests

from scanner.cloud.httpstatus import retry_after, status_error, transient_status
from scanner.errors import (
    ConfigError,
    LineageError,
    SnapfimError,
    SourceError,
    SourceReadError,
    TransientSourceError,
)
from scanner.redact import redact_url, scrub
from scanner.sources.cache import retrying
from scanner.sources.integrity import check_digest, check_length

PAGE = 512
FOOTER_SIZE = 512
API_VERSION = "2021-12-02"   # x-ms-previous-snapshot-url needs 2019-07-07 or later
MAX_BLOB_BYTES = (64 << 40) + FOOTER_SIZE  # the largest managed disk (64 TiB) and its footer
MAX_RETRY_AFTER = 10.0       # seconds a Retry-After is honoured, at most
TIMEOUT = (10.0, 60.0)       # connect, read (seconds)
POOL = 64                    # HTTP connections per session (parallel read-ahead)


def redact(url: str) -> str:
    """The URL without its SAS (:func:`scanner.redact.redact_url`): names the blob and the
    snapshot or version read, holds no signature."""
    return redact_url(url)


def check_url(url: object) -> str:
    """``url`` when it can be a SAS URL of a blob (https, a container and a blob);
    :class:`ConfigError` otherwise."""
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


class _ScrubQueries(logging.Filter):
    """Cuts URL queries (a SAS) out of the records of the HTTP library's debug logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in args)
        return True


_SCRUBBER = _ScrubQueries()


def session() -> requests.Session:
    """An HTTP session: the process's proxy and CA settings (REQUESTS_CA_BUNDLE), a pool
    sized for read-ahead, no retries of its own (the caching layer retries). urllib3's
    request log (DEBUG) is scrubbed of URL queries from then on."""
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if _SCRUBBER not in logger.filters:
            logger.addFilter(_SCRUBBER)
    http = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL,
                                            max_retries=0)
    http.mount("https://", adapter)
    http.headers.update({"x-ms-version": API_VERSION, "Accept-Encoding": "identity",
                         "User-Agent": "snapfim"})
    return http


def _error_code(reply: requests.Response) -> str:
    """The Azure error code of a failed reply: its header, else the ``<Code>`` of the first
    4 KiB of its body (never more is read)."""
    code = reply.headers.get("x-ms-error-code") or ""
    if not code and reply.request.method != "HEAD":
        try:
            head = next(reply.iter_content(chunk_size=4096), b"")[:4096]
        except (requests.exceptions.RequestException, StopIteration):
            head = b""
        match = re.search(rb"<Code>([^<]{1,100})</Code>", head)
        code = match.group(1).decode("ascii", "replace") if match else ""
    return re.sub(r"[^A-Za-z0-9_.-]", "", code)[:100]


def reply_error(reply: requests.Response, what: str) -> SnapfimError:
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
        wait = retry_after(reply.headers.get("Retry-After"), MAX_RETRY_AFTER)
        if wait:
            time.sleep(wait)
    reply.close()
    return status_error(status, text)


def request(http: requests.Session, method: str, url: str, what: str,
            headers: dict[str, str] | None = None, stream: bool = False) -> requests.Response:
    """One request; transport failures translated (their messages scrubbed of the URL's
    query)."""
    try:
        return http.request(method, url, headers=headers, timeout=TIMEOUT, stream=stream,
                            allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        raise SourceError(f"{what}: TLS failure: {scrub(str(exc))[:300]}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TransientSourceError(f"{what}: {type(exc).__name__}: "
                                   f"{scrub(str(exc))[:300]}") from None
    except requests.exceptions.RequestException as exc:
        raise SourceError(f"{what}: {type(exc).__name__}: {scrub(str(exc))[:300]}") from None


def body(reply: requests.Response, limit: int, what: str) -> bytes:
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


def ranged_read(http: requests.Session, url: str, offset: int, length: int,
                what: str) -> bytes:
    """``length`` bytes at ``offset`` of the blob, their length and MD5 checked."""
    reply = request(http, "GET", url, what, stream=True, headers={
        "x-ms-range": f"bytes={offset}-{offset + length - 1}",
        "x-ms-range-get-content-md5": "true"})
    if reply.status_code not in (200, 206):
        raise reply_error(reply, what)
    data = body(reply, length, what) if reply.status_code == 206 else b""
    if reply.status_code == 200:  # a server that ignored the range
        reply.close()
        raise SourceReadError(f"{what}: the server ignored the requested range")
    check_length(data, length, what)
    check_digest(data, "MD5", reply.headers.get("Content-MD5"), what)
    return data


def blob_size(http: requests.Session, url: str, name: str) -> int:
    """The blob's size (Get Blob Properties), checked: a multiple of 512, room for a footer,
    at most the largest managed disk."""
    what = f"reading the properties of {name}"
    reply = retrying(lambda: _properties(http, url, what))
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


def _properties(http: requests.Session, url: str, what: str) -> requests.Response:
    reply = request(http, "HEAD", url, what)
    if reply.status_code != 200:
        raise reply_error(reply, what)
    reply.close()
    return reply


