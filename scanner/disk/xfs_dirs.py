"""XFS directories, parsed strictly: a directory is listed completely and consistently or not
at all (the XFS counterpart of :mod:`scanner.disk.ext_dirs`). Pure: bytes in, entries or
:class:`~scanner.errors.DirectoryInconsistent` out.

Checked, for the forms a directory takes:

- short form (entries in the inode): the header's count, every entry's name length and
  ascending offset, and the entries ending exactly at the inode's size;
- block and data blocks: the magic, on v5 filesystems the block's CRC32C and owner inode, and
  every entry and free region chaining from the header to the end of the data area, 8-byte
  aligned, each ending in a tag holding its own offset; the header's best-free table naming
  the longest free regions;
- every inode number inside the filesystem's allocation groups;
- (done by the caller) the inode's CRC on v5, libfsxfs's listing equal to these entries, the
  link count against the subdirectories listed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

from scanner.errors import DirectoryInconsistent

_DATA_MAGICS = {b"XDB3": 64, b"XDD3": 64, b"XD2B": 16, b"XD2D": 16}  # -> header size
_BLOCK_MAGICS = {b"XDB3", b"XD2B"}
_V5_MAGICS = {b"XDB3", b"XDD3"}
DINODE_CRC_OFFSET = 100


@dataclass(frozen=True, slots=True)
class XfsDirShape:
    """What the superblock says about inode numbers and entries."""

    ftype: bool             # a file-type byte after each name
    ascii_ci: bool = False  # names hashed case-folded (the leaf's hashes are not checked)
    ag_count: int = 1
    ag_blocks: int = 1
    agblk_log: int = 0
    inopb_log: int = 0

    def inode_ok(self, inode: int) -> bool:
        """True when ``inode`` names a slot inside an allocation group."""
        ag = inode >> (self.agblk_log + self.inopb_log)
        block = (inode >> self.inopb_log) & ((1 << self.agblk_log) - 1)
        return inode > 0 and ag < self.ag_count and block < self.ag_blocks


def crc_ok(data: bytes, at: int) -> bool:
    """XFS's CRC32C of ``data`` with the little-endian CRC field at ``at`` taken as zero."""
    (stored,) = struct.unpack_from("<I", data, at)
    return crc32c.crc32c(data[:at] + b"\0\0\0\0" + data[at + 4:]) == stored


def parse_shortform(data: bytes, size: int, shape: XfsDirShape) -> list[tuple[bytes, int]]:
    """Entries (name, inode) of a short-form directory held in the inode's literal area."""
    if size < 6 or size > len(data):
        raise DirectoryInconsistent(f"short-form size {size} out of range")
    count, i8count = data[0], data[1]
    width = 8 if i8count else 4
    at = 2 + width
    _check_inode(int.from_bytes(data[2:at], "big"), "'..'", shape)
    out: list[tuple[bytes, int]] = []
    last_offset = 0
    for index in range(count):
        if at + 3 > size:
            raise DirectoryInconsistent(f"short-form entry {index} runs past the size {size}")
        length = data[at]
        (offset,) = struct.unpack_from(">H", data, at + 1)
        name = data[at + 3:at + 3 + length]
        at += 3 + length + (1 if shape.ftype else 0)
        if not length or at + width > size:
            raise DirectoryInconsistent(f"short-form entry {index}: bad name length {length}")
        if offset < last_offset:
            raise DirectoryInconsistent(f"short-form entry {index}: offsets out of order")
        last_offset = offset + 1
        inode = int.from_bytes(data[at:at + width], "big")
        at += width
        _check_entry(name, inode, shape)
        out.append((name, inode))
    if at != size:
        raise DirectoryInconsistent(f"short-form entries end at {at}, the size is {size}")
    return out


def parse_data_block(block: bytes, owner: int, shape: XfsDirShape,
                     out: list[tuple[bytes, int]]) -> None:
    """Add the entries of one directory data (or single-block) block to ``out``; leaf, node
    and free-index blocks (found in B+tree forks) are skipped."""
    magic = block[:4]
    header = _DATA_MAGICS.get(magic)
    if header is None:
        raise DirectoryInconsistent(f"data block with magic {magic!r}")
    if magic in _V5_MAGICS:
        if not crc_ok(block, 4):
            raise DirectoryInconsistent("data block checksum mismatch")
        (block_owner,) = struct.unpack_from(">Q", block, 40)
        if block_owner != owner:
            raise DirectoryInconsistent(f"data block owned by inode {block_owner}")
    end = len(block)
    leaf: list[tuple[int, int]] = []
    if magic in _BLOCK_MAGICS:  # single-block directory: the leaf and its tail sit at the end
        (leaf_count, stale) = struct.unpack_from(">II", block, end - 8)
        end -= 8 + 8 * leaf_count
        if end < header or stale > leaf_count:
            raise DirectoryInconsistent(f"block tail claims {leaf_count} leaf entries")
        leaf = sorted((address, hashval) for hashval, address in
                      struct.iter_unpack(">II", block[end:end + 8 * leaf_count]) if address)
        if len(leaf) != leaf_count - stale:
            raise DirectoryInconsistent(f"block leaf: {leaf_count - len(leaf)} stale entries, "
                                        f"the tail says {stale}")
    named: list[tuple[int, int]] = []  # (address, hash) of every entry, for the leaf check
    free: list[tuple[int, int]] = []   # (offset, length) of every free region
    at = header
    while at < end:
        if at + 8 > end:
            raise DirectoryInconsistent(f"entry at {at} runs past the data area")
        if block[at:at + 2] == b"\xff\xff":  # a free region: tag, length ... own offset
            (length,) = struct.unpack_from(">H", block, at + 2)
            if length < 8 or length % 8 or at + length > end or \
                    struct.unpack_from(">H", block, at + length - 2)[0] != at:
                raise DirectoryInconsistent(f"free region at {at}: bad length {length}")
            free.append((at, length))
            at += length
            continue
        (inode,) = struct.unpack_from(">Q", block, at)
        length = block[at + 8]
        used = (8 + 1 + length + (1 if shape.ftype else 0) + 2 + 7) & ~7
        if not length or at + used > end or \
                struct.unpack_from(">H", block, at + used - 2)[0] != at:
            raise DirectoryInconsistent(f"entry at {at}: bad name length {length} or tag")
        name = block[at + 9:at + 9 + length]
        if magic in _BLOCK_MAGICS:
            named.append((at >> 3, 0 if shape.ascii_ci else hash_name(name)))
        if name not in (b".", b".."):
            _check_entry(name, inode, shape)
            out.append((name, inode))
        else:
            _check_inode(inode, repr(name.decode()), shape)
        at += used
    _check_bestfree(block, 48 if magic in _V5_MAGICS else 4, free)
    if magic in _BLOCK_MAGICS:
        if shape.ascii_ci:
            leaf = [(address, 0) for address, _hash in leaf]
        if leaf != named:
            raise DirectoryInconsistent("the block's leaf (name hashes and addresses) does "
                                        "not match its entries")


def _check_bestfree(block: bytes, at: int, free: list[tuple[int, int]]) -> None:
    """The header's best-free table (the three longest free regions, longest first, as XFS
    keeps it) must name exactly the longest free regions the entries leave: an entry turned
    into free space without the table following is a damaged block, not a deletion."""
    table = [(offset, length) for offset, length in
             struct.iter_unpack(">HH", block[at:at + 12]) if length or offset]
    longest = sorted(free, key=lambda region: -region[1])[:3]
    if sorted(r[1] for r in table) != sorted(r[1] for r in longest) or \
            any(region not in free for region in table) or \
            [r[1] for r in table] != sorted((r[1] for r in table), reverse=True):
        raise DirectoryInconsistent(f"best-free table {table} does not match the free "
                                    f"regions {longest}")


def hash_name(name: bytes) -> int:
    """``xfs_da_hashname``: the hash a directory leaf files a name under."""
    value = 0
    while len(name) >= 4:
        value = (name[0] << 21) ^ (name[1] << 14) ^ (name[2] << 7) ^ name[3] ^ _rol(value, 28)
        name = name[4:]
    if len(name) == 3:
        value = (name[0] << 14) ^ (name[1] << 7) ^ name[2] ^ _rol(value, 21)
    elif len(name) == 2:
        value = (name[0] << 7) ^ name[1] ^ _rol(value, 14)
    elif len(name) == 1:
        value = name[0] ^ _rol(value, 7)
    return value & 0xFFFFFFFF


def _rol(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & 0xFFFFFFFF


def _check_entry(name: bytes, inode: int, shape: XfsDirShape) -> None:
    if name in (b".", b".."):
        raise DirectoryInconsistent(f"an entry named {name!r}")
    _check_inode(inode, repr(name), shape)


def _check_inode(inode: int, what: str, shape: XfsDirShape) -> None:
    if not shape.inode_ok(inode):
        raise DirectoryInconsistent(f"entry {what} points at inode {inode}, out of range")
