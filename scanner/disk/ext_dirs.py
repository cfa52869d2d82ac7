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
- a record with inode 0 (unused) is the first of its block or the checksum tail: a deletion
  merges a record into the one before it, so an unused record in the middle of a block is
  damage (a cleared inode number), not a deletion;
- every live record's inode number is the root (2) or a regular inode number
  (``s_first_ino`` .. ``s_inodes_count``);
- with ``metadata_csum``, every leaf block carrying the checksum tail matches its CRC32C
  (seeded with the filesystem UUID, the inode number and generation). Whoever writes the
  disk can recompute it, but a damaged block is told from a directory whose entries were
  really deleted, which the record chain alone cannot do (a deletion merges the record into
  the one before it, exactly as a corrupted record length does).

Names holding ``/`` or NUL are not an inconsistency here: they are listed (and reported under
an escaped name, see :func:`scanner.paths.decode_component`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from scanner.disk.ext_geometry import ExtGeometry, crc
from scanner.errors import DirectoryInconsistent

ROOT_INODE = 2
_HEADER = struct.Struct("<IHBB")  # inode, rec_len, name_len, file_type
_TAIL = struct.Struct("<IHBBI")  # inode 0, rec_len 12, name_len 0, file_type 0xDE, checksum


ExtDirEntry = tuple[bytes, int]  # one live record of a directory (not . or ..): (name, inode)


def parse_directory(blocks: Iterator[bytes], size: int, inode: int, geo: ExtGeometry,
                    seed: int | None = None) -> list[ExtDirEntry]:
    """The live entries of directory ``inode`` from its data (``size`` bytes, given block by
    block), or :class:`DirectoryInconsistent` with the first reason found. ``seed``
    (:meth:`ExtGeometry.directory_seed`) checks the leaf blocks' checksums."""
    bs = geo.block_size
    if size <= 0 or size % bs:
        raise DirectoryInconsistent(f"size {size} is not a whole number of {bs}-byte blocks")
    out: list[ExtDirEntry] = []
    number = 0
    for number, block in enumerate(blocks):
        if len(block) != bs:
            raise DirectoryInconsistent(f"block {number} is short ({len(block)} bytes)")
        if seed is not None:
            _check_tail(block, number, seed)
        _parse_block(block, number, inode, geo, out)
    if (number + 1) * bs != size:
        raise DirectoryInconsistent(f"data ends after {number + 1} of {size // bs} blocks")
    return out


def _check_tail(block: bytes, number: int, seed: int) -> None:
    """A leaf block ends with a 12-byte record of inode 0 and type 0xDE holding the CRC32C of
    the bytes before it (htree index blocks have another layout and are not checked here)."""
    zero, rec_len, name_len, ftype, stored = _TAIL.unpack_from(block, len(block) - 12)
    if (zero, rec_len, name_len, ftype) != (0, 12, 0, 0xDE):
        return
    if crc(seed, block[:-12]) != stored:
        raise DirectoryInconsistent(f"block {number}: checksum mismatch")


def _parse_block(block: bytes, number: int, inode: int, geo: ExtGeometry,
                 out: list[ExtDirEntry]) -> None:
    bs, at, index = len(block), 0, 0
    unpack, first_ino, last_ino = _HEADER.unpack_from, geo.first_ino, geo.inodes_count
    while at < bs:
        if at + 8 > bs:
            raise DirectoryInconsistent(f"block {number}: record at {at} runs past the block")
        ino, rec_len, name_len, _ftype = unpack(block, at)
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
            if not (ino == ROOT_INODE or first_ino <= ino <= last_ino):
                raise DirectoryInconsistent(f"block {number}: entry {name!r} points at inode "
                                            f"{ino}, out of range")
            out.append((name, ino))
        elif index and not (rec_len == 12 and at + 12 == bs and not name_len):
            # a deletion merges a record into the one before it; only a block's first record
            # (or the checksum tail) is ever left with inode 0
            raise DirectoryInconsistent(f"block {number}: an unused record at offset {at}")
        if number == 0 and index == 1 and ino and not (
                ino == ROOT_INODE or first_ino <= ino <= last_ino):
            raise DirectoryInconsistent(f"'..' points at inode {ino}, out of range")
        at += rec_len
        index += 1
