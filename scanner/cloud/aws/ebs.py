"""EBS snapshots read through the EBS direct APIs: the block fetcher behind the caching layer.

:class:`EbsFetcher` implements the ``BlockFetcher`` protocol of :mod:`scanner.sources.cache`
(``block_size``, ``size``, ``locator``, ``fetch(index)``): it lists the snapshot's written
blocks (ListSnapshotBlocks, paginated until ``NextToken`` is None; a page may be empty) one window
of :data:`WINDOW_BLOCKS` blocks at a time (``StartingBlockIndex``), keeping the tokens of a
few windows only (:data:`WINDOWS_KEPT`: memory stays bounded whatever the volume's size),
lists a window again before its tokens expire, serves unlisted blocks as zeros without a
call, and checks every GetSnapshotBlock reply: the data length and the
SHA-256 checksum (base64) must match, or the block is a :class:`TransientSourceError` (the
caching layer retries it). GetSnapshotBlock is sent by :class:`BlockGetter` (the client's
endpoint, credentials and urllib3 pool, signed with a cached signing key, the body read in
one piece: ~0.6 ms of CPU per block, kernel included, against ~1 ms through botocore's
request objects and ~2 ms for a boto3 call). Throttling is transient too; each request
waits for the account's and region's rate limiter first. Changed blocks between two snapshots of one
volume come from :func:`changed_blocks` (ListChangedBlocks, paginated, held as bounded runs).

Locator: ``{"kind": "ebs", "snapshot": "snap-...", "region": "eu-west-1", "account": "1234..."}``
(plus ``role_arn``/``external_id`` when the account is read through a role).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import mask_proxy_url
from botocore.parsers import create_parser
from urllib3 import exceptions as urllib3_exceptions
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry
from urllib3.util.url import parse_url

from scanner.cloud.aws.faults import error_code, translate
from scanner.cloud.aws.ratelimit import limiter
from scanner.cloud.aws.session import AwsAccount, client
from scanner.cloud.aws.sigv4 import Frozen, GetSigner
from scanner.errors import (
    LineageError,
    SourceError,
    SourceReadError,
    TransientSourceError,
)
from scanner.incremental import MAX_RUNS, BlockRuns
from scanner.sources.cache import CachedSource, CacheSettings, open_cached, retrying
from scanner.sources.integrity import check_digest, check_length
from scanner.sources.spill import shared_by_parent, store_key

BLOCK_SIZE = 512 * 1024
GIB = 1 << 30
PAGE_SIZE = 10000
TOKEN_MARGIN = 300.0  # list again this many seconds before the block tokens expire
MAX_VOLUME_GIB = 64 * 1024  # the largest EBS volume (io2 Block Express)
POOL = 64             # HTTP connections per fetcher (parallel read-ahead)
WINDOW_BLOCKS = 16384  # blocks listed at once (8 GiB of the volume)
WINDOWS_KEPT = 8       # windows whose tokens are held (at most 131,072 tokens)

# the fetchers open in this process, by locator: a forked hash worker starts from its
# parent's block listing (:class:`EbsFetcher`)
_OPEN: weakref.WeakValueDictionary[str, EbsFetcher] = weakref.WeakValueDictionary()

_ZEROS = bytes(BLOCK_SIZE)
_ZEROS_SHA256 = hashlib.sha256(_ZEROS).digest()
# ~100 ms per block: throughput comes from requests in flight (48 x 512 KiB per 50 ms of
# latency is ~500 MB/s), within the GetSnapshotBlock quota and a bounded cache
EBS_CACHE = CacheSettings(cache_bytes=128 << 20, read_ahead=48, threads=48)


def _expiry(value: Any, default: float) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return default


class BlockListing:
    """One paginated listing of the blocks ``[start, end)``: indices with their tokens,
    volume size, expiry."""

    def __init__(self, start: int = 0, end: int | None = None) -> None:
        self.start = start
        self.end = end
        self.tokens: dict[int, str] = {}
        self.volume_bytes = 0
        self.block_size = BLOCK_SIZE
        self.expiry = float("inf")


def _paginate(call: Any, what: str, bucket: Any, **params: Any) -> Any:
    """Every page of a List* call, until NextToken is None (pages may be empty); a bound on
    the number of pages keeps a misbehaving endpoint from looping us forever."""
    token: str | None = None
    pages = 0
    while True:
        bucket.acquire()
        args = dict(params, MaxResults=PAGE_SIZE)
        if token is not None:
            args["NextToken"] = token
        try:
            page = call(**args)
        except Exception as exc:
            raise translate(exc, what) from exc
        yield page
        token = page.get("NextToken")
        pages += 1
        if not token:
            return
        if pages > 1_000_000:
            raise SourceError(f"{what}: the listing does not end (over a million pages)")


def list_blocks(ebs: Any, snapshot_id: str, bucket: Any, start: int = 0,
                end: int | None = None, first_only: bool = False) -> BlockListing:
    """The written blocks ``[start, end)`` of a snapshot with their tokens
    (ListSnapshotBlocks from ``StartingBlockIndex=start``; ``end`` None: to the volume's
    end). The listing stops once a page reaches ``end`` (blocks past it are not kept), or,
    with ``first_only``, once one block is listed. A block outside the volume, or before
    ``start``, is refused."""
    out = BlockListing(start, end)
    extra = {"StartingBlockIndex": start} if start else {}
    for page in _paginate(ebs.list_snapshot_blocks, f"listing the blocks of {snapshot_id}",
                          bucket, SnapshotId=snapshot_id, **extra):
        gib = int(page.get("VolumeSize") or 0)
        if gib > MAX_VOLUME_GIB:
            raise SourceError(f"{snapshot_id}: the listing says the volume has {gib} GiB, more "
                              f"than EBS allows ({MAX_VOLUME_GIB} GiB)")
        out.volume_bytes = gib * GIB
        out.block_size = int(page.get("BlockSize") or BLOCK_SIZE)
        out.expiry = min(out.expiry, _expiry(page.get("ExpiryTime"), float("inf")))
        blocks = -(-out.volume_bytes // BLOCK_SIZE)
        reached = False
        for block in page.get("Blocks", []):
            index = int(block["BlockIndex"])
            if not 0 <= index < blocks:  # the tokens are bounded by the volume's blocks
                raise SourceError(f"{snapshot_id}: the listing names block {index}, outside "
                                  f"the volume's {blocks} blocks")
            if index < start:
                raise SourceError(f"{snapshot_id}: the listing names block {index}, before "
                                  f"block {start} where it was asked to start")
            if end is not None and index >= end:
                reached = True
                continue
            out.tokens[index] = str(block["BlockToken"])
        if reached or (first_only and out.tokens):
            break
    if out.block_size != BLOCK_SIZE:
        raise SourceError(f"{snapshot_id}: block size {out.block_size}, expected {BLOCK_SIZE}")
    return out


def changed_blocks(account: AwsAccount, region: str, first: str, second: str,
                   max_runs: int = MAX_RUNS) -> BlockRuns:
    """The blocks that differ between two snapshots of one volume (ListChangedBlocks), as
    runs built page by page (:class:`~scanner.incremental.BlockRuns`: memory bounded by
    ``max_runs``, not by the number of changed blocks; iterating gives the indices);
    :class:`LineageError` when they are not of one lineage. A listed block outside the
    volume is refused."""
    ebs = client(account, "ebs", region, retries=1)
    bucket = limiter(account.account_id, region, "list")
    out = BlockRuns(max_runs)
    size = 0
    try:
        for page in _paginate(ebs.list_changed_blocks, f"comparing {first} with {second}",
                              bucket, FirstSnapshotId=first, SecondSnapshotId=second):
            size = int(page.get("BlockSize") or BLOCK_SIZE)
            gib = int(page.get("VolumeSize") or MAX_VOLUME_GIB)
            blocks = -(-min(gib, MAX_VOLUME_GIB) * GIB // BLOCK_SIZE)
            for block in page.get("ChangedBlocks", []):
                index = int(block["BlockIndex"])
                if not 0 <= index < blocks:
                    raise SourceError(f"{second}: the changed-block list names block {index}, "
                                      f"outside the volume's {blocks} blocks")
                out.add(index)
    except SourceError as exc:
        if "lineage" in str(exc).lower() or "ValidationException" in str(exc):
            raise LineageError(str(exc)) from exc
        raise
    if len(out) and size != BLOCK_SIZE:
        raise SourceError(f"{second}: block size {size}, expected {BLOCK_SIZE}")
    return out


class EbsFetcher:
    """Blocks of one completed EBS snapshot, fetched one 512 KiB block at a time."""

    def __init__(self, snapshot_id: str, region: str, account: AwsAccount | None = None,
                 token_margin: float = TOKEN_MARGIN, probe: bool = True) -> None:
        self.snapshot_id = snapshot_id
        self.region = region
        self.account = account or AwsAccount()
        self._ebs = client(self.account, "ebs", region, retries=1, pool=POOL)
        self._getter = BlockGetter.of(self._ebs)
        self._get_bucket = limiter(self.account.account_id, region, "get")
        self._list_bucket = limiter(self.account.account_id, region, "list")
        self._margin = token_margin
        self._lock = threading.Lock()
        self.fetches = 0
        self.listings = 0
        self._windows: OrderedDict[int, BlockListing] = OrderedDict()
        self._listing_locks: dict[int, threading.Lock] = {}
        self._pid = os.getpid()
        key = store_key(self.locator)
        parent = _OPEN.get(key)
        if parent is not None and parent._pid != self._pid and parent._windows:
            # a hash worker forked from the process that opened the snapshot: its block
            # tokens (valid in any process; listed again before they expire) and the
            # volume's size, instead of a listing of its own. Copied without the parent's
            # lock, which a parent thread may have held at the fork: the dict itself is
            # whole (the GIL), and a window missing from it is listed here when needed.
            self._windows.update(parent._windows)
            self._size: int = parent._size
            head = self._windows[next(iter(self._windows))]
        else:
            head = self._list(0)  # the volume's size (and the first window's tokens)
            self._size = head.volume_bytes
        _OPEN[key] = self
        # one block read now: a snapshot we may list but not read (a KMS key the role may
        # not use, a tag condition) fails here, at open, with the account's reason, instead
        # of as unreadable bytes deep inside a filesystem; the block is served once later
        # (not repeated in a hash worker forked from the process that opened it)
        self._first: tuple[int, tuple[bytes, bytes | None]] | None = None
        if probe:
            written = head.tokens or list_blocks(
                self._ebs, self.snapshot_id, self._list_bucket, first_only=True).tokens
            if written:
                first = min(written)
                self._first = (first, self._fetch_retrying(first))

    def _fetch_retrying(self, index: int) -> tuple[bytes, bytes | None]:
        """One block and its SHA-256, transient faults retried with backoff (the caching
        layer does this for every later read)."""
        return retrying(lambda: self.fetch_with_digest(index))

    def _list(self, window: int) -> BlockListing:
        """List one window's blocks and hold its tokens (the least recently used window
        beyond :data:`WINDOWS_KEPT` is dropped)."""
        start = window * WINDOW_BLOCKS
        listing = list_blocks(self._ebs, self.snapshot_id, self._list_bucket, start,
                              start + WINDOW_BLOCKS)
        if listing.volume_bytes <= 0:
            raise SourceError(f"{self.snapshot_id}: the snapshot reports no volume size")
        if window and listing.volume_bytes != self._size:
            raise SourceError(f"{self.snapshot_id}: the listing's volume size changed from "
                              f"{self._size} to {listing.volume_bytes} bytes")
        with self._lock:
            self.listings += 1
            self._windows[window] = listing
            self._windows.move_to_end(window)
            while len(self._windows) > WINDOWS_KEPT:
                self._windows.popitem(last=False)
        return listing

    @property
    def block_size(self) -> int:
        """512 KiB."""
        return BLOCK_SIZE

    @property
    def size(self) -> int:
        """The volume's size in bytes."""
        return self._size

    @property
    def locator(self) -> dict[str, Any]:
        """``{"kind": "ebs", "snapshot": ..., "region": ..., "account": ...}``."""
        return {"kind": "ebs", "snapshot": self.snapshot_id, "region": self.region,
                **self.account.locator_fields()}

    @property
    def windows_held(self) -> int:
        """How many windows of block tokens are held now (at most :data:`WINDOWS_KEPT`)."""
        with self._lock:
            return len(self._windows)

    def _window(self, index: int, stale: BlockListing | None = None) -> BlockListing:
        """The listing of the window of block ``index``, listed (again) when it is not held,
        is about to expire, or is ``stale``; one listing for all the threads waiting."""
        window = index // WINDOW_BLOCKS
        with self._lock:
            lock = self._listing_locks.setdefault(window, threading.Lock())
        with lock:
            with self._lock:
                listing = self._windows.get(window)
                if listing is not None:
                    self._windows.move_to_end(window)
            if (listing is None or listing is stale
                    or time.time() >= listing.expiry - self._margin):
                listing = self._list(window)
            return listing

    def _token(self, index: int) -> tuple[BlockListing, str | None]:
        listing = self._window(index)
        return listing, listing.tokens.get(index)

    def fetch(self, index: int) -> bytes:
        """Block ``index``: verified bytes, or zeros for a block the snapshot never wrote."""
        return self.fetch_with_digest(index)[0]

    def fetch_with_digest(self, index: int) -> tuple[bytes, bytes | None]:
        """Block ``index`` (as :meth:`fetch`) and its SHA-256, computed once to verify it
        (the caching layer hands it to the kept blocks, which need it too)."""
        if index < 0 or index * BLOCK_SIZE >= self.size:
            raise SourceReadError(f"{self.snapshot_id}: block {index} is past the volume's end")
        first = self._first
        if first is not None and first[0] == index:
            self._first = None
            return first[1]
        listing, token = self._token(index)
        if token is None:
            return _ZEROS, _ZEROS_SHA256
        what = f"reading block {index} of {self.snapshot_id}"
        self._get_bucket.acquire()
        self.fetches += 1
        try:
            if self._getter is not None:
                data, reply = self._getter.get(self.snapshot_id, index, token)
            else:
                reply = self._ebs.get_snapshot_block(SnapshotId=self.snapshot_id,
                                                     BlockIndex=index, BlockToken=token)
                data = reply["BlockData"].read()
        except ClientError as exc:
            if error_code(exc) == "ValidationException" and "expire" in str(exc).lower():
                self._window(index, stale=listing)  # one listing for all those threads
                raise TransientSourceError(f"{what}: block token expired; listed again") from exc
            raise translate(exc, what) from exc
        except Exception as exc:
            raise translate(exc, what) from exc
        return data, verify_block(index, data, reply, what)

    def close(self) -> None:
        """Nothing held but a client (its pool closes with it)."""
        close = getattr(self._ebs, "close", None)
        if close is not None:
            close()


class BlockGetter:
    """GetSnapshotBlock as one urllib3 request on the client's own connection pool.

    A boto3 call costs ~2 ms of CPU (parameter validation, a dozen event hooks, request
    serialization, response parsing), and botocore's request objects, SigV4 signer and
    streamed response read still ~0.8 ms: at the 400 blocks/s that 200 MB/s needs, most of
    a core. This sends the same request with the client's resolved endpoint (so
    ``AWS_ENDPOINT_URL_EBS`` and the rest of boto3's configuration hold), its credentials
    (frozen per request: refreshed as boto3 refreshes them), a SigV4 signer whose signing key
    is cached per secret key and day (:class:`~scanner.cloud.aws.sigv4.GetSigner`) and the
    urllib3 pool of the client's HTTP session (its proxies, CA bundle and timeouts), reading
    the body in one piece; an error reply is parsed by botocore's parser for the service's
    protocol into the :class:`ClientError` a boto3 call would raise, and a connection failure
    becomes the botocore exception the client would raise. Built by :meth:`of`, which returns
    None when the client lacks one of these pieces (another botocore): the fetcher then
    calls boto3.
    """

    OPERATION = "GetSnapshotBlock"

    def __init__(self, base: str, signer: GetSigner, credentials: Any, http: Any,
                 parser: Any, output_shape: Any) -> None:
        self._base = base.rstrip("/")
        self._where = parse_url(self._base)
        self._path = self._where.path or ""
        self._signer = signer
        self._credentials = credentials
        self._http = http
        self._proxy = http._proxy_config.proxy_url_for(self._base)  # noqa: SLF001
        self._manager = http._get_connection_manager(self._base, self._proxy)  # noqa: SLF001
        self._pool: Any = None
        self._parser = parser
        self._shape = output_shape

    @classmethod
    def of(cls, ebs: Any) -> BlockGetter | None:
        """The getter of an ``ebs`` client (None when it cannot be built)."""
        try:
            meta = ebs.meta
            model = meta.service_model
            credentials = ebs._request_signer._credentials
            http = ebs._endpoint.http_session
            parser = create_parser(model.protocol)
            shape = model.operation_model(cls.OPERATION).output_shape
            base, region = str(meta.endpoint_url), str(meta.region_name)
            signer = GetSigner(base, region, str(model.signing_name or "ebs"))
            needed = ("_setup_ssl_cert", "_get_request_target", "_get_connection_manager")
            if (credentials is None or not hasattr(http, "_verify")
                    or not all(callable(getattr(http, name, None)) for name in needed)):
                return None
            return cls(base, signer, credentials, http, parser, shape)
        except Exception:  # noqa: BLE001 - any missing piece: plain boto3 calls
            return None

    def _connection(self) -> Any:
        """The urllib3 pool of the endpoint (the manager's: one per host), set up for TLS
        as botocore sets it up."""
        where = self._where
        pool = self._manager.connection_from_host(where.host, where.port, where.scheme)
        if pool is not self._pool:
            self._http._setup_ssl_cert(pool, self._base, self._http._verify)  # noqa: SLF001
            self._pool = pool
        return pool

    def get(self, snapshot_id: str, index: int, token: str) -> tuple[bytes, dict[str, Any]]:
        """The block's bytes and the reply's ``DataLength``, ``Checksum`` and
        ``ChecksumAlgorithm``; a :class:`ClientError` for an error reply."""
        path = f"{self._path}/snapshots/{quote(snapshot_id, safe='')}/blocks/{index}"
        query = f"blockToken={quote(token, safe='-_.~')}"
        url = f"{self._base}/snapshots/{quote(snapshot_id, safe='')}/blocks/{index}?{query}"
        frozen = self._credentials.get_frozen_credentials()
        headers = self._signer.headers(path, query, Frozen(frozen.access_key,
                                                           frozen.secret_key, frozen.token))
        try:
            response = self._connection().urlopen(
                "GET", self._http._get_request_target(url, self._proxy),  # noqa: SLF001
                headers=headers, retries=Retry(False), assert_same_host=False,
                preload_content=True, decode_content=False)
        except HTTPError as exc:
            raise _botocore_error(exc, url, self._proxy) from exc
        body = response.data
        headers = response.headers
        if response.status >= 300:
            parsed = self._parser.parse({"status_code": response.status,
                                         "headers": headers, "body": body}, self._shape)
            raise ClientError(parsed, self.OPERATION)
        return body, {"DataLength": headers.get("x-amz-Data-Length"),
                      "Checksum": headers.get("x-amz-Checksum"),
                      "ChecksumAlgorithm": headers.get("x-amz-Checksum-Algorithm")}


def _botocore_error(exc: HTTPError, url: str, proxy: str | None) -> Exception:
    """The botocore exception the client's HTTP session raises for a urllib3 failure."""
    if isinstance(exc, urllib3_exceptions.SSLError):
        return SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_exceptions.NewConnectionError):
        return EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_exceptions.ProxyError):
        return ProxyConnectionError(proxy_url=mask_proxy_url(proxy or ""), error=exc)
    if isinstance(exc, urllib3_exceptions.ConnectTimeoutError):
        return ConnectTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_exceptions.ReadTimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3_exceptions.ProtocolError):
        return ConnectionClosedError(error=exc, endpoint_url=url)
    return HTTPClientError(error=exc)


def verify_block(index: int, data: bytes, reply: dict[str, Any], what: str) -> bytes | None:
    """The block's SHA-256 (None when the reply's checksum is another algorithm); raise
    :class:`TransientSourceError` unless the block is 512 KiB, its length is the one
    announced and its digest the announced checksum."""
    check_length(data, BLOCK_SIZE, what, reply.get("DataLength"))
    algorithm = str(reply.get("ChecksumAlgorithm") or "SHA256")
    digest = check_digest(data, algorithm, reply.get("Checksum"), what)
    return digest if algorithm.upper() == "SHA256" else None


def open_ebs(locator: dict[str, Any]) -> CachedSource:
    """The block source of an ``ebs`` locator: the fetcher behind the shared caching layer
    (LRU, single-flight, read-ahead, retries with backoff), with the cache settings the
    locator carries."""
    snapshot = locator.get("snapshot")
    region = locator.get("region")
    if not isinstance(snapshot, str) or not isinstance(region, str):
        raise SourceError(f"an ebs locator needs a snapshot and a region, not {locator!r}")
    if "cache" not in locator:
        locator = {**locator, "cache": EBS_CACHE.as_dict()}
    fetcher = EbsFetcher(snapshot, region, AwsAccount.from_config(locator),
                         probe=not shared_by_parent(locator))
    return open_cached(fetcher, locator)
