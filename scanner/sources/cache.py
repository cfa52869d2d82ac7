"""The shared caching layer for slow block sources (cloud snapshots, remote blobs).

A slow store is a :class:`BlockFetcher`: it returns one fixed-size block by index.
:class:`CachedSource` turns a fetcher into a :class:`~scanner.sources.base.BlockSource`:

* an LRU cache of whole blocks, bounded by bytes (``CacheSettings.cache_bytes``);
* one fetch per block at a time: concurrent readers of a block in flight wait for it, and a
  failure reaches every waiter and is not cached;
* parallel read-ahead (a thread pool) once a reader goes forward or backward through the
  blocks (:mod:`scanner.sources.readahead`), at most ``read_ahead`` blocks in flight, never
  more than half the cache;
* retries with exponential backoff and jitter for :class:`~scanner.errors.TransientError`,
  then a :class:`~scanner.errors.SourceReadError` saying why;
* a ``verify(index, data)`` hook (checksums): a mismatch, or a block of the wrong length, is
  fetched again a few times, then is a :class:`~scanner.errors.SourceReadError` naming the
  block;
* behind the memory LRU, one spill file per opened disk shared by every process of the scan
  (:mod:`scanner.sources.spill`, ``CacheSettings.spill_bytes``): a block fetched by the
  scanning process or any forked hash worker is not fetched again in that scan, and a block
  evicted from memory is read back from the file;
* behind both, when the fetcher's locator names an immutable snapshot, the blocks kept on
  local disk between scans (:mod:`scanner.sources.blockstore`): what a scan read of this
  snapshot before (a redelivered scan), and, once told the parent snapshot and the ranges
  that changed since it (:meth:`CachedSource.follow_parent`), every parent block outside
  those ranges, served instead of fetched; blocks read by a walk or a selective read (not
  streamed file contents) are kept for the next scan, written by a keeper thread so the
  store's writes stay off the reader's path (at most :data:`KEEPING` blocks wait);
* the reader's intent (:func:`~scanner.sources.base.read_intent`) decides read-ahead: runs
  are followed for the walk of a full scan and for file contents, never for the metadata walk
  of an incremental scan (:data:`~scanner.sources.base.SELECTIVE`), which would fetch data
  blocks it does not need.

The source's locator is the fetcher's with the cache settings under ``"cache"``, so the
locator table (:mod:`scanner.sources.locators`) reopens it in a hash worker.
:class:`FileFetcher` serves any block source (a local image) as blocks: wrapping a local file
gives the same bytes, and its ``delay`` models a remote store's latency for benchmarks.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol, TypeVar

from scanner.errors import SnapfimError, SourceError, SourceReadError, TransientError
from scanner.incremental import ChangedRanges
from scanner.sources import blockstore
from scanner.sources import spill as spills
from scanner.sources.base import SELECTIVE, STREAM, BlockSource, current_read_intent
from scanner.sources.readahead import RunDetector

BLOCK_SIZE = 512 << 10
CACHE_BYTES = 64 << 20
SPILL_BYTES = 8 << 30
WARM_BLOCKS = 65536  # changed blocks fetched ahead of an incremental walk, at most
KEEPING = 64  # blocks waiting for the keeper thread, at most (32 MiB of 512 KiB blocks)

Verify = Callable[[int, bytes], None]
T = TypeVar("T")


class BlockFetcher(Protocol):
    """A store read one fixed-size block at a time.

    ``fetch(index)`` returns exactly ``block_size`` bytes (fewer only for the last block of
    ``size``), raises :class:`~scanner.errors.TransientError` for what a retry may fix and
    :class:`~scanner.errors.SourceReadError` for what it cannot. It is called from several
    threads at once. A fetcher may also have ``close()``, ``verify(index, data)`` and
    ``fetch_with_digest(index)``: the block and its SHA-256 (or None), when checking it
    computed that anyway (a block kept between scans is stored with it, not hashed again).
    """

    @property
    def block_size(self) -> int:
        """Bytes per block."""
        ...

    @property
    def size(self) -> int:
        """Bytes in the store."""
        ...

    @property
    def locator(self) -> dict[str, Any]:
        """The locator the table reopens (its kind's opener builds the fetcher and cache)."""
        ...

    def fetch(self, index: int) -> bytes:
        """Block ``index``."""
        ...


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How a :class:`CachedSource` caches, reads ahead and retries (JSON-able)."""

    cache_bytes: int = CACHE_BYTES      # bound of the cached blocks' bytes
    read_ahead: int = 32                # blocks fetched ahead of a reader, at most
    threads: int = 32                   # read-ahead fetches running at once
    attempts: int = 5                   # tries of a block that keeps failing transiently
    mismatch_attempts: int = 3          # tries of a block that fails verification
    backoff: float = 0.05               # seconds before the first retry, doubled each time
    max_backoff: float = 2.0            # cap of one wait
    spill_bytes: int = SPILL_BYTES      # bound of the scan's shared spill file (0: none)
    spill_dir: str | None = None        # where it is created (None: the temp directory)
    # blocks kept between scans (scanner.sources.blockstore); None: SNAPFIM_BLOCK_CACHE_DIR /
    # SNAPFIM_BLOCK_CACHE_BYTES (read when the source opens); a budget of 0: none kept
    keep_dir: str | None = None
    keep_bytes: int | None = None
    keep_content: bool | None = None  # streamed contents kept too (None: the environment)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (they ride along in the locator)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> CacheSettings:
        """Settings from :meth:`as_dict` output; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


@dataclass(slots=True)
class CacheStats:
    """Counters of a :class:`CachedSource`, for benchmarks and tests."""

    fetched: int = 0       # blocks fetched successfully (read-ahead included)
    read_ahead: int = 0    # of which fetched ahead of the reader (not for a read in progress)
    hits: int = 0          # block lookups served from the cache
    waits: int = 0         # block lookups that joined a fetch already in flight
    retries: int = 0       # fetch attempts repeated (transient fault or failed verification)
    cached_bytes: int = 0  # bytes cached now
    peak_bytes: int = 0    # most bytes ever cached at once
    spilled: int = 0       # blocks this process stored in the shared spill file
    spill_hits: int = 0    # blocks read back from it (fetched by another process, or evicted)
    kept_hits: int = 0     # blocks served from this snapshot's kept blocks (an earlier scan)
    parent_hits: int = 0   # blocks served from the parent snapshot's, outside the changes
    kept: int = 0          # blocks this process kept for the next scan
    waited: float = 0.0    # seconds readers waited for blocks not cached (fetched, in flight)


FETCHED, SPILLED, KEPT, PARENT = "fetched", "spilled", "kept", "parent"


class CachedSource:
    """A block source over a :class:`BlockFetcher`: LRU-cached, single-flight, read-ahead,
    retrying and verifying blocks (see the module docstring). ``read_at`` may be called from
    several threads."""

    def __init__(self, fetcher: BlockFetcher, settings: CacheSettings | None = None,
                 verify: Verify | None = None) -> None:
        self._fetcher = fetcher
        self._settings = settings = settings or CacheSettings()
        self._block_size = fetcher.block_size
        if self._block_size <= 0:
            raise SourceError(f"block size must be positive, not {self._block_size}")
        if settings.cache_bytes < 2 * self._block_size:
            raise SourceError(f"cache of {settings.cache_bytes} bytes cannot hold two blocks "
                              f"of {self._block_size}")
        self._size = fetcher.size
        self._blocks_total = -(-self._size // self._block_size)
        self._depth = max(0, min(settings.read_ahead,
                                 settings.cache_bytes // self._block_size // 2))
        self._verify = verify if verify is not None else getattr(fetcher, "verify", None)
        self._fetch_digest: Callable[[int], tuple[bytes, bytes | None]] | None = getattr(
            fetcher, "fetch_with_digest", None)
        self._digests: dict[int, bytes] = {}  # SHA-256 of cached fetched blocks, if known
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._inflight: dict[int, Future[bytes]] = {}
        self._ahead_inflight = 0
        self._runs = RunDetector(self._depth)
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._stats = CacheStats()
        self._spill, self._owns_spill = self._open_spill()
        self._keep_content = False
        self._keep = self._open_kept()
        self._kept: set[int] = set()  # blocks known kept for this snapshot (or being kept)
        self._keep_full = False
        self._keeper: ThreadPoolExecutor | None = None
        self._keeping = threading.BoundedSemaphore(KEEPING)
        self._parent: blockstore.SnapshotBlocks | None = None
        self._changed: ChangedRanges | None = None
        inherited = blockstore.inherited_parent(fetcher.locator)
        if inherited is not None:  # a hash worker forked from the process told the parent
            self._follow(*inherited)

    def _open_spill(self) -> tuple[spills.SpillStore | None, bool]:
        """The scan's shared spill store: the parent's when this process was forked from one
        that opened the same disk, else a new one (None when disabled or impossible)."""
        if self._settings.spill_bytes <= 0:
            return None, False
        locator = self._fetcher.locator
        found = spills.inherited(locator, self._size, self._block_size)
        if found is not None:
            return found, False
        try:
            store = spills.SpillStore(self._size, self._block_size, self._settings.spill_bytes,
                                      self._settings.spill_dir)
        except SourceError:
            return None, False  # no room for a file: the memory cache alone
        spills.register(locator, store)
        return store, True

    def _open_kept(self) -> blockstore.SnapshotBlocks | None:
        """This snapshot's blocks kept between scans (None: not a snapshot, or disabled)."""
        key = blockstore.snapshot_key(self._fetcher.locator)
        if key is None:
            return None
        settings = self._settings
        if None in (settings.keep_dir, settings.keep_bytes, settings.keep_content):
            found = blockstore.StoreSettings.from_env()
            settings = replace(settings, keep_dir=settings.keep_dir or found.directory,
                               keep_bytes=(found.budget if settings.keep_bytes is None
                                           else settings.keep_bytes),
                               keep_content=(found.content if settings.keep_content is None
                                             else settings.keep_content))
        self._keep_content = bool(settings.keep_content)
        if not settings.keep_bytes or not settings.keep_dir:
            return None
        return blockstore.BlockStore(settings.keep_dir, settings.keep_bytes).open(key)

    def follow_parent(self, parent: dict[str, Any], changed: Iterable[tuple[int, int]]
                      ) -> bool:
        """This snapshot differs from ``parent``'s (a locator) only within ``changed`` (byte
        ranges, from the cloud's changed-block list): from now on a block outside them is
        served from the parent's kept blocks, when there, instead of fetched. Hash workers
        forked from now on do the same. False when nothing of the parent is kept here."""
        key = blockstore.snapshot_key(parent)
        own = blockstore.snapshot_key(self._fetcher.locator)
        if self._keep is None or key is None or key == own:
            return False
        changed = list(changed)
        ranges = ChangedRanges(changed)
        if not self._follow(key, ranges):
            return False
        blockstore.remember_parent(self._fetcher.locator, key, ranges)
        self._warm(changed)
        return True

    def _warm(self, changed: list[tuple[int, int]]) -> None:
        """Start fetching, in the background, the changed blocks the parent's scan read
        (kept): this scan's walk reads them again, and would otherwise wait for each in
        turn. At most :data:`WARM_BLOCKS`, ``read_ahead`` at a time."""
        parent = self._parent
        if parent is None or self._depth <= 0:
            return
        wanted: list[int] = []
        for offset, length in changed:
            if length <= 0 or offset < 0 or offset >= self._size:
                continue
            last = (min(offset + length, self._size) - 1) // self._block_size
            for index in range(offset // self._block_size, last + 1):
                if len(wanted) >= WARM_BLOCKS:
                    break
                if parent.has(index):
                    wanted.append(index)
        if wanted:
            threading.Thread(target=self._warm_run, args=(sorted(set(wanted)),),
                             name="snapfim-warm", daemon=True).start()

    def _warm_run(self, wanted: list[int]) -> None:
        for start in range(0, len(wanted), self._depth):
            chunk = wanted[start:start + self._depth]
            for _round in range(3):  # a chunk the read plans crowded out goes again
                if self._closed:
                    return
                self._submit(chunk, -1, -1)
                with self._lock:
                    futures = [self._inflight.get(i) for i in chunk]
                for future in futures:
                    if future is not None:
                        with contextlib.suppress(Exception):
                            future.result()
                spill = self._spill
                with self._lock:
                    chunk = [i for i in chunk if i not in self._cache
                             and not (spill is not None and spill.stored(i))]
                if not chunk:
                    break

    def _follow(self, key: str, changed: ChangedRanges) -> bool:
        if self._keep is None:
            return False
        found = self._keep.store.open(key, create=False)
        if found is None:
            return False
        with self._lock:
            old, self._parent, self._changed = self._parent, found, changed
        if old is not None:
            old.close()
        return True

    # -- the BlockSource protocol --------------------------------------------------------------
    @property
    def size(self) -> int:
        """Size of the fetcher's store."""
        return self._size

    @property
    def locator(self) -> dict[str, Any]:
        """The fetcher's locator with the cache settings under ``"cache"``."""
        return {**self._fetcher.locator, "cache": self._settings.as_dict()}

    @property
    def stats(self) -> CacheStats:
        """A copy of the counters now."""
        with self._lock:
            return replace(self._stats)

    def local_file(self) -> None:
        """Reads go through the cache, never around it."""
        return None

    def disk_offset(self) -> int:
        """The fetcher's store is a whole disk."""
        return 0

    def read_at(self, offset: int, length: int) -> bytes:
        """Read through the cache; short only at the end of the source."""
        if offset < 0 or length < 0:
            raise SourceReadError(f"negative read at {offset} ({length} bytes)")
        length = min(length, self._size - offset)
        if length <= 0:
            return b""
        first = offset // self._block_size
        last = (offset + length - 1) // self._block_size
        self._plan(first, last)
        start = offset - first * self._block_size
        keep = self._keep is not None and (self._keep_content
                                           or current_read_intent() != STREAM)
        if first == last:
            data = self._block(first)
            if keep:
                self._remember(first, data)
            return data[start:start + length]
        blocks = [self._block(index) for index in range(first, last + 1)]
        if keep:
            for index, data in enumerate(blocks, first):
                self._remember(index, data)
        parts = [memoryview(data) for data in blocks]
        parts[0] = parts[0][start:]
        parts[-1] = parts[-1][:offset + length - last * self._block_size]
        return b"".join(parts)

    def will_read(self, ranges: list[tuple[int, int]]) -> None:
        """A read plan: start fetching the blocks of these byte ranges (at most
        ``read_ahead`` blocks in flight; blocks past that are left to the reads)."""
        wanted: list[int] = []
        for offset, length in ranges:
            if length <= 0 or offset < 0 or offset >= self._size:
                continue
            last = min(offset + length, self._size) - 1
            wanted.extend(range(offset // self._block_size, last // self._block_size + 1))
        if wanted:
            self._submit(list(dict.fromkeys(wanted)), -1, -1)

    def close(self) -> None:
        """Stop read-ahead, drop the cache and close the fetcher."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
            keeper, self._keeper = self._keeper, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if keeper is not None:  # the blocks waiting to be kept are kept first
            keeper.shutdown(wait=True)
        with self._lock:
            left = list(self._inflight.values())
            self._inflight.clear()
            self._cache.clear()
            self._digests.clear()
            self._stats.cached_bytes = 0
        for future in left:  # read-ahead cancelled before it ran
            if not future.done():
                future.set_exception(SourceReadError("block source closed"))
        if self._spill is not None and self._owns_spill:
            spills.unregister(self._fetcher.locator, self._spill)
            self._spill.close()
        blockstore.forget_parent(self._fetcher.locator)
        for kept in (self._keep, self._parent):
            if kept is not None:
                kept.close()
        close = getattr(self._fetcher, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> CachedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blocks ------------------------------------------------------------------------------
    def _block(self, index: int) -> bytes:
        """Block ``index`` from the cache, from a fetch in flight, or fetched now."""
        with self._lock:
            if self._closed:
                raise SourceReadError("block source closed")
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                self._stats.hits += 1
                return data
            future = self._inflight.get(index)
            owner = future is None
            if future is None:
                future = self._inflight[index] = Future()
            else:
                self._stats.waits += 1
        started = time.monotonic()
        try:
            if owner:
                self._run(index, future)
                return future.result()
            try:
                return future.result()
            except SourceError as exc:  # each waiter raises its own error, caused by the fetch's
                raise SourceReadError(str(exc)) from exc
        finally:
            waited = time.monotonic() - started
            with self._lock:
                self._stats.waited += waited

    def _run(self, index: int, future: Future[bytes], ahead: bool = False) -> None:
        """Get a block for its future (from the spill file, or fetched): cache it, or hand
        the failure to every waiter."""
        try:
            data, fetched, spilled = self._obtain(index)
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(index, None)
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        with self._lock:
            self._inflight.pop(index, None)
            stats = self._stats
            if fetched == FETCHED:
                stats.fetched += 1
                stats.read_ahead += ahead
            elif fetched == SPILLED:
                stats.spill_hits += 1
            elif fetched == KEPT:
                stats.kept_hits += 1
            else:
                stats.parent_hits += 1
            stats.spilled += spilled
            if not self._closed:
                self._store(index, data)
        future.set_result(data)

    def _obtain(self, index: int) -> tuple[bytes, str, bool]:
        """Block ``index``, where it came from (:data:`FETCHED`, :data:`SPILLED`,
        :data:`KEPT` or :data:`PARENT`), and whether it was stored in the spill file."""
        spill = self._spill
        if spill is None or spill.closed:
            data, source = self._kept_or_fetched(index)
            return data, source, False
        try:
            spilled = spill.claim(index)
        except (SourceError, OSError):
            spilled = None  # an unreadable spill file only costs a fetch
        if spilled is not None:
            return spilled, SPILLED, False
        try:
            data, source = self._kept_or_fetched(index)
        except BaseException:
            spill.release(index)
            raise
        return data, source, spill.put(index, data)

    def _kept_or_fetched(self, index: int) -> tuple[bytes, str]:
        """Block ``index`` from this snapshot's kept blocks, else from the parent's when it
        lies outside the changed ranges (then kept as this snapshot's too), else fetched."""
        keep = self._keep
        if keep is not None:
            expected = min(self._block_size, self._size - index * self._block_size)
            data = keep.get(index, expected)
            if data is not None and self._check(index, data, expected) is None:
                self._kept.add(index)
                return data, KEPT
            parent, changed = self._parent, self._changed
            if (parent is not None and changed is not None
                    and not changed.touches(index * self._block_size, expected)):
                data = parent.get(index, expected)
                if data is not None and self._check(index, data, expected) is None:
                    if keep.link_from(parent, index):
                        self._kept.add(index)
                    return data, PARENT
        return self._fetch(index), FETCHED

    def _remember(self, index: int, data: bytes) -> None:
        """Keep a block this process read (walk or selective intent) for the next scan, in
        the background (the store's writes and bookkeeping stay off the reader's path; at
        most :data:`KEEPING` blocks wait, then the reader waits); once the store refuses one
        (its budget is full), no more (so ``_kept`` stays bounded by what the budget
        holds). :meth:`close` waits for the blocks still waiting."""
        if self._keep is None or index in self._kept or self._keep_full:
            return
        with self._lock:
            if self._closed or index in self._kept:
                return
            self._kept.add(index)  # claimed: kept, or being kept
            if self._keeper is None:
                self._keeper = ThreadPoolExecutor(1, thread_name_prefix="snapfim-keep")
            keeper = self._keeper
            digest = self._digests.get(index)
        self._keeping.acquire()
        try:
            keeper.submit(self._keep_one, index, data, digest)
        except RuntimeError:  # closed meanwhile
            self._keeping.release()

    def _keep_one(self, index: int, data: bytes, digest: bytes | None) -> None:
        """The keeper thread: put one block (its SHA-256 when known) in the store."""
        try:
            keep = self._keep
            if keep is None or self._keep_full:
                with self._lock:
                    self._kept.discard(index)
                return
            if keep.put(index, data, digest):
                with self._lock:
                    self._stats.kept += 1
            else:
                self._keep_full = True
                with self._lock:
                    self._kept.discard(index)
        finally:
            self._keeping.release()

    def _store(self, index: int, data: bytes) -> None:
        """Cache a block, first evicting the least recently used ones (under the lock)."""
        stats = self._stats
        while self._cache and stats.cached_bytes + len(data) > self._settings.cache_bytes:
            gone, old = self._cache.popitem(last=False)
            stats.cached_bytes -= len(old)
            self._digests.pop(gone, None)
        self._cache[index] = data
        stats.cached_bytes += len(data)
        stats.peak_bytes = max(stats.peak_bytes, stats.cached_bytes)

    def _fetch(self, index: int) -> bytes:
        """One block from the fetcher, retried and verified."""
        settings = self._settings
        expected = min(self._block_size, self._size - index * self._block_size)
        where = f"block {index} (offset {index * self._block_size})"
        faults = mismatches = 0
        while True:
            try:
                if self._fetch_digest is not None:
                    data, digest = self._fetch_digest(index)
                else:
                    data, digest = self._fetcher.fetch(index), None
                data = bytes(data)
            except TransientError as exc:
                faults += 1
                if faults >= settings.attempts:
                    raise SourceReadError(f"{where}: still failing after {faults} attempts: "
                                          f"{exc}") from exc
                self._backoff(faults)
                continue
            problem = self._check(index, data, expected)
            if problem is None:
                if digest is not None and self._keep is not None:
                    with self._lock:  # dropped with the block (_store) or at close
                        self._digests[index] = digest
                return data
            mismatches += 1
            if mismatches >= settings.mismatch_attempts:
                raise SourceReadError(f"{where}: {problem} (fetched {mismatches} times)")
            self._backoff(mismatches)

    def _check(self, index: int, data: bytes, expected: int) -> str | None:
        """Why a fetched block cannot be used, or None."""
        if len(data) != expected:
            return f"{len(data)} bytes where {expected} were expected"
        if self._verify is not None:
            try:
                self._verify(index, data)
            except (SnapfimError, ValueError) as exc:
                return f"verification failed: {exc}"
        return None

    def _backoff(self, attempt: int) -> None:
        """Wait before retry ``attempt`` (1-based): exponential, capped, with jitter."""
        with self._lock:
            self._stats.retries += 1
        delay = min(self._settings.max_backoff, self._settings.backoff * 2 ** (attempt - 1))
        time.sleep(random.uniform(delay / 2, delay))

    # -- read-ahead --------------------------------------------------------------------------
    def _plan(self, first: int, last: int) -> None:
        """Start fetching, in the pool, the other blocks of a read and, when it continues a
        run of reads (forward or backward), the blocks that come next."""
        wanted = list(range(first + 1, last + 1))
        if current_read_intent() != SELECTIVE:
            with self._lock:
                wanted.extend(self._runs.observe(first, last))
        if wanted:  # most reads stay within a block the run already reached: nothing to do
            self._submit(wanted, first, last)

    def _submit(self, wanted: list[int], first: int, last: int) -> None:
        """Fetch ``wanted`` blocks in the pool (those of the read ``first..last`` count as
        the read's, the others as read-ahead), skipping what is cached or in flight."""
        spill = self._spill
        with self._lock:
            if self._closed:
                return
            jobs = []
            for index in wanted:
                if self._ahead_inflight >= self._depth:
                    break
                if (not 0 <= index < self._blocks_total or index in self._cache
                        or index in self._inflight
                        or (spill is not None and not first <= index <= last
                            and spill.stored(index))):
                    continue
                future: Future[bytes] = Future()
                self._inflight[index] = future
                self._ahead_inflight += 1
                jobs.append((index, future))
            if not jobs:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max(1, self._settings.threads),
                                                thread_name_prefix="snapfim-fetch")
            pool = self._pool
        for index, future in jobs:
            try:
                pool.submit(self._background, index, future, not first <= index <= last)
            except RuntimeError:  # closed meanwhile: the pool takes no more work
                with self._lock:
                    self._inflight.pop(index, None)
                    self._ahead_inflight -= 1
                if not future.done():
                    future.set_exception(SourceReadError("block source closed"))

    def _background(self, index: int, future: Future[bytes], ahead: bool) -> None:
        """A pool task: fetch one block of a read, or one ahead of the reader."""
        try:
            self._run(index, future, ahead)
        finally:
            with self._lock:
                self._ahead_inflight -= 1


class FileFetcher:
    """Any block source (a local image) served as fixed-size blocks, so it can sit under a
    :class:`CachedSource`. ``delay`` seconds are slept before each fetch, to model a remote
    store's latency (benchmarks, tests); ``owns`` closes the source with the fetcher."""

    def __init__(self, source: BlockSource, block_size: int = BLOCK_SIZE, delay: float = 0.0,
                 owns: bool = False, snapshot: str | None = None) -> None:
        self._source = source
        self._block_size = block_size
        self._delay = delay
        self._owns = owns
        self._snapshot = snapshot
        self.fetches = 0

    @property
    def block_size(self) -> int:
        """Bytes per block."""
        return self._block_size

    @property
    def size(self) -> int:
        """The source's size."""
        return self._source.size

    @property
    def locator(self) -> dict[str, Any]:
        """``{"kind": "file-blocks", "source": ..., "block_size": ..., "delay": ...}``, with
        ``"snapshot"`` when the bytes are named as an immutable snapshot (then its blocks
        may be kept between scans, :mod:`scanner.sources.blockstore`)."""
        out = {"kind": "file-blocks", "source": self._source.locator,
               "block_size": self._block_size, "delay": self._delay}
        if self._snapshot is not None:
            out["snapshot"] = self._snapshot
        return out

    def fetch(self, index: int) -> bytes:
        """Block ``index`` of the source (after the delay)."""
        self.fetches += 1
        if self._delay:
            time.sleep(self._delay)
        return self._source.read_at(index * self._block_size, self._block_size)

    def close(self) -> None:
        """Close the source when the fetcher owns it."""
        if self._owns:
            self._owns = False
            self._source.close()


def retrying(call: Callable[[], T], attempts: int = 5, backoff: float = 0.05,
             max_backoff: float = 2.0) -> T:
    """``call()``, a :class:`~scanner.errors.TransientError` retried with exponential backoff
    up to ``attempts`` tries in all (the last one's error raised): for the requests a fetcher
    makes outside the caching layer (listing, properties, a first block at open)."""
    for attempt in range(attempts):
        try:
            return call()
        except TransientError:
            if attempt == attempts - 1:
                raise
            delay = min(max_backoff, backoff * 2 ** attempt)
            time.sleep(random.uniform(delay / 2, delay))
    raise AssertionError("unreachable")


def open_cached(fetcher: BlockFetcher, locator: dict[str, Any]) -> CachedSource:
    """A :class:`CachedSource` over ``fetcher`` with the cache settings ``locator`` carries
    (what a slow store's locator opener returns); the fetcher is closed if that fails."""
    try:
        return CachedSource(fetcher, CacheSettings.from_dict(locator.get("cache")))
    except BaseException:
        close = getattr(fetcher, "close", None)
        if callable(close):
            close()
        raise


def open_file_blocks(locator: dict[str, Any]) -> CachedSource:
    """Reopen a ``file-blocks`` locator: its source, a :class:`FileFetcher` and the cache."""
    from scanner.sources.locators import open_locator

    source = open_locator(locator["source"])
    try:
        snapshot = locator.get("snapshot")
        fetcher = FileFetcher(source, int(locator.get("block_size", BLOCK_SIZE)),
                              float(locator.get("delay", 0.0)), owns=True,
                              snapshot=snapshot if isinstance(snapshot, str) else None)
    except BaseException:
        source.close()
        raise
    return open_cached(fetcher, locator)
