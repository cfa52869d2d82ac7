"""Blocks of cloud snapshots kept on local disk between scans, keyed by snapshot.

An incremental scan walks the filesystem's metadata again (inode tables, directories, extent
trees) on the new snapshot. Most of those blocks did not change since the parent snapshot:
the cloud's own changed-block list (EBS ListChangedBlocks, Azure page ranges) says which did.
:class:`BlockStore` keeps the blocks a scan read of snapshot S (what the walk and selective
reads touched: metadata and small files, never streamed file contents), so the scan of S2,
told its parent S1 and the changed ranges of (S1, S2), serves every block outside those
ranges from S1's copy instead of fetching it, and records it as S2's (a hard link).

* one directory per snapshot (named by the SHA-256 of its key), one file per block: a header
  (magic, length, SHA-256 of the data) and the data (none for a block of zeros); a file is
  written under a temporary name and linked into place (only if no other process put it
  meanwhile), so a reader sees a whole entry or none;
* every entry is verified when read: a short, truncated or altered entry is a miss (removed,
  then fetched), never wrong data;
* the bytes kept are bounded (``budget``), counted once per file (hard links cost nothing;
  a file at least :data:`MIN_ENTRY`, so the number of files is bounded too)
  in a ``usage`` file under an ``flock`` shared by every process using the directory: a new
  entry that would pass the bound first evicts whole snapshots, least recently opened first,
  that no process holds open (each open snapshot holds a shared ``flock``); when nothing can
  be evicted the block is simply not kept;
* safe across processes: forked hash workers and unrelated scanner processes use one
  directory at once (entries appear whole, the count is updated under the lock, and a
  snapshot being read is never evicted).

Settings: ``SNAPFIM_BLOCK_CACHE_DIR`` (default: the user's cache directory,
``~/.cache/snapfim/blocks``), ``SNAPFIM_BLOCK_CACHE_BYTES`` (default 4 GiB; 0 disables) and
``SNAPFIM_BLOCK_CACHE_CONTENT=1`` (keep streamed file contents too: the whole written disk
after a full scan, so files re-hashed next time are read locally but for their changed
blocks), or explicitly through :class:`~scanner.sources.cache.CacheSettings`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.envreader import EnvReader

MAGIC = b"SNAPBLK1"
HEADER = struct.Struct("<8sQ32s")  # magic, data length, SHA-256 of the data
DEFAULT_BUDGET = 4 << 30
MIN_ENTRY = 4096  # bytes an entry is counted for at least (what a small file takes on disk)
STALE_TEMP_SECONDS = 3600.0  # a temporary file this old was left by a writer that died
_SUFFIX = ".blk"
USAGE_WIDTH = 20  # digits of the byte count in the usage file


def default_directory() -> str:
    """``~/.cache/snapfim/blocks`` (the platform's user cache directory)."""
    from platformdirs import user_cache_dir

    return str(Path(user_cache_dir("snapfim", appauthor=False)) / "blocks")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where snapshot blocks are kept, how many bytes at most (0: not kept at all), and
    whether streamed file contents are kept too (not only what walks and selective reads
    read)."""

    directory: str
    budget: int
    content: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreSettings:
        """``SNAPFIM_BLOCK_CACHE_DIR``, ``SNAPFIM_BLOCK_CACHE_BYTES`` and
        ``SNAPFIM_BLOCK_CACHE_CONTENT`` (0 or 1); a bad value is a one-line ConfigError
        naming the variable."""
        read = EnvReader(os.environ if environ is None else environ)
        budget = read.number("SNAPFIM_BLOCK_CACHE_BYTES", int, DEFAULT_BUDGET, unit="bytes",
                             minimum=0)
        content = read.choice("SNAPFIM_BLOCK_CACHE_CONTENT", ("0", "1"), "0") == "1"
        return cls(read.raw("SNAPFIM_BLOCK_CACHE_DIR") or default_directory(), budget,
                   content)


def snapshot_key(locator: Mapping[str, Any]) -> str | None:
    """The identity of an immutable snapshot a locator reads (its ``snapshot`` id, whatever
    the kind: an ``ebs`` locator and an Azure one name theirs so), or None: bytes that may
    change (a local image) are never kept."""
    snapshot = locator.get("snapshot")
    return f"snapshot:{snapshot}" if isinstance(snapshot, str) and snapshot else None


_SECTION = threading.Lock()  # held by the thread inside a store's flock section
_guarded: list[bool] = []


def _guard_forks() -> None:
    """From the first use on (never at import): a fork waits until no thread of this
    process is inside a flock section, and the child starts with the section free."""
    if not _guarded:
        _guarded.append(True)
        os.register_at_fork(before=_SECTION.acquire, after_in_parent=_SECTION.release,
                            after_in_child=_SECTION.release)


def cost(size: int) -> int:
    """What an entry of ``size`` bytes is counted for: at least :data:`MIN_ENTRY` (so the
    number of entries is bounded by the budget too)."""
    return max(size, MIN_ENTRY)


@functools.lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    return bytes(size)


def encode(data: bytes, digest: bytes | None = None) -> bytes:
    """A block as stored: header + data (a block of zeros: the header alone, with the
    digest of its zeros); ``digest``: the data's SHA-256 when the caller has it (computed
    when it checked the block)."""
    if digest is None or len(digest) != 32:
        digest = hashlib.sha256(data).digest()
    header = HEADER.pack(MAGIC, len(data), digest)
    zeros = not data or (data[0] == 0 and data == _zeros(len(data)))  # memcmp, not a count
    return header if zeros else header + data


def decode(raw: bytes, expected: int) -> bytes | None:
    """The data of a stored entry if it is whole, ``expected`` bytes long and matches its
    SHA-256; None otherwise."""
    if len(raw) not in (HEADER.size, HEADER.size + expected) or len(raw) < HEADER.size:
        return None
    magic, length, digest = HEADER.unpack_from(raw)
    data = raw[HEADER.size:] if len(raw) > HEADER.size else bytes(expected)
    if magic != MAGIC or length != expected or hashlib.sha256(data).digest() != digest:
        return None
    return data


class BlockStore:
    """The directory of kept snapshots, its byte count and its eviction (see the module
    docstring). Cheap to create; nothing is read until a snapshot is opened."""

    def __init__(self, directory: str | os.PathLike[str], budget: int) -> None:
        self.root = Path(directory)
        self.budget = budget
        self._lock_path = self.root / ".lock"
        self._usage_path = self.root / ".usage"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's lock (``flock`` on ``.lock``), held by one thread of one process.

        A flock belongs to the open file, which a fork shares: a child forked while another
        thread held it (a hash worker forked by the walk while the keeper thread writes)
        would hold it for as long as it lives. So no fork happens while a thread of this
        process is inside (:func:`_guard_forks`)."""
        _guard_forks()
        with _SECTION:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def _usage(self) -> int:
        """The bytes kept, from the count file; recounted when it is missing or damaged
        (empty or not the fixed-width digits :meth:`_set_usage` writes: a crash right after
        it was created)."""
        try:
            text = self._usage_path.read_bytes()
        except OSError:
            return self._count()
        if len(text) != USAGE_WIDTH or not text.isdigit():
            return self._count()
        return int(text)

    def _set_usage(self, value: int) -> None:
        """Write the count in place (under the lock: no reader sees it half written; a fixed
        width, so it never needs truncating). Not a new file renamed over the old one: on
        ext4 that rename forces the new file's data to disk, ~0.6 ms of CPU per entry kept.
        A damaged count is recounted by the next reader."""
        fd = os.open(self._usage_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            text = f"{max(0, value):0{USAGE_WIDTH}d}".encode()
            if os.pwrite(fd, text, 0) != len(text):
                raise OSError(f"short write of {self._usage_path}")
            os.ftruncate(fd, len(text))
        finally:
            os.close(fd)

    def _count(self) -> int:
        """Bytes of every entry, each file once however many links it has; temporary files
        left by dead writers are removed."""
        seen: set[tuple[int, int]] = set()
        total = 0
        now = time.time()
        for sub in self._snapshot_dirs():
            for entry in _scandir(sub):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.name.startswith(".tmp-"):
                    if now - st.st_mtime > STALE_TEMP_SECONDS:
                        _unlink(entry.path)
                    continue
                if entry.name.endswith(_SUFFIX) and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += cost(st.st_size)
        return total

    def _snapshot_dirs(self) -> list[Path]:
        return [Path(e.path) for e in _scandir(self.root)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]

    def open(self, key: str, create: bool = True) -> SnapshotBlocks | None:
        """The kept blocks of one snapshot, held open (never evicted) until closed; None when
        the store cannot be used (or, without ``create``, when nothing is kept for it)."""
        path = self.root / hashlib.sha256(key.encode()).hexdigest()[:40]
        try:
            if not create and not path.is_dir():
                return None
            self.root.mkdir(parents=True, exist_ok=True)
            if create and not self._usage_path.exists():
                with self._locked():
                    if not self._usage_path.exists():  # another process may have counted
                        self._set_usage(self._count())
            path.mkdir(exist_ok=True)
            return SnapshotBlocks(self, path)
        except OSError:
            return None

    def reserve(self, nbytes: int) -> bool:
        """Count ``nbytes`` more, evicting unused snapshots first if the budget needs it;
        False (nothing counted) when they cannot fit."""
        if nbytes > self.budget:
            return False
        try:
            with self._locked():
                usage = self._usage()
                if usage + nbytes > self.budget:
                    usage -= self._evict(usage + nbytes - self.budget)
                if usage + nbytes > self.budget:
                    self._set_usage(usage)
                    return False
                self._set_usage(usage + nbytes)
                return True
        except OSError:
            return False

    def release(self, nbytes: int) -> None:
        """Count ``nbytes`` fewer (a reserved entry not written, an entry removed)."""
        if nbytes <= 0:
            return
        with contextlib.suppress(OSError), self._locked():
            self._set_usage(self._usage() - nbytes)

    def _evict(self, wanted: int) -> int:
        """Remove whole snapshots that no process holds open, least recently opened first,
        until ``wanted`` bytes are freed (under the lock); returns the bytes freed."""
        freed = 0
        by_age = sorted(self._snapshot_dirs(), key=_last_used)
        for sub in by_age:
            if freed >= wanted:
                break
            freed += _remove_unused(sub)
        return freed


class SnapshotBlocks:
    """The kept blocks of one snapshot, for one process (a shared ``flock`` on the
    snapshot's ``.open`` file keeps it from eviction while it is open)."""

    def __init__(self, store: BlockStore, path: Path) -> None:
        self.store = store
        self.path = path
        self._fd: int | None = None
        for _ in range(3):  # an eviction may remove the directory between mkdir and flock
            fd = os.open(path / ".open", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.fstat(fd).st_ino == os.stat(path / ".open").st_ino
            except OSError:
                same = False
            if same:
                self._fd = fd
                os.utime(path / ".open")  # last used: eviction goes oldest first
                return
            os.close(fd)
            path.mkdir(parents=True, exist_ok=True)
        raise OSError(f"cannot hold {path} open")

    def _entry(self, index: int) -> Path:
        return self.path / f"{index}{_SUFFIX}"

    def has(self, index: int) -> bool:
        """Whether an entry exists for block ``index`` (not verified)."""
        return self._fd is not None and self._entry(index).exists()

    def get(self, index: int, expected: int) -> bytes | None:
        """Block ``index`` (``expected`` bytes), verified; None when absent, and when the
        entry is damaged (it is removed)."""
        if self._fd is None:
            return None
        entry = self._entry(index)
        try:
            with entry.open("rb") as handle:
                raw = handle.read(HEADER.size + expected + 1)
                links = os.fstat(handle.fileno()).st_nlink
        except OSError:
            return None
        data = decode(raw, expected)
        if data is None:  # uncounted by what its writer counted (whatever it holds now)
            written = HEADER.size if len(raw) <= HEADER.size else HEADER.size + expected
            self._discard(entry, cost(written), links)
        return data

    def put(self, index: int, data: bytes, digest: bytes | None = None) -> bool:
        """Keep block ``index`` (written whole or not at all; ``digest``: its SHA-256 when
        known); False when the budget or the disk refuses."""
        if self._fd is None:
            return False
        entry = self._entry(index)
        if entry.exists():
            return True
        raw = encode(data, digest)
        if not self.store.reserve(cost(len(raw))):
            return False
        temp = self.path / f".tmp-{os.getpid()}-{index}-{time.monotonic_ns()}"
        try:
            with temp.open("xb") as handle:
                handle.write(raw)
            os.link(temp, entry)  # whole, and only if no other process put it meanwhile
        except FileExistsError:
            self.store.release(cost(len(raw)))
            return True
        except OSError:
            self.store.release(cost(len(raw)))
            return False
        finally:
            _unlink(temp)
        return True

    def link_from(self, other: SnapshotBlocks, index: int) -> bool:
        """Record ``other``'s entry of block ``index`` as this snapshot's too (a hard link:
        no bytes counted); False when it cannot."""
        if self._fd is None:
            return False
        entry = self._entry(index)
        if entry.exists():
            return True
        try:
            os.link(other._entry(index), entry)
        except FileExistsError:
            return True
        except OSError:
            return False
        return True

    def _discard(self, entry: Path, size: int, links: int) -> None:
        """Remove a damaged entry (and uncount it if it was its file's last link)."""
        try:
            entry.unlink()
        except OSError:
            return
        if links <= 1:
            self.store.release(size)

    def close(self) -> None:
        """Let the snapshot be evicted again (by this process's count)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as found:
            return list(found)
    except OSError:
        return []


def _unlink(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _last_used(sub: Path) -> float:
    try:
        return (sub / ".open").stat().st_mtime
    except OSError:
        return 0.0


def _remove_unused(sub: Path) -> int:
    """Remove a snapshot directory no process holds open; returns the bytes freed (files
    whose last link this was)."""
    try:
        fd = os.open(sub / ".open", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # open in some process: kept
        freed = 0
        for entry in _scandir(sub):
            if entry.name == ".open":
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                os.unlink(entry.path)
            except OSError:
                continue
            if entry.name.endswith(_SUFFIX) and st.st_nlink <= 1:
                freed += cost(st.st_size)
        _unlink(sub / ".open")
        with contextlib.suppress(OSError):
            sub.rmdir()
        return freed
    finally:
        os.close(fd)


# -- the parent a source follows, found again in a forked hash worker --------------------------
_PARENTS: dict[str, tuple[int, str, Any]] = {}


def _registry_key(locator: Mapping[str, Any]) -> str:
    from scanner.sources.spill import store_key

    return store_key(dict(locator))


def remember_parent(locator: Mapping[str, Any], key: str, changed: Any) -> None:
    """The source of ``locator`` follows the parent snapshot ``key`` with these changed
    ranges: processes forked from now on that reopen the locator follow it too."""
    _PARENTS[_registry_key(locator)] = (os.getpid(), key, changed)


def inherited_parent(locator: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The parent key and changed ranges a parent process told the source of ``locator``
    before forking this one (None in the process that was told, or when none was)."""
    found = _PARENTS.get(_registry_key(locator))
    if found is None or found[0] == os.getpid():
        return None
    return found[1], found[2]


def forget_parent(locator: Mapping[str, Any]) -> None:
    """The source of ``locator`` closed in the process that was told its parent."""
    key = _registry_key(locator)
    found = _PARENTS.get(key)
    if found is not None and found[0] == os.getpid():
        del _PARENTS[key]
