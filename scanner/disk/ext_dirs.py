"""ext2/3/4 directory blocks, parsed strictly: a directory is listed completely or not at all.

pytsk3 stops silently at the first bad record of a directory block (a record length of 0, one
that runs past the block) and lists what it read so far, which turned one corrupted byte into
"every file below was removed". The backend therefore parses the directory's data itself and
only trusts pytsk3's listing when both agree. Pure: bytes in, entries or an error out.

A directory is consistent when:

- its size is a whole number of blocks, all present (a hole reads as zeros: record length 0);
- in every block the records chain from the start to exactly the end of the block, each
  record 4-byte aligned, at least 8 bytes plus its name, never crossing the block's end
  (htree index blocks and the ``metadata_csum`` tail are records with inode 0, so they chain too);
- the first block starts with ``.`` (pointing at the directory itself) then ``..``, and no
  other live record is named ``.`` or ``..`` or has an empty name;
- every live record's inode number is the root (2) or a regular inode number
  (``s_first_ino`` .. ``s_inodes_count``).

Names holding ``/`` or NUL are not an inconsistency here: they are listed (and reported under
an escaped name, see :func:`scanner.paths.decode_component`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

ROOT_INODE = 2
_HEADER = struct.Struct("<IHBB")  # inode, rec_len, name_len, file_type
INCOMPAT_FILETYPE = 0x0002
INCOMPAT_INLINE_DATA = 0x8000
RO_COMPAT_DIR_NLINK = 0x0020


class DirectoryInconsistent(ValueError):
    """A directory that cannot be listed completely and consistently (the reason)."""


@dataclass(frozen=True, slots=True)
class ExtGeometry:
    """What the superblock says that a directory check needs."""

    block_size: int
    inodes_count: int
    first_ino: int
    incompat: int
    ro_compat: int

    @classmethod
    def parse(cls, sb: bytes) -> ExtGeometry:
        """From the 1024-byte superblock (``s_log_block_size`` at 24, features at 0x5C..)."""
        if len(sb) < 0x68 or sb[0x38:0x3A] != b"\x53\xef":
            raise DirectoryInconsistent("no ext superblock")
        (inodes_count,) = struct.unpack_from("<I", sb, 0)
        (log_block,) = struct.unpack_from("<I", sb, 24)
        (rev,) = struct.unpack_from("<I", sb, 0x4C)
        first_ino = struct.unpack_from("<I", sb, 0x54)[0] if rev >= 1 else 11
        incompat, ro_compat = struct.unpack_from("<II", sb, 0x60)
        if log_block > 6:
            raise DirectoryInconsistent(f"block size 1024 << {log_block} out of range")
        return cls(1024 << log_block, inodes_count, first_ino, incompat, ro_compat)

    @property
    def nlink_may_saturate(self) -> bool:
        """``dir_nlink``: a directory with more than 65,000 subdirectories has link count 1."""
        return bool(self.ro_compat & RO_COMPAT_DIR_NLINK)


@dataclass(frozen=True, slots=True)
class ExtDirEntry:
    """One live record of a directory (not ``.``/``..``)."""

    name: bytes
    inode: int


def parse_directory(blocks: Iterator[bytes], size: int, inode: int,
                    geo: ExtGeometry) -> list[ExtDirEntry]:
    """The live entries of directory ``inode`` from its data (``size`` bytes, given block by
    block), or :class:`DirectoryInconsistent` with the first reason found."""
    bs = geo.block_size
    if size <= 0 or size % bs:
        raise DirectoryInconsistent(f"size {size} is not a whole number of {bs}-byte blocks")
    out: list[ExtDirEntry] = []
    number = 0
    for number, block in enumerate(blocks):
        if len(block) != bs:
            raise DirectoryInconsistent(f"block {number} is short ({len(block)} bytes)")
        _parse_block(block, number, inode, geo, out)
    if (number + 1) * bs != size:
        raise DirectoryInconsistent(f"data ends after {number + 1} of {size // bs} blocks")
    return out


def _parse_block(block: bytes, number: int, inode: int, geo: ExtGeometry,
                 out: list[ExtDirEntry]) -> None:
    bs, at, index = len(block), 0, 0
    while at < bs:
        if at + 8 > bs:
            raise DirectoryInconsistent(f"block {number}: record at {at} runs past the block")
        ino, rec_len, name_len, _ftype = _HEADER.unpack_from(block, at)
        if rec_len < 8 + name_len or rec_len % 4 or at + rec_len > bs:
            raise DirectoryInconsistent(f"block {number}: bad record length {rec_len} at "
                                        f"offset {at}")
        name = block[at + 8:at + 8 + name_len]
        if number == 0 and index < 2:
            want = b"." if index == 0 else b".."
            if name != want or ino == 0 or (index == 0 and ino != inode):
                raise DirectoryInconsistent(f"record {index} of block 0 is {name!r} -> inode "
                                            f"{ino}, not {want.decode()!r}")
        elif ino:
            if not name or name in (b".", b".."):
                raise DirectoryInconsistent(f"block {number}: a record named {name!r} at "
                                            f"offset {at}")
            if not (ino == ROOT_INODE or geo.first_ino <= ino <= geo.inodes_count):
                raise DirectoryInconsistent(f"block {number}: entry {name!r} points at inode "
                                            f"{ino}, out of range")
            out.append(ExtDirEntry(name, ino))
        if number == 0 and index == 1 and ino and not (
                ino == ROOT_INODE or geo.first_ino <= ino <= geo.inodes_count):
            raise DirectoryInconsistent(f"'..' points at inode {ino}, out of range")
        at += rec_len
        index += 1
