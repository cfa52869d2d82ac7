"""Reading a database file or a directory listing through the scan's own mounts (the same
filesystem handles as the walk; no second pass over the disk), each read bounded."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from scanner.changetracking.model import Inventory
from scanner.disk.nodes import FileKind, Filesystem, Name, Node, entry_names
from scanner.disk.walker import Walker
from scanner.errors import DiskError, InventoryError, SourceReadError

T = TypeVar("T")
MAX_DIR_NAMES = 200_000
MAX_SOURCE_BYTES = 1 << 30  # all the files one source reads (a database, unit files...)


class ReadBudget:
    """The bytes one source may still read: many small files add up too (200,000 unit
    files of 1 MiB each would be 200 GB)."""

    def __init__(self, source: str, total: int = MAX_SOURCE_BYTES) -> None:
        self.source = source
        self.left = total
        self.total = total

    def take(self, size: int) -> None:
        """Count ``size`` bytes; raise :class:`InventoryError` past the total."""
        self.left -= size
        if self.left < 0:
            raise InventoryError(f"its files add up to more than {self.total} bytes, the "
                                 "bound")


def read_node(fs: Filesystem, node: Node, max_bytes: int, budget: ReadBudget | None = None,
              path: str | None = None) -> bytes:
    """The content of a regular file's node. Raises :class:`InventoryError` past
    ``max_bytes`` (or past what ``budget`` has left), DiskError / SourceReadError when it
    cannot be read."""
    _bound(node, max_bytes, budget, path)
    return b"".join(fs.iter_content(node))


def _bound(node: Node, max_bytes: int, budget: ReadBudget | None, path: str | None) -> None:
    """Raise :class:`InventoryError` when ``node`` is larger than ``max_bytes``, or than
    what ``budget`` has left (which it then takes)."""
    if node.size > max_bytes:
        raise InventoryError(f"{path or node.name}: {node.size} bytes, larger than "
                             f"{max_bytes}, the bound")
    if budget is not None:
        budget.take(node.size)


class Digested:
    """A file's content as it was read (chunks) with its SHA-256 (hex): the chunks are
    joined only when :meth:`data` is asked for, which a reader whose parse is reused by the
    digest never does (no second copy of an 8 MB rpmdb on a rescan)."""

    __slots__ = ("_chunks", "sha256", "size")

    def __init__(self, chunks: list[bytes]) -> None:
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        self._chunks = chunks
        self.sha256 = digest.hexdigest()
        self.size = sum(len(c) for c in chunks)

    def data(self) -> bytes:
        """The content."""
        if len(self._chunks) != 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0]


def read_digested(walker: Walker, path: str, max_bytes: int) -> Digested | None:
    """The content of the regular file at ``path`` (symlinks followed), None when there is
    none, bounded as :func:`read_node` bounds it."""
    found = walker.resolve(path, follow_last=True)
    if found is None or found[1].kind is not FileKind.FILE:
        return None
    _bound(found[1], max_bytes, None, path)
    return Digested(list(found[2].fs.iter_content(found[1])))


def exists(walker: Walker, path: str) -> bool:
    """Whether anything is at ``path`` (symlinks followed)."""
    return walker.resolve(path, follow_last=True) is not None


def list_names(walker: Walker, path: str) -> list[str] | None:
    """The names in the directory at ``path`` (None when it is none), at most
    :data:`MAX_DIR_NAMES`. Raises :class:`InventoryError` past that bound."""
    listed = list_entries(walker, path)
    return None if listed is None else [entry.name for entry in listed[0]]


def list_nodes(walker: Walker, path: str) -> tuple[list[Node], Filesystem] | None:
    """The entries of the directory at ``path`` and the filesystem holding them (None when
    it is none), at most :data:`MAX_DIR_NAMES`. Raises :class:`InventoryError` past that
    bound."""
    return _listed(walker, path, lambda fs, directory: fs.children(directory))


def list_entries(walker: Walker, path: str) -> tuple[list[Name], Filesystem] | None:
    """As :func:`list_nodes`, the entries as names, inode numbers and kinds only
    (:func:`scanner.disk.nodes.entry_names`: cheaper where few of them are opened)."""
    return _listed(walker, path, entry_names)


def _listed(walker: Walker, path: str, listing: Callable[[Filesystem, Node], Iterable[T]]
            ) -> tuple[list[T], Filesystem] | None:
    """What ``listing`` gives of the directory at ``path``, bounded (:func:`list_nodes`)."""
    found = walker.resolve(path, follow_last=True)
    if found is None or found[1].kind is not FileKind.DIRECTORY:
        return None
    entries: list[T] = []
    try:
        for child in listing(found[2].fs, found[1]):
            entries.append(child)
            if len(entries) > MAX_DIR_NAMES:
                raise InventoryError(f"{path}: more than {MAX_DIR_NAMES} names, the bound",
                                     path)
    except (DiskError, SourceReadError) as exc:  # the directory is named in the coverage
        raise InventoryError(str(exc), found[0]) from exc
    return entries, found[2].fs


class Canonical:
    """Package databases name files by the path they were installed under (``/bin/ls``); the
    walk names them by their resolved path (``/usr/bin/ls`` on merged-/usr systems). The
    first two components of each path are resolved once (``/bin``, ``/usr/lib64``: where
    distributions link directories); links deeper down are not followed (a file under one
    is looked up by the name the package gives)."""

    def __init__(self, walker: Walker, limit: int = 10_000) -> None:
        self._walker = walker
        self._heads: dict[str, str] = {}
        self._limit = limit
        self.prefixes: tuple[str, ...] = ("",)  # the package paths kept (all by default)

    def __call__(self, path: str) -> str:
        cut = path.find("/", path.find("/", 1) + 1)
        if cut < 0:  # /name or /dir/name: the directory is resolved whole
            cut = path.rfind("/")
        head = path[:cut]
        resolved = self._heads.get(head)
        if resolved is None:
            resolved = self._resolve(head)
        return path if resolved == head else resolved + path[cut:]

    def _resolve(self, head: str) -> str:
        resolved = head
        if len(self._heads) < self._limit and head:
            try:
                found = self._walker.resolve(head, follow_last=True)
            except (DiskError, SourceReadError):  # unreadable: the name as given
                found = None
            if found is not None and found[0] != head:
                resolved = found[0].rstrip("/")
        self._heads[head] = resolved
        return resolved


def monitored_prefixes(roots: Iterable[str], walker: Walker) -> tuple[str, ...]:
    """The package-database spellings (no leading ``/``) of the monitored roots: each
    root's fixed part (up to its first wildcard), and the same through the root
    directory's symlinks (``bin/`` for ``/usr/bin`` when ``/bin -> usr/bin``). Only files
    under these can have events, so only their package records are kept. A root directory
    that cannot be listed keeps every record (``("",)``): never an exception."""
    fixed = set()
    for root in roots:
        parts = []
        for part in root.strip("/").split("/"):
            if any(c in part for c in "*?["):
                break
            parts.append(part)
        fixed.add("/".join(parts))
    aliases: list[tuple[str, str]] = []
    try:
        listed = list_nodes(walker, "/")
        for node in (listed[0] if listed else ()):
            if node.kind is FileKind.SYMLINK:
                found = walker.resolve("/" + node.name, follow_last=True)
                if found is not None and found[0] != "/" + node.name:
                    aliases.append((found[0].strip("/"), node.name))
    except (DiskError, SourceReadError, InventoryError):
        return ("",)  # the root cannot be listed: every record is kept (a superset)
    out = set(fixed)
    for prefix in fixed:
        for target, alias in aliases:
            if prefix == target or prefix.startswith(target + "/"):
                out.add(alias + prefix[len(target):])
    if "" in out:  # "/" is monitored: everything
        return ("",)
    return tuple(sorted(out))


def fail_if_unreadable(walker: Walker, seen: set[str], source: str,
                       inventory: Inventory) -> None:
    """A source is only as good as every path it read: one the walker could not read
    (a damaged directory, a name two entries claim) makes the source unreadable (kept)
    rather than read in part (a package without its md5sums would look tampered)."""
    new = sorted(set(walker.result.unreadable) - seen)
    if new:
        inventory.fail(source, f"{new[0]} cannot be read ({walker.result.unreadable[new[0]]})",
                       new[0])
