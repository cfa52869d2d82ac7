"""ext2/3/4 inodes read straight from the volume: extended attributes and symlink targets as
bytes.

pytsk3 gives no extended attributes and folds control characters of symlink targets into
``^``; libfsext 20260821 caches each inode's attributes and loses those kept in the external
attribute block from the second lookup of an inode on (the second name of a hard link, the
second file sharing an attribute block). Both are read here from the on-disk structures
(``Documentation/filesystems/ext4``): the inode (located by :mod:`scanner.disk.ext_geometry`), the
in-inode attribute area (after ``i_extra_isize``) and the attribute block (``i_file_acl``).

Everything is bytes and bounded: names are the namespace prefix of ``e_name_index`` plus the
stored name bytes, values are the stored bytes; a value kept in an inode of its own
(``ea_inode``) is read through the caller's function, within the per-file bound.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from scanner.disk.ext_geometry import GOOD_OLD_INODE_SIZE, INLINE_DATA_FL, ExtInodeReader
from scanner.errors import CorruptFilesystem, XattrLimitExceeded
from scanner.sources.base import BlockSource

_EA_MAGIC = 0xEA020000
_EA_ENTRY = struct.Struct("<BBHIII")  # name_len, name_index, value_offs, value_inum, size, hash
_EA_BLOCK_HEADER = 32
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_FILE_ACL = struct.Struct("<I10xH")  # i_file_acl_lo at 104, l_i_file_acl_high at 118
_I_BLOCK = slice(40, 100)  # i_block: 60 bytes (fast symlink target, inline data)
EA_INODE_FL = 0x200000

# e_name_index -> name prefix (fs/ext4/xattr.c: ext4_xattr_handler_map)
NAME_PREFIXES: dict[int, bytes] = {
    1: b"user.",
    2: b"system.posix_acl_access",
    3: b"system.posix_acl_default",
    4: b"trusted.",
    6: b"security.",
    7: b"system.",
    8: b"system.richacl",
}


class ExtInodes(ExtInodeReader):
    """Raw inodes and their extended attributes for one ext filesystem at the start of
    ``source`` (geometry and inode reads: :class:`~scanner.disk.ext_geometry.ExtInodeReader`)."""

    def __init__(self, source: BlockSource) -> None:
        super().__init__(source.read_at)

    def xattrs(self, number: int, limit: int,
               read_inode_data: Callable[[int, int], bytes]) -> dict[bytes, bytes]:
        """Every extended attribute of inode ``number``, name bytes -> value bytes.

        Raises :class:`XattrLimitExceeded` when names and values add up to more than ``limit``
        bytes, :class:`CorruptFilesystem` when the attribute structures are inconsistent.
        ``read_inode_data(inode, size)`` reads a value kept in an inode of its own.
        """
        raw = self.inode(number)
        out: dict[bytes, bytes] = {}
        budget = [limit]
        size = self._size
        if size > GOOD_OLD_INODE_SIZE:
            (extra,) = _U16.unpack_from(raw, 128)
            start = GOOD_OLD_INODE_SIZE + extra
            if extra % 4 == 0 and start + 4 <= size \
                    and _U32.unpack_from(raw, start)[0] == _EA_MAGIC:
                area = raw[start + 4:]
                self._entries(area, 0, area, out, budget, read_inode_data, number)
        acl_low, acl_high = _FILE_ACL.unpack_from(raw, 104)
        block = acl_high << 32 | acl_low
        if block:
            data = self.read(block * self.block_size, self.block_size)
            (magic, _refcount, blocks) = struct.unpack_from("<III", data, 0)
            if magic != _EA_MAGIC or blocks != 1:
                raise CorruptFilesystem(f"inode {number}: extended attribute block {block} "
                                        "has a bad header")
            self._entries(data, _EA_BLOCK_HEADER, data, out, budget, read_inode_data, number)
        return out

    def _entries(self, area: bytes, at: int, values: bytes, out: dict[bytes, bytes],
                 budget: list[int], read_inode_data: Callable[[int, int], bytes],
                 number: int) -> None:
        while at + 4 <= len(area) and area[at:at + 4] != b"\0\0\0\0":
            if at + _EA_ENTRY.size > len(area):
                raise CorruptFilesystem(f"inode {number}: truncated extended attribute entry")
            name_len, index, value_offs, value_inum, size, _hash = \
                _EA_ENTRY.unpack_from(area, at)
            name_end = at + _EA_ENTRY.size + name_len
            if name_end > len(area):
                raise CorruptFilesystem(f"inode {number}: extended attribute name overflows")
            prefix = NAME_PREFIXES.get(index, b"ext4-index-%d." % index)
            name = prefix + area[at + _EA_ENTRY.size:name_end]
            budget[0] -= len(name) + size
            if budget[0] < 0:
                raise XattrLimitExceeded(f"inode {number}: extended attributes exceed the "
                                         "bound (SNAPFIM_MAX_XATTR_BYTES)")
            if value_inum:
                value = read_inode_data(value_inum, size)
            elif value_offs + size > len(values):
                raise CorruptFilesystem(f"inode {number}: extended attribute value overflows")
            else:
                value = values[value_offs:value_offs + size]
            if len(value) != size:
                raise CorruptFilesystem(f"inode {number}: extended attribute value cut short")
            out[name] = bytes(value)
            at = (name_end + 3) & ~3


def symlink_bytes_in_inode(raw: bytes, ea_block_sectors: int) -> bytes | None:
    """A fast symlink's target from ``i_block`` (None when the target lives in data blocks).

    As the kernel decides (``ext4_inode_is_fast_symlink``): no blocks counted other than the
    attribute block. The target is cut to the inode's size and to the 60 bytes of ``i_block``.
    Inline-data symlinks are not fast symlinks (None).
    """
    (size_low,) = struct.unpack_from("<I", raw, 4)
    (blocks_low,) = struct.unpack_from("<I", raw, 28)
    (flags,) = struct.unpack_from("<I", raw, 32)
    (blocks_high,) = struct.unpack_from("<H", raw, 116)
    (size_high,) = struct.unpack_from("<I", raw, 108)
    size = size_high << 32 | size_low
    if flags & INLINE_DATA_FL:
        return None
    (acl_low,) = struct.unpack_from("<I", raw, 104)
    blocks = blocks_high << 32 | blocks_low
    if blocks - (ea_block_sectors if acl_low else 0) != 0:
        return None
    return raw[_I_BLOCK][:min(size, 60)]


def inode_size_field(raw: bytes) -> int:
    """``i_size`` of an on-disk inode."""
    (low,) = struct.unpack_from("<I", raw, 4)
    (high,) = struct.unpack_from("<I", raw, 108)
    return high << 32 | low
