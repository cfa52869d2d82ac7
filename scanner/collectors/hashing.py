"""SHA-256 of file contents: streamed (no size cap), each inode once, over several processes;
sparse files whose holes outweigh their data get the sparse-aware digest (:func:`hash_node`).

Worker processes reopen the disk from its locator through the one table of locator kinds
(:mod:`scanner.sources.locators`: an image file, an LV, a cloud snapshot behind the caching
layer, any kind the table calls reopenable) and the filesystem at the volume's offset, then
hash by inode number. When the source cannot be reopened (a memory source), the total is
small, or we run inside a daemon process (a Celery prefork child), hashing happens
in-process.
"""

from __future__ import annotations

import hashlib
import mmap
import multiprocessing
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from scanner.disk.nodes import FileKind, Filesystem, Node, Runs
from scanner.errors import SnapfimError
from scanner.limits import Limits
from scanner.sources.base import SELECTIVE, STREAM, WALK, current_read_intent, read_intent

PARALLEL_MIN_BYTES = 64 << 20
CLAIM_BYTES = 16 << 20
CLAIM_FILES = 512
CHUNK = 1 << 20
PLAN_BYTES = 8 << 20  # files up to this size are read by plan in selective scans
LOCK_SECONDS = 30.0   # the job table's lock held longer than this: its holder died


class HashJob(NamedTuple):
    """One inode to hash: which volume (by key), inode number and size."""

    volume: str
    inode: int
    size: int


@dataclass(frozen=True, slots=True)
class VolumeRef:
    """How a worker process reopens a volume's filesystem.

    A partition is ``length`` bytes at ``offset`` of the disk ``disk_locator`` names; a volume
    that is no byte range of the disk (an LVM logical volume) carries its own
    ``volume_locator`` (then ``offset`` is 0 and ``length`` its size). ``fs_type`` lets the
    worker open the right backend at once (XFS without trying pytsk3 first).
    """

    disk_locator: dict[str, Any]
    offset: int
    length: int
    volume_locator: dict[str, Any] | None = None
    fs_type: str | None = None

    @property
    def reopenable(self) -> bool:
        """Whether another process can open this volume again (the locator table says)."""
        from scanner.sources.locators import reopenable

        return reopenable(self.volume_locator or self.disk_locator)


class HashResult(NamedTuple):
    """A file's content digest (None when it could not be read, with the error), and whether
    it is the sparse-aware digest (:func:`sparse_digest`) rather than plain SHA-256."""

    digest: str | None
    error: str | None
    sparse: bool = False


Progress = Callable[[int], None]
Tick = Callable[[], None]

SPARSE_DIGEST_TAG = b"snapfim-sparse-sha256-v1\0"
_RUN = struct.Struct("<QQ")


def hash_node(fs: Filesystem, node: Node, limits: Limits | None = None,
              tick: Tick | None = None) -> HashResult:
    """The content digest of a node, streamed.

    The rule (``limits.hole_bytes``): a file whose holes (from its extent map) add up to no
    more than its allocated data, or to no more than ``hole_bytes``, gets the SHA-256 of its
    content, holes read as zeros. Past that, hashing the zeros would cost more than the file's
    real data justifies (a 1 TiB sparse file: 10 minutes of CPU), so its digest is the
    sparse-aware one of :func:`sparse_digest`, which covers the extent map and every
    allocated byte: any change of the content still changes it. Files the backend has no map
    for (data in the inode, compressed or encrypted) are hashed whole. ``tick`` is called
    after every chunk hashed (a worker's sign of progress).
    """
    limits = limits or Limits()
    intent = _content_intent(fs, node)
    if intent == current_read_intent():  # (a loop over many files sets it once)
        return _content_digest(fs, node, limits, tick)
    with read_intent(intent):
        return _content_digest(fs, node, limits, tick)


def _content_digest(fs: Filesystem, node: Node, limits: Limits, tick: Tick | None) -> HashResult:
    """:func:`hash_node`'s digest, read with the intent already set."""
    if node.size > limits.hole_bytes:
        runs = fs.data_runs(node)
        if runs is not None:
            allocated = sum(length for _, length in runs)
            if node.size - allocated > max(allocated, limits.hole_bytes):
                return HashResult(sparse_digest(fs, node, runs, tick), None, True)
    digest = hashlib.sha256()
    for chunk in fs.iter_content(node, CHUNK):
        digest.update(chunk)
        if tick is not None:
            tick()
    return HashResult(digest.hexdigest(), None)


def _content_intent(fs: Filesystem, node: Node) -> str:
    """How a file's content is read: STREAM (sources may fetch ahead of the reads) in a full
    scan; in a selective one (incremental: only some files are read, scattered), the file's
    own blocks as a read plan and nothing guessed past them, unless it is big enough for
    streaming to pay (over :data:`PLAN_BYTES`)."""
    if current_read_intent() != SELECTIVE or node.size > PLAN_BYTES:
        return STREAM
    plan = getattr(fs, "plan_content", None)
    if callable(plan):
        plan(node)
    return SELECTIVE


def sparse_digest(fs: Filesystem, node: Node, runs: Runs, tick: Tick | None = None) -> str:
    """SHA-256 over ``b"snapfim-sparse-sha256-v1\\0"``, the file size (le64), then for each
    data run in offset order (:func:`scanner.disk.nodes.normalize_runs`) its offset and length
    (le64 each) followed by its bytes. Holes are not read; the same content laid out with
    different holes (zeros written into a hole) gives a different digest."""
    digest = hashlib.sha256(SPARSE_DIGEST_TAG)
    digest.update(struct.pack("<Q", node.size))
    for offset, length in runs:
        digest.update(_RUN.pack(offset, length))
        for chunk in fs.iter_content(node, CHUNK, offset, offset + length):
            digest.update(chunk)
            if tick is not None:
                tick()
    return digest.hexdigest()


def hash_in_process(jobs: Iterable[HashJob], filesystems: dict[str, Filesystem],
                    progress: Progress | None = None,
                    limits: Limits | None = None) -> dict[tuple[str, int], HashResult]:
    """Hash every job with the already-open filesystems."""
    results: dict[tuple[str, int], HashResult] = {}
    with read_intent(_loop_intent()):
        for job in jobs:
            results[(job.volume, job.inode)] = _hash_one(filesystems[job.volume], job, limits)
            if progress:
                progress(job.size)
    return results


def _loop_intent() -> str:
    """The read intent of a loop hashing many files: STREAM in a full scan (each file's own
    then matches it: :func:`hash_node` sets nothing per file), as it is in a selective one
    (each file sets its own)."""
    current = current_read_intent()
    return current if current == SELECTIVE else STREAM


def _hash_one(fs: Filesystem, job: HashJob, limits: Limits | None = None,
              tick: Tick | None = None) -> HashResult:
    # name, inode, kind, size, mode, uid, gid, nlink, mtime, ctime, crtime, atime
    node = Node("", job.inode, FileKind.FILE, job.size, 0, 0, 0, 1, None, None, None, None)
    try:
        return hash_node(fs, node, limits, tick)
    except SnapfimError as exc:
        return HashResult(None, str(exc))


class Hasher:
    """Hashes the files the walk finds, over ``workers`` processes, from the start of the walk.

    :meth:`feed` records each inode once, however many paths link to it, and publishes it in
    a shared memory table. Once the fed files add up to :data:`PARALLEL_MIN_BYTES`,
    ``workers - 1`` forked processes start and claim runs of published jobs (through a shared
    counter) while the walk goes on; :meth:`results` closes the table, lets the caller claim
    runs from the same counter, then collects the workers' digests (then an end mark).
    No wait is unbounded: a worker that dies, or hashes nothing for
    ``limits.hash_stall_seconds`` (then it is stopped), leaves the file it was on unreadable
    with the reason; the other jobs it had claimed are hashed by the caller. Small totals,
    sources another process cannot reopen, and daemon processes (Celery prefork children)
    hash in-process. The parent runs no helper threads, so its own walk is not slowed.
    """

    def __init__(self, refs: dict[str, VolumeRef], workers: int,
                 limits: Limits | None = None) -> None:
        self._refs = refs
        self._limits = limits or Limits()
        self._volumes = list(refs)
        self._volume_index = {name: i for i, name in enumerate(self._volumes)}
        self._workers = workers - 1
        reopenable = all(r.reopenable for r in refs.values())
        self._parallel = (self._workers > 0 and reopenable
                          and not multiprocessing.current_process().daemon)
        self._seen: set[tuple[str, int]] = set()
        self._jobs: list[HashJob] = []
        self._table: _JobTable | None = None
        self._procs: list[tuple[Any, Any]] = []  # (process, receiving end of its pipe)
        self.files = 0
        self.bytes = 0

    def feed(self, job: HashJob) -> None:
        """Add one file (ignored when its inode was fed already)."""
        key = (job.volume, job.inode)
        if key in self._seen:
            return
        self._seen.add(key)
        self._jobs.append(job)
        self.files += 1
        self.bytes += job.size
        if self._table is not None:
            self._table.append(self._volume_index[job.volume], job.inode, job.size)
        elif self._parallel and self.bytes >= PARALLEL_MIN_BYTES:
            self._start_workers()

    def _start_workers(self) -> None:
        table = _JobTable.create()
        if table is None or len(self._jobs) > table.capacity:
            self._parallel = False
            return
        for job in self._jobs:
            table.append(self._volume_index[job.volume], job.inode, job.size)
        table.publish()
        self._table = table
        ctx = multiprocessing.get_context("fork")
        self._progress = _Progress(self._workers)
        for slot in range(self._workers):
            receiver, sender = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, daemon=True,
                               args=(self._refs, self._volumes, table, sender,
                                     self._limits, self._progress, slot))
            proc.start()
            sender.close()
            self._procs.append((proc, receiver))

    def start(self) -> None:
        """Publish what was fed so far (the workers, if any, are running already)."""
        if self._table is not None:
            self._table.publish()

    def results(self, filesystems: dict[str, Filesystem],
                progress: Progress | None = None) -> dict[tuple[str, int], HashResult]:
        """Finish hashing (helping the workers); results keyed by (volume, inode)."""
        results: dict[tuple[str, int], HashResult] = {}
        table = self._table
        if table is None:
            return hash_in_process(self._jobs, filesystems, progress, self._limits)
        table.close()
        done = bytearray(len(self._jobs))
        with read_intent(_loop_intent()):
            while (run := table.claim()) is not None:
                for index in range(*run):
                    job = self._jobs[index]
                    results[(job.volume, job.inode)] = _hash_one(filesystems[job.volume], job,
                                                                 self._limits)
                    done[index] = 1
                    if progress:
                        progress(job.size)
        for slot, (proc, receiver) in enumerate(self._procs):
            try:
                for index, result in self._collect(slot, proc, receiver):
                    job = self._jobs[index]
                    results[(job.volume, job.inode)] = result
                    done[index] = 1
                    if progress:
                        progress(job.size)
            finally:
                receiver.close()
                proc.join()
        missed = [job for job, flag in zip(self._jobs, done, strict=True) if not flag]
        results.update(hash_in_process(missed, filesystems, progress, self._limits))
        self._procs, self._table = [], None
        table.release()
        return results


    def _collect(self, slot: int, proc: Any, receiver: Any
                 ) -> Iterator[tuple[int, HashResult]]:
        """A worker's results as its messages arrive, each wait bounded: when the worker
        dies or stalls (stopped here), the job it was on comes out as an error and the
        collection ends (its other claimed jobs are redone by the caller)."""
        stall = float(self._limits.hash_stall_seconds)
        seen, since = self._progress.ticks(slot), time.monotonic()
        while True:
            try:
                message = receiver.recv() if receiver.poll(min(1.0, stall)) else _NOTHING
            except (EOFError, OSError):
                message = _GONE
            if message is None:  # the end mark: every job it claimed is answered
                return
            if isinstance(message, list):
                yield from message
                continue
            if message is _NOTHING:
                ticks = self._progress.ticks(slot)
                if ticks != seen:
                    seen, since = ticks, time.monotonic()
                    continue
                if proc.is_alive() and time.monotonic() - since < stall:
                    continue
            reason = _stop(proc, stall, gone=message is _GONE)
            current = self._progress.current(slot)
            if current is not None:
                yield current, HashResult(None, reason)
            return


_NOTHING = object()  # no message within the poll interval
_GONE = object()     # the pipe closed without the end mark


def _stop(proc: Any, stall: float, gone: bool = False) -> str:
    """Why a worker gives no more results, once it is gone (stopped if it still runs; when
    its pipe closed, it is given a moment to finish dying first)."""
    if gone:
        proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(10)
        return (f"the hash worker made no progress for {stall:.0f} s while reading this file "
                "and was stopped")
    proc.join(10)
    return f"the hash worker process died (exit code {proc.exitcode}) while hashing this file"


class _Progress:
    """Per worker, in shared memory: the job it hashes now (index + 1; 0: none) and a count
    of the chunks and jobs it went through (its sign of life)."""

    SLOT = struct.Struct("<qq")

    def __init__(self, workers: int) -> None:
        self._buffer = mmap.mmap(-1, self.SLOT.size * max(1, workers))

    def _get(self, slot: int) -> tuple[int, int]:
        job, ticks = self.SLOT.unpack_from(self._buffer, slot * self.SLOT.size)
        return int(job), int(ticks)

    def start(self, slot: int, index: int | None) -> None:
        """Worker ``slot`` starts job ``index`` (None: between runs)."""
        _job, ticks = self._get(slot)
        self.SLOT.pack_into(self._buffer, slot * self.SLOT.size,
                            0 if index is None else index + 1, ticks + 1)

    def tick(self, slot: int) -> None:
        """Worker ``slot`` hashed one more chunk."""
        job, ticks = self._get(slot)
        self.SLOT.pack_into(self._buffer, slot * self.SLOT.size, job, ticks + 1)

    def ticks(self, slot: int) -> int:
        """How far worker ``slot`` went (a number that grows while it makes progress)."""
        return self._get(slot)[1]

    def current(self, slot: int) -> int | None:
        """The job worker ``slot`` is on, if any."""
        job = self._get(slot)[0]
        return job - 1 if job > 0 else None


class _JobTable:
    """Hash jobs in anonymous shared memory (inherited by forked workers): (volume index,
    inode, size) records, a published count the parent raises, a claimed count every process
    advances under one lock, and a closed flag. A lock not had within :data:`LOCK_SECONDS`
    (a process killed while holding it) makes the table broken for this process: it claims
    nothing more (a worker sends what it hashed, the parent hashes what it did not get)."""

    RECORD = struct.Struct("<qqq")
    CAPACITY = 4 << 20  # jobs; the mapping is only backed by memory where written
    PUBLISH_EVERY = 256

    def __init__(self, buffer: mmap.mmap, state: Any) -> None:
        self._buffer = buffer
        self._state = state  # [published, claimed, closed] under state's lock
        self._written = 0
        self.capacity = self.CAPACITY
        self.broken = False

    @contextmanager
    def _held(self) -> Iterator[bool]:
        """The table's lock, if it can be had within :data:`LOCK_SECONDS` (else False, and
        the table is broken for this process)."""
        lock = self._state.get_lock()
        got = not self.broken and lock.acquire(timeout=LOCK_SECONDS)
        self.broken = not got
        try:
            yield got
        finally:
            if got:
                lock.release()

    @classmethod
    def create(cls) -> _JobTable | None:
        try:
            buffer = mmap.mmap(-1, cls.CAPACITY * cls.RECORD.size)
        except OSError:
            return None
        return cls(buffer, multiprocessing.get_context("fork").Array("q", 3))

    def append(self, volume: int, inode: int, size: int) -> None:
        if self._written >= self.capacity:
            raise SnapfimError("too many files for the shared hash table")
        self.RECORD.pack_into(self._buffer, self._written * self.RECORD.size, volume, inode,
                              size)
        self._written += 1
        if self._written % self.PUBLISH_EVERY == 0:
            self.publish()

    def publish(self) -> None:
        with self._held() as got:
            if got:
                self._state[0] = self._written

    def close(self) -> None:
        with self._held() as got:
            if got:
                self._state[0] = self._written
                self._state[2] = 1

    def claim(self, wait: bool = False) -> tuple[int, int] | None:
        """Claim the next run of jobs ``[start, end)``; None when all are claimed and the table
        is closed (or, without ``wait``, when nothing is published right now)."""
        while True:
            with self._held() as got:
                if not got:
                    return None
                published, start, closed = self._state[0], self._state[1], self._state[2]
                end, size = start, 0
                while end < published and size < CLAIM_BYTES and end - start < CLAIM_FILES:
                    size += self.RECORD.unpack_from(self._buffer, end * self.RECORD.size)[2]
                    end += 1
                self._state[1] = end
            if end > start:
                return start, end
            if closed or not wait:
                return None
            time.sleep(0.002)

    def record(self, index: int) -> tuple[int, int, int]:
        volume, inode, size = self.RECORD.unpack_from(self._buffer, index * self.RECORD.size)
        return int(volume), int(inode), int(size)

    def release(self) -> None:
        self._buffer.close()


# -- worker process side ---------------------------------------------------------------------
def _worker_main(refs: dict[str, VolumeRef], volumes: list[str], table: _JobTable,
                 sender: Any, limits: Limits, progress: _Progress | None = None,
                 slot: int = 0) -> None:
    """Claim runs of jobs as the parent publishes them, hash them, send back the digests,
    then None (the end mark); ``progress`` tells the parent which job it is on."""
    os.environ["TZ"] = "UTC"
    filesystems: dict[str, Filesystem] = {}

    def tick() -> None:
        if progress is not None:
            progress.tick(slot)

    # the digests go out at the end: the parent reads them once its walk is done, and a
    # worker blocked on a full pipe meanwhile would not be hashing
    out: list[tuple[int, HashResult]] = []
    opening = current_read_intent()
    with read_intent(_loop_intent()):
        while (run := table.claim(wait=True)) is not None:
            for index in range(*run):
                if progress is not None:
                    progress.start(slot, index)
                volume, inode, size = table.record(index)
                job = HashJob(volumes[volume], inode, size)
                out.append((index, _hash_in_worker(refs, filesystems, job, limits, tick,
                                                   opening)))
            if progress is not None:
                progress.start(slot, None)
    sender.send(out)
    sender.send(None)
    sender.close()


def _hash_in_worker(refs: dict[str, VolumeRef], filesystems: dict[str, Filesystem],
                    job: HashJob, limits: Limits, tick: Tick | None = None,
                    opening: str = WALK) -> HashResult:
    """Hash one job, opening its volume's filesystem on first use (read with intent
    ``opening``: the worker's own, not the hashing loop's)."""
    fs = filesystems.get(job.volume)
    if fs is None:
        try:
            with read_intent(opening):
                fs = open_volume_filesystem(refs[job.volume])
        except SnapfimError as exc:
            return HashResult(None, str(exc))
        fs.limits = limits
        filesystems[job.volume] = fs
    return _hash_one(fs, job, limits, tick)


def open_volume_filesystem(ref: VolumeRef) -> Filesystem:
    """Open a volume's filesystem again from its reference (in a worker process).

    Partitions of a raw local image keep pytsk3's native image (the fast path); a logical
    volume is reopened from its own locator; XFS needs no pytsk3 image at all.
    """
    from scanner.disk.filesystems import open_filesystem
    from scanner.disk.tsk_image import open_image
    from scanner.disk.volumes import Volume
    from scanner.sources.base import SliceSource
    from scanner.sources.locators import open_locator

    if ref.volume_locator is not None:
        source = open_locator(ref.volume_locator)
        img = None if ref.fs_type == "xfs" else open_image(source)
        return open_filesystem(img, Volume(0, 0, source.size, "", "worker"), source, ref.fs_type)
    disk = open_locator(ref.disk_locator)
    volume = SliceSource(disk, ref.offset, ref.length)
    img = None if ref.fs_type == "xfs" else open_image(disk)
    return open_filesystem(img, Volume(0, ref.offset, ref.length, "", "worker"), volume,
                           ref.fs_type)
