"""ext2/3/4 on-disk geometry: the superblock fields the scanner relies on, where the group
descriptors and inode tables lie, and raw inodes read from them.

The one place that knows the layout (``Documentation/filesystems/ext4``): block size, inode
count and size, inodes per group, the group descriptor table (right after the superblock's
block, 32-byte descriptors, or ``s_desc_size`` with the ``64bit`` feature), the inode table of
each group (its high 32 bits only in 64-byte descriptors) and the ``metadata_csum`` seed.
:mod:`scanner.disk.ext_dirs` parses directory blocks and :mod:`scanner.disk.ext_raw` reads
extended attributes on top of it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import crc32c

from scanner.errors import CorruptFilesystem, SourceReadError

SB_OFFSET = 1024
SB_SIZE = 1024
_SB_MAGIC = b"\x53\xef"
GOOD_OLD_INODE_SIZE = 128
_GOOD_OLD_FIRST_INO = 11
INCOMPAT_FILETYPE = 0x0002
INCOMPAT_64BIT = 0x0080
INCOMPAT_CSUM_SEED = 0x2000
INCOMPAT_INLINE_DATA = 0x8000
RO_COMPAT_DIR_NLINK = 0x0020
RO_COMPAT_METADATA_CSUM = 0x0400
_MASK = 0xFFFFFFFF


def crc(seed: int, data: bytes) -> int:
    """The kernel's ``ext4_chksum``: CRC32C from ``seed`` without the final inversion."""
    return ~crc32c.crc32c(data, (~seed) & _MASK) & _MASK


@dataclass(frozen=True, slots=True)
class ExtGeometry:
    """What the superblock says about the filesystem's layout."""

    block_size: int
    inodes_count: int
    first_ino: int
    incompat: int
    ro_compat: int
    inodes_per_group: int = 0
    inode_size: int = GOOD_OLD_INODE_SIZE
    first_data_block: int = 0
    desc_size: int = 32
    csum_seed: int | None = None     # None: no metadata_csum

    @classmethod
    def parse(cls, sb: bytes) -> ExtGeometry:
        """From the 1024-byte superblock. Raises :class:`CorruptFilesystem` when it is not
        one or its geometry is impossible."""
        if len(sb) < SB_SIZE or sb[0x38:0x3A] != _SB_MAGIC:
            raise CorruptFilesystem("ext: no superblock (magic 0xEF53 missing)")
        (inodes_count,) = struct.unpack_from("<I", sb, 0)
        first_data_block, log_block = struct.unpack_from("<II", sb, 0x14)
        (inodes_per_group,) = struct.unpack_from("<I", sb, 0x28)
        (rev,) = struct.unpack_from("<I", sb, 0x4C)
        first_ino = struct.unpack_from("<I", sb, 0x54)[0] if rev >= 1 else _GOOD_OLD_FIRST_INO
        inode_size = struct.unpack_from("<H", sb, 0x58)[0] if rev >= 1 else GOOD_OLD_INODE_SIZE
        incompat, ro_compat = struct.unpack_from("<II", sb, 0x60)
        (desc_size,) = struct.unpack_from("<H", sb, 0xFE)
        if log_block > 6 or not inodes_per_group:
            raise CorruptFilesystem("ext: superblock with impossible geometry")
        block_size = 1024 << log_block
        if inode_size < GOOD_OLD_INODE_SIZE or inode_size > block_size:
            raise CorruptFilesystem(f"ext: impossible inode size {inode_size}")
        if not (incompat & INCOMPAT_64BIT and desc_size >= 64):
            desc_size = 32
        seed = None
        if ro_compat & RO_COMPAT_METADATA_CSUM:
            seed = (struct.unpack_from("<I", sb, 0x270)[0] if incompat & INCOMPAT_CSUM_SEED
                    else crc(_MASK, sb[0x68:0x78]))
        return cls(block_size, inodes_count, first_ino, incompat, ro_compat,
                   inodes_per_group, inode_size, first_data_block, desc_size, seed)

    def group_descriptor_offset(self, group: int) -> int:
        """Byte offset (in the filesystem) of group ``group``'s descriptor."""
        return (self.first_data_block + 1) * self.block_size + group * self.desc_size

    def descriptor_offset(self, inode: int) -> int:
        """Byte offset (in the filesystem) of the group descriptor of ``inode``'s group."""
        return self.group_descriptor_offset((inode - 1) // self.inodes_per_group)

    def inode_table_offset(self, descriptor: bytes) -> int:
        """Byte offset of the inode table a group descriptor's bytes point at."""
        (table,) = struct.unpack_from("<I", descriptor, 8)
        if self.desc_size >= 64 and len(descriptor) >= 0x2C:
            table |= struct.unpack_from("<I", descriptor, 0x28)[0] << 32
        return table * self.block_size

    def inode_offset(self, inode: int, descriptor: bytes) -> int:
        """Byte offset of ``inode`` given its group descriptor's bytes."""
        index = (inode - 1) % self.inodes_per_group
        return self.inode_table_offset(descriptor) + index * self.inode_size

    def directory_seed(self, inode: int, generation: int) -> int | None:
        """The checksum seed of one directory's blocks (None without metadata_csum)."""
        if self.csum_seed is None:
            return None
        return crc(crc(self.csum_seed, struct.pack("<I", inode)),
                   struct.pack("<I", generation))

    @property
    def nlink_may_saturate(self) -> bool:
        """``dir_nlink``: a directory with more than 65,000 subdirectories has link count 1."""
        return bool(self.ro_compat & RO_COMPAT_DIR_NLINK)


INLINE_DATA_FL = 0x10000000  # i_flags: the inode holds its data itself (inline_data)


def inode_flags(raw: bytes) -> int:
    """``i_flags`` of an on-disk inode."""
    return int(struct.unpack_from("<I", raw, 0x20)[0])


def inode_generation(raw: bytes) -> int:
    """``i_generation`` of an on-disk inode."""
    return int(struct.unpack_from("<I", raw, 0x64)[0])


_TABLE_CHUNK = 4096  # bytes of an inode table read at once (16 inodes of 256 bytes)
_TABLE_CHUNKS = 64   # chunks kept (256 KiB): a directory's inodes are mostly close together


class ExtInodeReader:
    """Raw inodes of one ext filesystem, read through ``read_at(offset, length)`` (offsets
    from the filesystem's start). Raises :class:`CorruptFilesystem` for a bad superblock.

    Inodes are read in aligned 4 KiB chunks of their table, the last few kept: a walk reads
    the inodes of one directory one after another, mostly neighbours (one read for 16 of
    them instead of one each)."""

    def __init__(self, read_at: Callable[[int, int], bytes]) -> None:
        self.geometry = geo = ExtGeometry.parse(read_at(SB_OFFSET, SB_SIZE))
        self._read_at = read_at
        self._tables: dict[int, int] = {}
        self._chunks: dict[int, bytes] = {}
        # the geometry :meth:`inode` needs, as plain attributes (read once per inode)
        self._count, self._per_group, self._size = (geo.inodes_count, geo.inodes_per_group,
                                                    geo.inode_size)

    @property
    def block_size(self) -> int:
        """Bytes per block."""
        return self.geometry.block_size

    @property
    def inode_size(self) -> int:
        """Bytes per on-disk inode."""
        return self.geometry.inode_size

    @property
    def inodes_count(self) -> int:
        """The highest inode number."""
        return self.geometry.inodes_count

    @property
    def inodes_per_group(self) -> int:
        """Inodes in each block group."""
        return self.geometry.inodes_per_group

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, else :class:`SourceReadError`."""
        data = self._read_at(offset, length)
        if len(data) != length:
            raise SourceReadError(f"ext: short read of {length} bytes at {offset}")
        return data

    def _inode_table(self, group: int) -> int:
        table = self._tables.get(group)
        if table is None:
            geo = self.geometry
            descriptor = self.read(geo.group_descriptor_offset(group), geo.desc_size)
            table = self._tables[group] = geo.inode_table_offset(descriptor)
        return table

    def inode(self, number: int) -> bytes:
        """The on-disk inode (``inode_size`` bytes)."""
        if not 1 <= number <= self._count:
            raise CorruptFilesystem(f"inode {number} out of range")
        group, index = divmod(number - 1, self._per_group)
        size = self._size
        table = self._tables.get(group)
        if table is None:
            table = self._inode_table(group)
        offset = table + index * size
        start = offset - offset % _TABLE_CHUNK
        at = offset - start
        if at + size > _TABLE_CHUNK:  # an inode across a chunk's end: read it alone
            return self.read(offset, size)
        chunk = self._chunks.get(start)
        if chunk is None:
            chunk = self._read_at(start, _TABLE_CHUNK)
            if len(chunk) != _TABLE_CHUNK:  # the source ends within the chunk: never kept
                return self.read(offset, size)
            if len(self._chunks) >= _TABLE_CHUNKS:
                del self._chunks[next(iter(self._chunks))]  # the oldest
            self._chunks[start] = chunk
        return chunk[at:at + size]
