"""SHA-256 of file contents: streamed (no size cap), each inode once, over several processes.

Worker processes reopen the disk from its locator (a raw image path, later a cloud snapshot)
and the filesystem at the volume's offset, then hash by inode number. When the source cannot
be reopened, the total is small, or we run inside a daemon process (a Celery prefork child),
hashing happens in-process.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.errors import SnapfimError

PARALLEL_MIN_BYTES = 64 << 20
BATCH_BYTES = 48 << 20
BATCH_FILES = 2048
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class HashJob:
    """One inode to hash: which volume (by key), inode number and size."""

    volume: str
    inode: int
    size: int


@dataclass(frozen=True, slots=True)
class VolumeRef:
    """How a worker process reopens a volume's filesystem."""

    disk_locator: dict[str, Any]
    offset: int
    length: int


HashResult = tuple[str | None, str | None]  # (hex digest, error)
Progress = Callable[[int], None]


def hash_node(fs: Filesystem, node: Node) -> str:
    """SHA-256 hex digest of a node's content, streamed."""
    digest = hashlib.sha256()
    for chunk in fs.iter_content(node, CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def hash_in_process(jobs: Iterable[HashJob], filesystems: dict[str, Filesystem],
                    progress: Progress | None = None) -> dict[tuple[str, int], HashResult]:
    """Hash every job with the already-open filesystems."""
    results: dict[tuple[str, int], HashResult] = {}
    for job in jobs:
        results[(job.volume, job.inode)] = _hash_one(filesystems[job.volume], job)
        if progress:
            progress(job.size)
    return results


def _hash_one(fs: Filesystem, job: HashJob) -> HashResult:
    node = Node(name="", inode=job.inode, kind=FileKind.FILE, size=job.size, mode=0, uid=0,
                gid=0, nlink=1, mtime=None, ctime=None, crtime=None, atime=None)
    try:
        return hash_node(fs, node), None
    except SnapfimError as exc:
        return None, str(exc)


def can_parallelize(jobs: list[HashJob], refs: dict[str, VolumeRef], workers: int) -> bool:
    """True when spreading the jobs over ``workers`` processes (the caller being one of
    them) is possible and worth it."""
    if workers < 2 or multiprocessing.current_process().daemon:
        return False
    if sum(j.size for j in jobs) < PARALLEL_MIN_BYTES:
        return False
    reopenable = {"local", "slice"}
    return all(_root_kind(ref.disk_locator) in reopenable for ref in refs.values())


def _root_kind(locator: dict[str, Any]) -> str:
    while locator.get("kind") == "slice":
        locator = locator["parent"]
    return str(locator.get("kind"))


class ParallelHasher:
    """Hashes in worker processes while the caller goes on, then helps with what is left.

    ``start`` queues batches and returns at once; ``results`` lets the calling process
    steal the batches no worker has started yet (from the back of the queue, while the
    workers go on from the front), so ``workers`` processes plus the caller share the work.
    """

    def __init__(self, refs: dict[str, VolumeRef], workers: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                         initializer=_worker_init, initargs=(refs,))
        self._queued: list[tuple[Future[list[tuple[HashJob, HashResult]]], list[HashJob]]] = []

    def start(self, jobs: list[HashJob]) -> None:
        """Queue the jobs; returns at once."""
        self._queued += [(self._pool.submit(_worker_hash, batch), batch)
                         for batch in _batches(jobs)]

    def results(self, filesystems: dict[str, Filesystem],
                progress: Progress | None = None) -> dict[tuple[str, int], HashResult]:
        """Wait for every queued job, hashing unstarted ones here; keyed by (volume, inode)."""
        results: dict[tuple[str, int], HashResult] = {}
        try:
            for future, batch in reversed(self._queued):
                if not future.cancel():
                    break
                results.update(hash_in_process(batch, filesystems, progress))
            pending = {f for f, _ in self._queued if not f.cancelled()}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    for job, result in future.result():
                        results[(job.volume, job.inode)] = result
                        if progress:
                            progress(job.size)
        finally:
            self._queued = []
            self._pool.shutdown(cancel_futures=True)
        return results


def _batches(jobs: list[HashJob]) -> list[list[HashJob]]:
    batches: list[list[HashJob]] = []
    current: list[HashJob] = []
    size = 0
    for job in jobs:
        current.append(job)
        size += job.size
        if size >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


# -- worker process side ---------------------------------------------------------------------
_worker_refs: dict[str, VolumeRef] = {}
_worker_fs: dict[str, Filesystem] = {}


def _worker_init(refs: dict[str, VolumeRef]) -> None:
    global _worker_refs
    _worker_refs = refs
    _worker_fs.clear()
    os.environ["TZ"] = "UTC"


def _worker_filesystem(volume: str) -> Filesystem:
    fs = _worker_fs.get(volume)
    if fs is None:
        from scanner.disk.filesystems import open_filesystem
        from scanner.disk.tsk_image import open_image
        from scanner.disk.volumes import Volume
        from scanner.sources.base import SliceSource
        from scanner.sources.locators import open_locator

        ref = _worker_refs[volume]
        disk = open_locator(ref.disk_locator)
        img = open_image(disk)
        vol = Volume(0, ref.offset, ref.length, "", "worker")
        fs = open_filesystem(img, vol, SliceSource(disk, ref.offset, ref.length))
        _worker_fs[volume] = fs
    return fs


def _worker_hash(batch: list[HashJob]) -> list[tuple[HashJob, HashResult]]:
    out = []
    for job in batch:
        try:
            fs = _worker_filesystem(job.volume)
        except SnapfimError as exc:
            out.append((job, (None, str(exc))))
            continue
        out.append((job, _hash_one(fs, job)))
    return out
