"""The pytsk3 filesystem backend: ext2/3/4, FAT, exFAT and NTFS behind :class:`Filesystem`.

Guards from FACTS.md: directory listings include deleted names (keep allocated names with
allocated metadata only); skip ``.``/``..``, virtual entries (``$OrphanFiles``, FAT's
``$MBR``/``$FAT1``/``$FAT2``), the FAT volume label entry, and inode 0 except on NTFS;
symlink targets are read as bytes (``meta.link`` folds control characters into ``^``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytsk3

from scanner.disk.ext_dirs import parse_directory
from scanner.disk.ext_geometry import (
    INCOMPAT_INLINE_DATA,
    INLINE_DATA_FL,
    ExtGeometry,
    ExtInodeReader,
    inode_flags,
    inode_generation,
)
from scanner.disk.nodes import (
    FileKind,
    FsIdentity,
    Name,
    Node,
    Runs,
    normalize_runs,
    read_in_chunks,
)
from scanner.errors import CorruptFilesystem, DirectoryInconsistent, SourceReadError
from scanner.limits import Limits
from scanner.paths import decode_component, decode_name
from scanner.sources.base import plans_reads, will_read
from scanner.timestamps import NS_MAX, NS_MIN, storable_ns

if TYPE_CHECKING:
    from scanner.disk.ntfs_meta import NtfsMeta

_META_KIND = {
    pytsk3.TSK_FS_META_TYPE_REG: FileKind.FILE,
    pytsk3.TSK_FS_META_TYPE_DIR: FileKind.DIRECTORY,
    pytsk3.TSK_FS_META_TYPE_LNK: FileKind.SYMLINK,
    pytsk3.TSK_FS_META_TYPE_CHR: FileKind.CHAR_DEVICE,
    pytsk3.TSK_FS_META_TYPE_BLK: FileKind.BLOCK_DEVICE,
    pytsk3.TSK_FS_META_TYPE_FIFO: FileKind.FIFO,
    pytsk3.TSK_FS_META_TYPE_SOCK: FileKind.SOCKET,
}
_VIRTUAL_TYPES = {pytsk3.TSK_FS_META_TYPE_VIRT, pytsk3.TSK_FS_META_TYPE_VIRT_DIR}
_NAME_ALLOC = int(pytsk3.TSK_FS_NAME_FLAG_ALLOC)
_DATA_TYPES = {int(pytsk3.TSK_FS_ATTR_TYPE_DEFAULT), int(pytsk3.TSK_FS_ATTR_TYPE_NTFS_DATA)}
_ATTR_NONRES = int(pytsk3.TSK_FS_ATTR_NONRES)
_ATTR_PACKED = int(pytsk3.TSK_FS_ATTR_COMP) | int(pytsk3.TSK_FS_ATTR_ENC)
_RUN_HOLE = int(pytsk3.TSK_FS_ATTR_RUN_FLAG_SPARSE) | int(pytsk3.TSK_FS_ATTR_RUN_FLAG_FILLER)
_META_ALLOC = int(pytsk3.TSK_FS_META_FLAG_ALLOC)

_FS_TYPE_NAMES = {
    pytsk3.TSK_FS_TYPE_EXT2: "ext2",
    pytsk3.TSK_FS_TYPE_EXT3: "ext3",
    pytsk3.TSK_FS_TYPE_EXT4: "ext4",
    pytsk3.TSK_FS_TYPE_FAT12: "fat12",
    pytsk3.TSK_FS_TYPE_FAT16: "fat16",
    pytsk3.TSK_FS_TYPE_FAT32: "fat32",
    pytsk3.TSK_FS_TYPE_EXFAT: "exfat",
    pytsk3.TSK_FS_TYPE_NTFS: "ntfs",
}
_FAT_LABEL_SUFFIX = b"(Volume Label Entry)"
_EXFAT_METADATA = {b"$ALLOC_BITMAP", b"$UPCASE_TABLE"}  # TSK shows them as regular files


def ensure_utc() -> None:
    """TSK converts FAT/exFAT times with the process TZ (mktime): pin it to UTC."""
    if os.environ.get("TZ") != "UTC":
        os.environ["TZ"] = "UTC"
        time.tzset()


def _ns(seconds: int, nano: int) -> int | None:
    if not seconds and not nano:
        return None
    return storable_ns(int(seconds) * 1_000_000_000 + int(nano))


def _meta_times(meta: Any) -> tuple[int | None, int | None, int | None, int | None]:
    """mtime, ctime, crtime and atime of TSK metadata as :func:`_ns` gives them, in one call
    (a walk converts four times per entry)."""
    m, c, b, a = meta.mtime, meta.ctime, meta.crtime, meta.atime  # ints in pytsk3
    mn, cn, bn, an = meta.mtime_nano, meta.ctime_nano, meta.crtime_nano, meta.atime_nano
    times = (m * 1_000_000_000 + mn if m or mn else None,
             c * 1_000_000_000 + cn if c or cn else None,
             b * 1_000_000_000 + bn if b or bn else None,
             a * 1_000_000_000 + an if a or an else None)
    for ns in times:
        if ns is not None and not NS_MIN <= ns <= NS_MAX:  # clamped: storable_ns
            return (_ns(m, mn), _ns(c, cn), _ns(b, bn), _ns(a, an))
    return times


class TskFilesystem:
    """A filesystem pytsk3 opened at a byte offset of an image."""

    case_sensitive = True

    def __init__(self, img: pytsk3.Img_Info, offset: int, identity: FsIdentity) -> None:
        ensure_utc()
        try:
            self._fs = pytsk3.FS_Info(img, offset=offset)
        except OSError as exc:
            raise CorruptFilesystem(_tsk_message(exc)) from exc
        self.fs_type = _FS_TYPE_NAMES.get(self._fs.info.ftype, f"tsk-{int(self._fs.info.ftype)}")
        self.is_ntfs = self.fs_type == "ntfs"
        self.is_ext = self.fs_type.startswith("ext")
        self.is_fat = self.fs_type.startswith("fat") or self.fs_type == "exfat"
        self.case_sensitive = not (self.is_ntfs or self.is_fat)
        self.identity = identity
        self.block_size = int(self._fs.info.block_size)
        self.block_count = int(self._fs.info.block_count)
        self._root_inum = int(self._fs.info.root_inum)
        self._ntfs_meta: NtfsMeta | None = None
        self.limits = Limits()
        self._img, self._offset = img, offset
        self._ext_reader: ExtInodeReader | None = None

    # -- Filesystem protocol ------------------------------------------------------------
    def root(self) -> Node:
        """The root directory."""
        return self.node_by_inode(self._root_inum, name="")

    def children(self, directory: Node) -> Iterator[Node]:
        """Allocated, non-virtual entries of a directory. On ext2/3/4 the directory must list
        completely and consistently (:meth:`_check_ext_listing`), else CorruptFilesystem."""
        expected = self._ext_entries(directory) if self.is_ext else None
        try:
            entries = self._fs.open_dir(inode=directory.inode)
        except OSError as exc:
            raise CorruptFilesystem(f"cannot list directory (inode {directory.inode}): "
                                    f"{_tsk_message(exc)}") from exc
        at_root = directory.inode == self._root_inum
        nodes: list[Node] = []
        listed: list[tuple[bytes, int]] = []
        entry_node = self._entry_node
        for entry in entries:  # each pytsk3 wrapper is fetched once (the hot path of a walk)
            info = entry.info
            name, meta = info.name, info.meta
            if name is None:
                continue
            if expected is not None and int(name.flags) & _NAME_ALLOC \
                    and name.name not in (b".", b"..") \
                    and (meta is None or meta.type not in _VIRTUAL_TYPES):
                listed.append((bytes(name.name), int(name.meta_addr)))
            node = entry_node(name, meta, at_root)
            if node is not None:
                nodes.append(node)
        if expected is not None:
            self._check_ext_listing(directory, expected, listed, nodes)
        self._plan_directories(nodes)
        yield from nodes

    def names(self, directory: Node) -> Iterator[Name]:
        """The entries :meth:`children` lists, as (name, inode, kind) only. On ext2/3/4 the
        directory is listed and checked as :meth:`children` does it (the same entries, the
        same CorruptFilesystem) without building each entry's metadata; other filesystems
        (and ext directories kept in their inode) take them from :meth:`children`."""
        expected = self._ext_entries(directory) if self.is_ext else None
        if expected is None:
            yield from (Name(n.name, n.inode, n.kind) for n in self.children(directory))
            return
        try:
            entries = self._fs.open_dir(inode=directory.inode)
        except OSError as exc:
            raise CorruptFilesystem(f"cannot list directory (inode {directory.inode}): "
                                    f"{_tsk_message(exc)}") from exc
        names: list[Name] = []
        listed: list[tuple[bytes, int]] = []
        for entry in entries:  # children()'s tests, in the order _node makes them (ext)
            info = entry.info
            name, meta = info.name, info.meta
            if name is None or not int(name.flags) & _NAME_ALLOC:
                continue
            raw = name.name
            if raw in (b".", b"..") or (meta is not None and meta.type in _VIRTUAL_TYPES):
                continue
            listed.append((bytes(raw), int(name.meta_addr)))
            if raw and meta is not None and int(meta.flags) & _META_ALLOC and meta.addr:
                names.append(Name(decode_component(raw), int(meta.addr),
                                  _META_KIND.get(meta.type, FileKind.OTHER)))
        self._check_ext_listing(directory, expected, listed, names)
        yield from names

    def plan_content(self, node: Node) -> None:
        """A read plan of a file's data blocks, for a source that takes one."""
        if not plans_reads(self._img):
            return
        try:
            runs = self.disk_runs(node)
        except SourceReadError:
            return  # reading it reports the problem
        will_read(self._img, [(self._offset + offset, length) for offset, length in runs or ()])

    def _plan_directories(self, nodes: list[Node]) -> None:
        """A read plan for a source that takes one (a remote snapshot): the blocks of the
        subdirectories just listed, which the walk lists next, so they are fetched together
        and nothing else is guessed (:func:`scanner.sources.base.will_read`)."""
        if not plans_reads(self._img):
            return
        ranges: list[tuple[int, int]] = []
        for node in nodes:
            if node.kind is not FileKind.DIRECTORY:
                continue
            try:
                runs = self.disk_runs(node)
            except SourceReadError:
                continue  # listing it later reports the problem
            ranges.extend((self._offset + offset, length) for offset, length in runs or ())
        will_read(self._img, ranges)

    def _ext_inodes(self) -> ExtInodeReader:
        """The raw inode reader of this ext filesystem (built on first use)."""
        if self._ext_reader is None:
            self._ext_reader = ExtInodeReader(
                lambda offset, length: self._img.read(self._offset + offset, length))
        return self._ext_reader

    def _ext_geometry(self) -> ExtGeometry:
        try:
            return self._ext_inodes().geometry
        except (OSError, SourceReadError, CorruptFilesystem) as exc:
            raise CorruptFilesystem(f"ext superblock unreadable: {exc}") from exc

    def _ext_entries(self, directory: Node) -> list[tuple[bytes, int]] | None:
        """The directory's live entries parsed from its own blocks (None for inline data)."""
        geo = self._ext_geometry()
        if geo.incompat & INCOMPAT_INLINE_DATA and inode_flags(
                self._ext_inodes().inode(directory.inode)) & INLINE_DATA_FL:
            return None  # data in the inode itself: pytsk3's listing is all there is
        # Records are at least 12 bytes and at most 264: a size no directory of the bounded
        # number of names can have is refused before anything is read.
        most = self.limits.names_per_directory * 264 + geo.block_size
        if directory.size > most:
            raise CorruptFilesystem(f"cannot list directory (inode {directory.inode}): "
                                    f"{directory.size} bytes, more than {most} "
                                    "(SNAPFIM_MAX_DIR_ENTRIES names)")
        try:
            handle = self._fs.open_meta(inode=directory.inode)
            blocks = read_in_chunks(handle.read_random, directory.size, geo.block_size,
                                    directory.inode, _tsk_message)
            entries = parse_directory(blocks, directory.size, directory.inode, geo,
                                      self._ext_dir_seed(geo, directory.inode))
        except (DirectoryInconsistent, SourceReadError, OSError) as exc:
            raise CorruptFilesystem(f"cannot list directory (inode {directory.inode}): "
                                    f"{exc}") from exc
        return entries

    def _ext_dir_seed(self, geo: ExtGeometry, inode: int) -> int | None:
        """The directory's checksum seed (needs its generation, read from the raw inode)."""
        if geo.csum_seed is None:
            return None
        return geo.directory_seed(inode, inode_generation(self._ext_inodes().inode(inode)))

    def _check_ext_listing(self, directory: Node, expected: list[tuple[bytes, int]],
                           listed: list[tuple[bytes, int]],
                           nodes: Sequence[Node | Name]) -> None:
        """pytsk3 listed exactly the records of the directory's blocks, each naming an
        allocated inode, and the link count is 2 + the subdirectories listed."""
        def fail(why: str) -> CorruptFilesystem:
            return CorruptFilesystem(f"cannot list directory (inode {directory.inode}) "
                                     f"consistently: {why}")

        if listed != expected and sorted(listed) != sorted(expected):
            missing = sorted(set(expected) - set(listed))[:3]
            raise fail(f"{len(expected)} records in its blocks, {len(listed)} listed"
                       + (f" (not listed: {', '.join(repr(n) for n, _ in missing)})"
                          if missing else ""))
        if len(nodes) != len(expected):
            raise fail(f"{len(expected) - len(nodes)} of its entries name an unallocated or "
                       "unusable inode")
        subdirs = sum(1 for n in nodes if n.kind is FileKind.DIRECTORY)
        saturated = directory.nlink == 1 and self._ext_geometry().nlink_may_saturate
        if directory.nlink != subdirs + 2 and not saturated:
            raise fail(f"link count {directory.nlink} but {subdirs} subdirectories listed "
                       f"(expected {subdirs + 2})")

    def read_link(self, node: Node) -> str:
        """Symlink target, read as bytes and escaped like names (:func:`decode_name`).

        A target longer than ``limits.link_length`` is not read: :class:`CorruptFilesystem`.
        """
        if node.size > self.limits.link_length:
            raise CorruptFilesystem(f"symlink target of {node.size} bytes exceeds the bound of "
                                    f"{self.limits.link_length} (SNAPFIM_MAX_LINK_BYTES)")
        return decode_name(self._link_bytes(node))

    def _link_bytes(self, node: Node) -> bytes:
        """The target's bytes from the link's data (``meta.link`` folds control characters
        into ``^``, so it is used only where there is no data to read)."""
        data = self._inode_bytes(node.inode, node.size)
        if not data.strip(b"\0") and node.link is not None:
            return node.link.encode("utf-8", "surrogateescape")
        return data.rstrip(b"\0")

    def _inode_bytes(self, inode: int, size: int) -> bytes:
        """The first ``size`` bytes of an inode's default stream (``size`` already bounded)."""
        return b"".join(self._content_chunks(inode, size, 1 << 20))

    def iter_content(self, node: Node, chunk_size: int = 1 << 20, start: int = 0,
                     end: int | None = None) -> Iterator[bytes]:
        """Data of the default stream from ``start`` to ``end`` (its size), in chunks."""
        return self._content_chunks(node.inode, node.size if end is None else end, chunk_size,
                                    start)

    def data_runs(self, node: Node) -> Runs | None:
        """The byte runs of the default stream that hold data (TSK's run list; sparse and
        filler runs are holes); None for content kept in the inode, compressed or encrypted
        content (its runs do not map bytes one to one), or no run list."""
        runs = self._mapped_runs(node)
        if runs is None:
            return None
        block = self.block_size
        return normalize_runs(((offset * block, length * block) for offset, _, length in runs),
                              node.size)

    def _mapped_runs(self, node: Node) -> list[tuple[int, int, int]] | None:
        """``(file block, volume block, blocks)`` of each allocated run of the default data
        stream when its runs map bytes one to one; None for content in the inode, compressed
        or encrypted content (read it whole), or no data stream."""
        try:
            for attr in self._fs.open_meta(inode=node.inode):
                info = attr.info
                if int(info.type) not in _DATA_TYPES or info.name:
                    continue
                if not int(info.flags) & _ATTR_NONRES or int(info.flags) & _ATTR_PACKED:
                    return None
                return [(int(run.offset), int(run.addr), int(run.len))
                        for run in attr if not int(run.flags) & _RUN_HOLE]
        except OSError as exc:
            raise SourceReadError(f"cannot read the block map of inode {node.inode}: "
                                  f"{_tsk_message(exc)}") from exc
        return None

    def disk_runs(self, node: Node) -> Runs | None:
        """Where the file's data lies in the volume: ``(byte offset, length)`` of each
        allocated run (whole blocks; holes left out); None where :meth:`data_runs` is None
        (content in the inode, compressed or encrypted, no run list)."""
        runs = self._mapped_runs(node)
        if runs is None:
            return None
        block = self.block_size
        return [(addr * block, length * block) for _, addr, length in runs if length]

    def _content_chunks(self, inode: int, size: int, chunk_size: int,
                        start: int = 0) -> Iterator[bytes]:
        try:
            handle = self._fs.open_meta(inode=inode)
        except OSError as exc:
            raise SourceReadError(f"cannot open inode {inode}: {_tsk_message(exc)}") from exc
        return read_in_chunks(handle.read_random, size, chunk_size, inode, _tsk_message, start)

    def node_by_inode(self, inode: int, name: str = "") -> Node:
        """Metadata of one inode."""
        try:
            handle = self._fs.open_meta(inode=inode)
        except OSError as exc:
            raise CorruptFilesystem(f"cannot read inode {inode}: {_tsk_message(exc)}") from exc
        node = self._from_meta(name, handle.info.meta)
        if node is None:
            raise CorruptFilesystem(f"inode {inode} has no usable metadata")
        return node

    def xattrs(self, node: Node) -> dict[bytes, bytes]:
        """pytsk3 exposes no extended attributes; the ext backend adds them."""
        return {}

    def ntfs_meta(self) -> NtfsMeta:
        """The volume's NTFS metadata reader (SDDL, DOS attributes, streams, reparse points),
        one per filesystem so ``$Secure:$SDS`` is indexed once. ValueError if not NTFS."""
        from scanner.disk.ntfs_meta import NtfsMeta  # ntfs_meta imports this module

        if not self.is_ntfs:
            raise ValueError(f"no NTFS metadata on a {self.fs_type} volume")
        if self._fs is None:
            raise ValueError("the filesystem is closed")
        if self._ntfs_meta is None:
            self._ntfs_meta = NtfsMeta(self._fs)
        return self._ntfs_meta

    def close(self) -> None:
        """pytsk3 frees on garbage collection."""
        self._fs = None
        self._ntfs_meta = None

    # -- helpers --------------------------------------------------------------------------
    def _node(self, entry: Any, at_root: bool) -> Node | None:
        info = entry.info
        if info.name is None:
            return None
        return self._entry_node(info.name, info.meta, at_root)

    def _entry_node(self, name: Any, meta: Any, at_root: bool) -> Node | None:
        """The node of a directory entry's name and metadata (None: not an entry to list)."""
        raw = name.name
        if raw in (b".", b"..") or not raw:
            return None
        if not int(name.flags) & _NAME_ALLOC:
            return None  # a deleted name
        if (self.is_fat or self.is_ntfs) and self._hidden_name(raw, at_root):
            return None
        if meta is None or not int(meta.flags) & _META_ALLOC:
            # a live name whose record is unreadable or unallocated: an inconsistency, not
            # a deletion (ext directories check this for the whole directory instead)
            return None if self.is_ext else self._unreadable_entry(raw, int(name.meta_addr))
        if meta.type in _VIRTUAL_TYPES:
            return None
        if meta.addr == 0 and not self.is_ntfs:
            return None
        return self._from_meta(decode_component(raw), meta)

    def _hidden_name(self, raw: bytes, at_root: bool) -> bool:
        """FAT's volume label entry, NTFS metadata files, exFAT's bitmap and up-case table."""
        if self.is_fat and raw.endswith(_FAT_LABEL_SUFFIX):
            return True
        if self.is_ntfs and at_root and raw.startswith(b"$"):
            return True  # NTFS metadata files ($MFT, $Secure, ...)
        return self.fs_type == "exfat" and at_root and raw in _EXFAT_METADATA

    def _unreadable_entry(self, raw: bytes, addr: int) -> Node:
        """A name the directory lists as live whose metadata record cannot be used."""
        return Node(name=decode_component(raw), inode=addr, kind=FileKind.OTHER, size=0,
                    mode=0, uid=0, gid=0, nlink=0, mtime=None, ctime=None, crtime=None,
                    atime=None, unreadable=f"the directory lists this name but its record "
                    f"({addr}) cannot be read or is not in use")

    def _from_meta(self, name: str, meta: Any) -> Node | None:
        if meta is None:
            return None
        kind = _META_KIND.get(meta.type, FileKind.OTHER)
        link = None
        if kind is FileKind.SYMLINK and meta.link:
            raw_link = meta.link if isinstance(meta.link, bytes) else str(meta.link).encode()
            link = decode_name(raw_link)
        ntfs = self.is_ntfs
        # positional, in Node's field order: name, inode, kind, size, mode, uid, gid, nlink,
        # mtime, ctime, crtime, atime, link (one Node per directory entry of a walk)
        return Node(name, int(meta.addr), kind, int(meta.size), int(meta.mode) & 0o7777,
                    0 if ntfs else int(meta.uid), 0 if ntfs else int(meta.gid),
                    int(meta.nlink), *_meta_times(meta), link)


def _tsk_message(exc: BaseException) -> str:
    """TSK's message without the pytsk3 wrapper noise (``FS_Info_Con: (tsk3.cpp:327) ...``)."""
    text = str(exc).strip()
    if ") " in text and "tsk3.cpp" in text:
        text = text.split(") ", 1)[1]
    return text
