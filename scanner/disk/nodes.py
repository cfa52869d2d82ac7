"""What every filesystem backend hands to the walker: one directory entry's metadata."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from scanner.limits import Limits


class FileKind(StrEnum):
    """File types, named as ``ls -l`` users think of them."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    CHAR_DEVICE = "char_device"
    BLOCK_DEVICE = "block_device"
    FIFO = "fifo"
    SOCKET = "socket"
    OTHER = "other"


KIND_MODE_BITS: dict[FileKind, int] = {
    FileKind.FILE: stat.S_IFREG,
    FileKind.DIRECTORY: stat.S_IFDIR,
    FileKind.SYMLINK: stat.S_IFLNK,
    FileKind.CHAR_DEVICE: stat.S_IFCHR,
    FileKind.BLOCK_DEVICE: stat.S_IFBLK,
    FileKind.FIFO: stat.S_IFIFO,
    FileKind.SOCKET: stat.S_IFSOCK,
    FileKind.OTHER: 0,
}


@dataclass(slots=True)
class Node:
    """Metadata of one allocated directory entry, as a filesystem backend reads it.

    ``mode`` holds permission and set-id bits only (no type bits); times are integer
    nanoseconds since the epoch, ``None`` where the filesystem has no such time.
    ``handle`` is the backend's own reference (an inode number for pytsk3).
    ``unreadable`` is set (the reason) on a name the directory lists as live whose
    metadata cannot be read (an NTFS index entry naming a damaged or unallocated MFT
    record): the entry exists, its state is unknown, the walk reports the path unreadable
    (the other fields are placeholders).
    """

    name: str
    inode: int
    kind: FileKind
    size: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int | None
    ctime: int | None
    crtime: int | None
    atime: int | None
    link: str | None = None
    handle: Any = None
    unreadable: str | None = None


class Name(NamedTuple):
    """One entry of a directory without its metadata (:func:`entry_names`): its name (escaped
    as :attr:`Node.name`), inode number and kind. Open it with ``node_by_inode``."""

    name: str
    inode: int
    kind: FileKind


def entry_names(fs: Filesystem, directory: Node) -> Iterator[Name]:
    """The entries :meth:`Filesystem.children` lists, as names, inode numbers and kinds only:
    through the backend's own ``names`` method when it has one (the same entries, the same
    checks and errors as ``children``, without building each entry's metadata), else taken
    from ``children``. For readers that need a few files of a large directory (``dpkg/info``)."""
    names: Callable[[Node], Iterator[Name]] | None = getattr(fs, "names", None)
    if names is not None:
        return names(directory)
    return (Name(n.name, n.inode, n.kind) for n in fs.children(directory))


def read_in_chunks(read: Callable[[int, int], bytes], size: int, chunk_size: int, inode: int,
                   describe: Callable[[BaseException], str], start: int = 0) -> Iterator[bytes]:
    """Yield bytes ``start`` to ``size`` of an inode as ``read(offset, length)`` returns them, in
    chunks; a backend's ``OSError`` (or a short read) becomes :class:`SourceReadError`."""
    from scanner.errors import SourceReadError

    offset = start
    while offset < size:
        try:
            data = read(offset, min(chunk_size, size - offset))
        except OSError as exc:
            raise SourceReadError(f"read of inode {inode} at {offset} failed: "
                                  f"{describe(exc)}") from exc
        if not data:
            raise SourceReadError(f"inode {inode}: data ends at {offset} of {size} bytes")
        offset += len(data)
        yield data


Runs = list[tuple[int, int]]  # (offset, length) in bytes of a file's content


def normalize_runs(runs: Iterable[tuple[int, int]], size: int) -> Runs:
    """The data runs of a file as a canonical list: clipped to ``[0, size)``, sorted, with
    overlapping and adjacent runs merged and empty ones dropped (an extent map read from a
    disk may be anything; the result depends only on the set of bytes it covers)."""
    out: Runs = []
    for start, length in sorted((max(o, 0), min(o + n, size)) for o, n in runs):
        if length <= start:
            continue
        if out and start <= out[-1][0] + out[-1][1]:
            first = out[-1][0]
            out[-1] = (first, max(out[-1][1], length - first))
        else:
            out.append((start, length - start))
    return out


@dataclass(frozen=True, slots=True)
class FsIdentity:
    """How /etc/fstab may name a filesystem."""

    uuid: str | None = None
    label: str | None = None


class Filesystem(Protocol):
    """One opened filesystem. Backends: pytsk3 (ext, FAT, exFAT, NTFS); XFS later.

    Methods raise :class:`~scanner.errors.CorruptFilesystem` or
    :class:`~scanner.errors.SourceReadError` when structures cannot be read.

    A backend may also have ``names(directory) -> Iterator[Name]``: what ``children`` lists,
    without each entry's metadata (the ext backend has it); :func:`entry_names` falls back
    to ``children`` for the others.
    """

    fs_type: str
    case_sensitive: bool
    identity: FsIdentity
    limits: Limits  # the scan's bounds (link length, xattr bytes, sparse hashing)

    def root(self) -> Node:
        """The root directory."""
        ...

    def children(self, directory: Node) -> Iterator[Node]:
        """Allocated entries of a directory (no ``.``/``..``, no virtual or deleted entries)."""
        ...

    def read_link(self, node: Node) -> str:
        """Target of a symbolic link, read as bytes and escaped like names
        (:func:`scanner.paths.decode_name`); longer than ``limits.link_length``: error."""
        ...

    def iter_content(self, node: Node, chunk_size: int = 1 << 20, start: int = 0,
                     end: int | None = None) -> Iterator[bytes]:
        """The file's data from ``start`` to ``end`` (default: its size), in chunks (sparse
        regions read as zeros)."""
        ...

    def data_runs(self, node: Node) -> Runs | None:
        """Where the file's data lies (:func:`normalize_runs`; holes and unwritten extents
        are left out), from its extent map; None when the backend cannot tell (data kept in
        the inode, no map): the content is then read whole."""
        ...

    def node_by_inode(self, inode: int) -> Node:
        """Re-find a node by inode number (used by hashing workers)."""
        ...

    def xattrs(self, node: Node) -> dict[bytes, bytes]:
        """Extended attributes, full name bytes (``b"security.capability"``) -> value bytes;
        empty if unsupported. More than ``limits.xattr_bytes`` in all: error."""
        ...

    def close(self) -> None:
        """Release the filesystem."""
        ...
