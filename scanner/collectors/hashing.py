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
from dataclasses import dataclass
from typing import Any, NamedTuple

from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.errors import SnapfimError

PARALLEL_MIN_BYTES = 64 << 20
BATCH_BYTES = 48 << 20
BATCH_FILES = 2048
CHUNK = 1 << 20


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
        """Whether another process can open this volume again."""
        from scanner.sources.locators import reopenable

        return reopenable(self.volume_locator or self.disk_locator)


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


class Hasher:
    """Collects hash jobs during the walk; hashes them over ``workers`` processes.

    :meth:`feed` records each inode once, however many paths link to it. :meth:`start`
    forks ``workers - 1`` processes that inherit the job list (nothing is pickled on the way
    in) and pull batches through a shared counter while the caller goes on with other work;
    :meth:`results` makes the caller pull batches from the same counter, then collects the
    workers' digests. A worker that dies leaves its batches to the caller. Small totals,
    sources another process cannot reopen, and daemon processes (Celery prefork children)
    hash in-process. The parent runs no helper threads, so its own work is not slowed.
    """

    def __init__(self, refs: dict[str, VolumeRef], workers: int) -> None:
        self._refs = refs
        self._workers = workers - 1
        reopenable = all(r.reopenable for r in refs.values())
        self._parallel = (self._workers > 0 and reopenable
                          and not multiprocessing.current_process().daemon)
        self._seen: set[tuple[str, int]] = set()
        self._jobs: list[HashJob] = []
        self._batches: list[list[HashJob]] = []
        self._counter: Any = None
        self._procs: list[tuple[Any, Any]] = []  # (process, receiving end of its pipe)
        self.files = 0
        self.bytes = 0

    def feed(self, job: HashJob) -> None:
        """Add one file (ignored when its inode was fed already)."""
        key = (job.volume, job.inode)
        if key not in self._seen:
            self._seen.add(key)
            self._jobs.append(job)
            self.files += 1
            self.bytes += job.size

    def start(self) -> None:
        """Start the worker processes when that is possible and worth it; returns at once."""
        self._batches = _batches(self._jobs)
        if not self._parallel or self.bytes < PARALLEL_MIN_BYTES or len(self._batches) < 2:
            return
        ctx = multiprocessing.get_context("fork")
        self._counter = ctx.Value("l", 0)
        for _ in range(min(self._workers, len(self._batches) - 1)):
            receiver, sender = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, daemon=True,
                               args=(self._refs, self._batches, self._counter, sender))
            proc.start()
            sender.close()
            self._procs.append((proc, receiver))

    def _claim(self) -> int:
        if self._counter is None:
            return -1
        with self._counter.get_lock():
            index = int(self._counter.value)
            self._counter.value = index + 1
        return index

    def results(self, filesystems: dict[str, Filesystem],
                progress: Progress | None = None) -> dict[tuple[str, int], HashResult]:
        """Finish hashing (helping the workers); results keyed by (volume, inode)."""
        if not self._batches:
            self._batches = _batches(self._jobs)
        results: dict[tuple[str, int], HashResult] = {}
        done: set[int] = set()
        if self._counter is None:
            for batch in self._batches:
                results.update(hash_in_process(batch, filesystems, progress))
            return results
        while (index := self._claim()) < len(self._batches):
            results.update(hash_in_process(self._batches[index], filesystems, progress))
            done.add(index)
        for proc, receiver in self._procs:
            try:
                for index, batch_results in receiver.recv():
                    done.add(index)
                    for job, result in zip(self._batches[index], batch_results, strict=True):
                        results[(job.volume, job.inode)] = result
                        if progress:
                            progress(job.size)
            except (EOFError, OSError):
                pass  # the worker died; its batches are redone below
            finally:
                receiver.close()
                proc.join()
        for index, batch in enumerate(self._batches):
            if index not in done:
                results.update(hash_in_process(batch, filesystems, progress))
        self._procs, self._counter = [], None
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
def _worker_main(refs: dict[str, VolumeRef], batches: list[list[HashJob]], counter: Any,
                 sender: Any) -> None:
    """Pull batches through the shared counter, hash them, send back (index, results)."""
    os.environ["TZ"] = "UTC"
    filesystems: dict[str, Filesystem] = {}
    out: list[tuple[int, list[HashResult]]] = []
    while True:
        with counter.get_lock():
            index = int(counter.value)
            counter.value = index + 1
        if index >= len(batches):
            break
        out.append((index, [_hash_in_worker(refs, filesystems, job) for job in batches[index]]))
    sender.send(out)
    sender.close()


def _hash_in_worker(refs: dict[str, VolumeRef], filesystems: dict[str, Filesystem],
                    job: HashJob) -> HashResult:
    fs = filesystems.get(job.volume)
    if fs is None:
        try:
            fs = open_volume_filesystem(refs[job.volume])
        except SnapfimError as exc:
            return None, str(exc)
        filesystems[job.volume] = fs
    return _hash_one(fs, job)


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
