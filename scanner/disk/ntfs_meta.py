"""NTFS-only metadata on top of an open ``pytsk3.FS_Info``: security descriptors (as SDDL),
DOS attributes, alternate data streams and reparse points (symlinks, junctions).

Layout facts used (see FACTS.md, "pytsk3"):

* The descriptor is the ``$SECURITY_DESCRIPTOR`` attribute (0x50) when present (libntfs-3g
  writes one for new files), else ``security_id`` at offset 0x34 of a 72-byte
  ``$STANDARD_INFORMATION`` (0x10) names an entry of the ``$SDS`` stream of ``$Secure``
  (inode 9). ``$SDS`` is made of 256 KiB blocks, each followed by its mirror copy; entries are
  ``hash(4) id(4) offset(8) length(4)`` + the self-relative descriptor, 16-byte aligned, and
  never cross a block. Only primary (even) blocks are read, so mirrors give no duplicates.
* DOS attributes are the ``FileAttributes`` field at 0x20 of ``$STANDARD_INFORMATION``.
* ADS are named ``$DATA`` (0x80) attributes, read by attribute id.
* Reparse points (0xC0) leave pytsk3's type REG/DIR with ``link`` None; the buffer is parsed
  here (``REPARSE_DATA_BUFFER``).

:meth:`NtfsMeta.describe` gathers all of it with one inode open and one attribute listing.

pytsk3 ``OSError`` becomes :class:`CorruptFilesystem` (an inode or a structure cannot be
used) or :class:`SourceReadError` (reading attribute data failed or came back short).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytsk3

from scanner.disk.nodes import read_in_chunks
from scanner.disk.tsk_fs import _tsk_message
from scanner.errors import CorruptFilesystem, SourceReadError
from scanner.paths import decode_name
from scanner.sddl import sddl_from_descriptor
from scanner.timestamps import filetime_ns

__all__ = ["NtfsFileInfo", "NtfsMeta", "Reparse", "Stream", "attribute_names",
           "format_attributes", "parse_reparse", "FILE_ATTRIBUTE_NAMES", "IO_REPARSE_TAG_SYMLINK",
           "IO_REPARSE_TAG_MOUNT_POINT"]

AT_STANDARD_INFORMATION = 0x10
AT_SECURITY_DESCRIPTOR = 0x50
AT_DATA = 0x80
AT_REPARSE_POINT = 0xC0
SECURE_INODE = 9
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003
IO_REPARSE_TAG_SYMLINK = 0xA000000C
SYMLINK_FLAG_RELATIVE = 1
_SDS_BLOCK = 0x40000  # 256 KiB; each block is followed by its mirror
_SDS_HEADER = 20
_SI_ATTRS = 0x20
_SI_SECURITY_ID = 0x34
_SI_V3_SIZE = 72
_SDDL_CACHE_MAX = 1 << 16  # distinct descriptors remembered by describe()

# FILE_ATTRIBUTE_* bit -> name, in rendering order.
FILE_ATTRIBUTE_NAMES: tuple[tuple[int, str], ...] = (
    (0x0001, "readonly"), (0x0002, "hidden"), (0x0004, "system"), (0x0010, "directory"),
    (0x0020, "archive"), (0x0040, "device"), (0x0080, "normal"), (0x0100, "temporary"),
    (0x0200, "sparse"), (0x0400, "reparse_point"), (0x0800, "compressed"),
    (0x1000, "offline"), (0x2000, "not_content_indexed"), (0x4000, "encrypted"),
    (0x8000, "integrity_stream"), (0x10000, "virtual"), (0x20000, "no_scrub_data"),
    (0x40000, "recall_on_open"), (0x80000, "pinned"), (0x100000, "unpinned"),
    (0x400000, "recall_on_data_access"),
    (0x10000000, "directory_index"),  # NTFS: $I30 index present (set on directories)
    (0x20000000, "view_index"),
)


def attribute_names(flags: int) -> list[str]:
    """Names of the set FILE_ATTRIBUTE_* bits; unknown bits as one ``0x...`` entry."""
    names = [name for bit, name in FILE_ATTRIBUTE_NAMES if flags & bit]
    unknown = flags & ~sum(bit for bit, _ in FILE_ATTRIBUTE_NAMES)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


def format_attributes(flags: int) -> str:
    """``hidden,system`` style rendering ('' when no bit is set)."""
    return ",".join(attribute_names(flags))


@dataclass(frozen=True, slots=True)
class Stream:
    """A named ``$DATA`` attribute (alternate data stream)."""

    name: str
    size: int
    attr_id: int


@dataclass(frozen=True, slots=True)
class Reparse:
    """A parsed reparse point; ``target`` only for symlinks and junctions."""

    tag: int
    kind: Literal["symlink", "junction", "other"]
    target: str | None
    relative: bool = False  # SYMLINK_FLAG_RELATIVE (symlinks only)


def _strip_nt_prefix(path: str) -> str:
    return path[4:] if path.startswith("\\??\\") else path


def parse_reparse(buf: bytes) -> Reparse:
    """Parse a REPARSE_DATA_BUFFER. Symlink and mount-point targets prefer the print name
    and fall back to the substitute name; ``\\??\\`` is stripped. Raises ValueError."""
    if len(buf) < 8:
        raise ValueError(f"reparse buffer of {len(buf)} bytes")
    tag, data_len = struct.unpack_from("<IH", buf)
    if tag not in (IO_REPARSE_TAG_SYMLINK, IO_REPARSE_TAG_MOUNT_POINT):
        return Reparse(tag, "other", None)
    symlink = tag == IO_REPARSE_TAG_SYMLINK
    base = 20 if symlink else 16
    if len(buf) < base or len(buf) < 8 + data_len:
        raise ValueError(f"reparse buffer truncated ({len(buf)} bytes, tag 0x{tag:08x})")
    soff, slen, poff, plen = struct.unpack_from("<HHHH", buf, 8)
    flags = struct.unpack_from("<I", buf, 16)[0] if symlink else 0
    end = 8 + data_len

    def name(off: int, length: int) -> str:
        if base + off + length > end:
            raise ValueError("reparse name outside the buffer")
        return buf[base + off:base + off + length].decode("utf-16-le", "surrogatepass")

    target = name(poff, plen) or name(soff, slen)
    return Reparse(tag, "symlink" if symlink else "junction", _strip_nt_prefix(target),
                   bool(flags & SYMLINK_FLAG_RELATIVE))


@dataclass(frozen=True, slots=True)
class NtfsFileInfo:
    """What :meth:`NtfsMeta.describe` reads from one MFT record in a single pass."""

    acl: str | None  # the security descriptor as SDDL (``0x<hex>`` if SDDL cannot say it)
    attributes: int  # FILE_ATTRIBUTE_* flags (0 without $STANDARD_INFORMATION)
    streams: tuple[Stream, ...]  # named $DATA attributes, in attribute order
    reparse: Reparse | None  # the parsed 0xC0 attribute
    # (crtime, mtime, ctime, atime) from $STANDARD_INFORMATION as storable ns (None: a
    # FILETIME of 0); None without it. TSK turns a time past 2106 into nothing at all.
    times: tuple[int | None, int | None, int | None, int | None] | None = None


class _Record:
    """One opened inode and its attribute list, read once: ``(type, name, id, size)``."""

    __slots__ = ("handle", "inode", "attrs")

    def __init__(self, handle: Any, inode: int) -> None:
        self.handle = handle
        self.inode = inode
        try:
            infos = [a.info for a in handle]
            self.attrs = [(int(i.type), i.name or None, int(i.id), int(i.size)) for i in infos]
        except OSError as exc:
            raise CorruptFilesystem(f"cannot list attributes of NTFS inode {inode}: "
                                    f"{_tsk_message(exc)}") from exc

    def value(self, atype: int, name: bytes | None = None) -> bytes | None:
        """Whole value of the first attribute of this type and name, None if absent."""
        for t, n, attr_id, size in self.attrs:
            if t == atype and n == name:
                return _read(self.handle, self.inode, atype, attr_id, 0, size)
        return None

    def streams(self) -> tuple[Stream, ...]:
        return tuple(Stream(decode_name(bytes(n)), size, attr_id)
                     for t, n, attr_id, size in self.attrs if t == AT_DATA and n)

    def dos_attributes(self, si: bytes | None) -> int:
        if si is None:
            return 0
        if len(si) < _SI_ATTRS + 4:
            raise CorruptFilesystem(f"inode {self.inode}: $STANDARD_INFORMATION of "
                                    f"{len(si)} bytes")
        return int(struct.unpack_from("<I", si, _SI_ATTRS)[0])

    def reparse(self) -> Reparse | None:
        buf = self.value(AT_REPARSE_POINT)
        if buf is None:
            return None
        try:
            return parse_reparse(buf)
        except ValueError as exc:
            raise CorruptFilesystem(f"inode {self.inode}: bad reparse point: {exc}") from exc


def _si_times(si: bytes | None) -> tuple[int | None, int | None, int | None, int | None] | None:
    """$STANDARD_INFORMATION's creation, modification, MFT change and access FILETIMEs (in
    that order on disk) as (crtime, mtime, ctime, atime), clamped to the storable range."""
    if si is None or len(si) < 32:
        return None
    crtime, mtime, ctime, atime = (filetime_ns(ft) if ft else None
                                   for ft in struct.unpack_from("<4Q", si, 0))
    return crtime, mtime, ctime, atime


class NtfsMeta:
    """NTFS metadata reader for one volume; ``$Secure:$SDS`` is indexed on first need.

    :meth:`describe` reads everything about an inode with one open and one attribute
    listing, and renders each distinct descriptor as SDDL once (a volume has few); the
    single-purpose methods each open the inode again and render afresh.
    """

    def __init__(self, fs_info: Any) -> None:
        self._fs = fs_info
        self._sds: dict[int, bytes] | None = None
        self._sddl: dict[bytes, str] = {}

    # -- public API ---------------------------------------------------------------------------
    def describe(self, inode: int) -> NtfsFileInfo:
        """SDDL, DOS attributes, alternate data streams and reparse point of one inode, from
        one open and one attribute listing. Raises CorruptFilesystem / SourceReadError."""
        rec = self._record(inode)
        si = rec.value(AT_STANDARD_INFORMATION)
        sd = self._descriptor(rec, si)
        acl = None
        if sd is not None:
            acl = self._sddl.get(sd)
            if acl is None:
                acl = _sddl(sd)
                if len(self._sddl) < _SDDL_CACHE_MAX:
                    self._sddl[sd] = acl
        return NtfsFileInfo(acl=acl, attributes=rec.dos_attributes(si),
                            streams=rec.streams(), reparse=rec.reparse(), times=_si_times(si))

    def security_descriptor(self, inode: int) -> bytes | None:
        """Self-relative descriptor: the 0x50 attribute, else SI security_id via ``$SDS``."""
        rec = self._record(inode)
        return self._descriptor(rec, rec.value(AT_STANDARD_INFORMATION))

    def acl(self, inode: int) -> str | None:
        """The descriptor as SDDL; ``0x<hex>`` of the raw bytes when SDDL cannot express it."""
        sd = self.security_descriptor(inode)
        return None if sd is None else _sddl(sd)

    def dos_attributes(self, inode: int) -> int:
        """FILE_ATTRIBUTE_* flags from $STANDARD_INFORMATION (0 if it is missing)."""
        rec = self._record(inode)
        return rec.dos_attributes(rec.value(AT_STANDARD_INFORMATION))

    def streams(self, inode: int) -> list[Stream]:
        """Named $DATA attributes (not the unnamed default stream), in attribute order."""
        return list(self._record(inode).streams())

    def read_stream(self, inode: int, stream: Stream, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Content of an alternate data stream in chunks."""
        handle = self._open(inode)

        def read(offset: int, length: int) -> bytes:
            return bytes(handle.read_random(offset, length,
                                            pytsk3.TSK_FS_ATTR_TYPE_NTFS_DATA, stream.attr_id))

        yield from read_in_chunks(read, stream.size, chunk, inode, _tsk_message)

    def reparse(self, inode: int) -> Reparse | None:
        """The parsed 0xC0 attribute, or None when the inode is no reparse point."""
        return self._record(inode).reparse()

    # -- helpers ------------------------------------------------------------------------------
    def _open(self, inode: int) -> Any:
        try:
            return self._fs.open_meta(inode=inode)
        except OSError as exc:
            raise CorruptFilesystem(f"cannot read NTFS inode {inode}: "
                                    f"{_tsk_message(exc)}") from exc

    def _record(self, inode: int) -> _Record:
        return _Record(self._open(inode), inode)

    def _descriptor(self, rec: _Record, si: bytes | None) -> bytes | None:
        own = rec.value(AT_SECURITY_DESCRIPTOR)
        if own is not None:
            return own
        if si is None or len(si) < _SI_V3_SIZE:
            return None  # NTFS 1.2 style SI: no security_id
        (security_id,) = struct.unpack_from("<I", si, _SI_SECURITY_ID)
        if security_id == 0:
            return None
        sds = self._security_index()
        if security_id not in sds:
            raise CorruptFilesystem(f"inode {rec.inode}: security id {security_id} is not in "
                                    "$Secure:$SDS")
        return sds[security_id]

    def _security_index(self) -> dict[int, bytes]:
        if self._sds is None:
            self._sds = self._load_sds()
        return self._sds

    def _load_sds(self) -> dict[int, bytes]:
        """security id -> descriptor from the primary 256 KiB blocks of ``$Secure:$SDS``."""
        rec = self._record(SECURE_INODE)
        sds = next(((attr_id, size) for t, n, attr_id, size in rec.attrs
                    if t == AT_DATA and n == b"$SDS"), None)
        if sds is None:
            raise CorruptFilesystem("NTFS $Secure (inode 9) has no $SDS stream")
        attr_id, size = sds
        index: dict[int, bytes] = {}
        for start in range(0, size, 2 * _SDS_BLOCK):
            block = _read(rec.handle, SECURE_INODE, AT_DATA, attr_id, start,
                          min(_SDS_BLOCK, size - start))
            _parse_sds_block(block, start, index)
        return index


def _sddl(sd: bytes) -> str:
    try:
        return sddl_from_descriptor(sd)
    except ValueError:
        return "0x" + sd.hex()


def _read(handle: Any, inode: int, atype: int, attr_id: int, offset: int, length: int) -> bytes:
    if length <= 0:
        return b""
    try:
        data = bytes(handle.read_random(offset, length, atype, attr_id))
    except OSError as exc:
        raise SourceReadError(f"read of NTFS inode {inode} attribute 0x{atype:x}-{attr_id} "
                              f"at {offset} failed: {_tsk_message(exc)}") from exc
    if len(data) != length:
        raise SourceReadError(f"NTFS inode {inode} attribute 0x{atype:x}-{attr_id}: "
                              f"{len(data)} of {length} bytes at {offset}")
    return data


def _parse_sds_block(block: bytes, start: int, index: dict[int, bytes]) -> None:
    """Add the entries of one primary ``$SDS`` block (at stream offset ``start``) to
    ``index``. A header is trusted only if its offset field names its own position, so
    empty or garbage 16-byte slots (the block's unused tail, holes) are stepped over."""
    off = 0
    while off + _SDS_HEADER <= len(block):
        _hash, sec_id, self_off, length = struct.unpack_from("<IIQI", block, off)
        if length <= _SDS_HEADER or off + length > len(block) or self_off != start + off:
            off += 16
            continue
        index.setdefault(sec_id, block[off + _SDS_HEADER:off + length])
        off = (off + length + 15) & ~15
