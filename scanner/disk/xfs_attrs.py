"""XFS extended attributes as bytes, parsed from the attribute fork (pure, no I/O).

libfsxfs returns attribute names as UTF-8 strings and refuses the others (``user.\\xff``,
which ``setfattr`` can create), which would hide every attribute of the file. The two forms
real files use are parsed here (``fs/xfs/libxfs/xfs_da_format.h``):

- short form: the attributes inside the inode, after the data fork (``di_forkoff``);
- leaf and node form: leaf blocks (v5 ``0x3bee`` with an 80-byte header, v4 ``0xfbee`` with a
  32-byte one) reached from logical block 0 of the attribute fork through node blocks (v5
  ``0x3ebe``, v4 ``0xfebe``), values kept in the leaf ("local") or in remote value blocks of
  the same fork (v5 ones with a 56-byte ``XARM`` header).

An attribute fork whose extents are kept in a B+tree is left to libfsxfs by the caller. Names
get the Linux prefix of their namespace flags; ``trusted.SGI_ACL_FILE`` / ``SGI_ACL_DEFAULT`` (big
endian ``xfs_acl``) become ``system.posix_acl_access`` / ``_default`` in the VFS (version 2)
encoding, as the kernel shows them. Every length is checked against the bytes present and the
per-file bound; a violation raises :class:`~scanner.errors.CorruptFilesystem`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from scanner.errors import CorruptFilesystem

_ATTR_LOCAL, _ATTR_ROOT, _ATTR_SECURE, _ATTR_INCOMPLETE = 0x1, 0x2, 0x4, 0x80
_LEAF_MAGICS = {0x3BEE: 80, 0xFBEE: 32}  # -> header size (v5, v4)
_NODE_MAGICS = {0x3EBE: 64, 0xFEBE: 16}  # -> header size (v5, v4)
_MAX_FORK_BLOCKS = 1 << 16
_REMOTE_MAGIC = b"XARM"
_REMOTE_HEADER = 56

# ACLs: XFS names -> Linux names
_ACL_NAMES = {b"trusted.SGI_ACL_FILE": b"system.posix_acl_access",
              b"trusted.SGI_ACL_DEFAULT": b"system.posix_acl_default"}
_ACL_VFS_VERSION = 2
_ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_USER, _ACL_GROUP = 0x02, 0x08
_ACL_MAX_ENTRIES = 8191

Pairs = list[tuple[bytes, bytes]]
BlockReader = Callable[[int], bytes | None]  # attribute-fork logical block -> bytes or None


def xfs_acl_to_vfs(raw: bytes) -> bytes:
    """Convert an on-disk XFS ACL (``be32 count``, then ``be32 tag, be32 id, be16 perm,
    be16 pad`` per entry) to the VFS ``system.posix_acl_*`` value (version 2, little-endian
    ``u16 tag, u16 perm, u32 id``). A value that is not a well-formed XFS ACL is returned
    unchanged (the renderer then keeps it as hex)."""
    if len(raw) < 4:
        return raw
    (count,) = struct.unpack_from(">I", raw, 0)
    if count > _ACL_MAX_ENTRIES or len(raw) != 4 + 12 * count:
        return raw
    out = [struct.pack("<I", _ACL_VFS_VERSION)]
    for index in range(count):
        tag, ident, perm, _pad = struct.unpack_from(">IIHH", raw, 4 + 12 * index)
        if tag > 0xFFFF:
            return raw
        if tag not in (_ACL_USER, _ACL_GROUP):
            ident = _ACL_UNDEFINED_ID
        out.append(struct.pack("<HHI", tag, perm, ident))
    return b"".join(out)


def linux_names(pairs: Pairs) -> dict[bytes, bytes]:
    """(XFS name, value) pairs as the kernel shows them: ``secure.`` -> ``security.``, the SGI
    ACLs -> ``system.posix_acl_*`` in the VFS encoding."""
    out: dict[bytes, bytes] = {}
    for name, value in pairs:
        if name in _ACL_NAMES:
            out[_ACL_NAMES[name]] = xfs_acl_to_vfs(value)
        elif name.startswith(b"secure."):
            out[b"security." + name[len(b"secure."):]] = value
        else:
            out[name] = value
    return out


def namespace(flags: int) -> bytes:
    """The name prefix of an attribute's namespace flags (libfsxfs's spelling)."""
    if flags & _ATTR_ROOT:
        return b"trusted."
    if flags & _ATTR_SECURE:
        return b"secure."
    if flags & ~(_ATTR_LOCAL | _ATTR_INCOMPLETE):
        return b"xfs-flags-%d." % flags
    return b"user."


def bound_error(inode: int) -> CorruptFilesystem:
    """The error of attributes past ``Limits.xattr_bytes``."""
    return CorruptFilesystem(f"inode {inode}: extended attributes exceed the bound "
                             "(SNAPFIM_MAX_XATTR_BYTES)")


def shortform(fork: bytes, inode: int, limit: int) -> Pairs:
    """The attributes of a short-form fork (``totsize be16, count u8, pad``, then per entry
    ``namelen u8, valuelen u8, flags u8, name, value``)."""
    if len(fork) < 4:
        raise CorruptFilesystem(f"inode {inode}: attribute fork out of the inode")
    (total,) = struct.unpack_from(">H", fork, 0)
    count, at, end = fork[2], 4, min(total, len(fork))
    pairs = []
    for _ in range(count):
        if at + 3 > end:
            raise CorruptFilesystem(f"inode {inode}: truncated short-form attribute")
        name_len, value_len, flags = fork[at], fork[at + 1], fork[at + 2]
        stop = at + 3 + name_len + value_len
        if stop > end:
            raise CorruptFilesystem(f"inode {inode}: short-form attribute overflows")
        limit -= name_len + value_len
        if limit < 0:
            raise bound_error(inode)
        pairs.append((namespace(flags) + fork[at + 3:at + 3 + name_len],
                      fork[at + 3 + name_len:stop]))
        at = stop
    return pairs


def blocks(read_block: BlockReader, block_size: int, inode: int, limit: int) -> Pairs:
    """The attributes of a leaf- or node-form fork: from logical block 0, node blocks lead to
    leaf blocks (each block visited once)."""
    pending: list[int] = [0]
    seen: set[int] = set()
    pairs: Pairs = []
    while pending:
        logical = pending.pop()
        if logical in seen or len(seen) >= _MAX_FORK_BLOCKS:
            raise CorruptFilesystem(f"inode {inode}: attribute tree loops")
        seen.add(logical)
        block = read_block(logical)
        if block is None or len(block) < 32:
            raise CorruptFilesystem(f"inode {inode}: attribute block {logical} missing")
        (magic,) = struct.unpack_from(">H", block, 8)
        if magic in _NODE_MAGICS:
            header = _NODE_MAGICS[magic]
            (count,) = struct.unpack_from(">H", block, header - 8 if header == 64 else 12)
            if header + 8 * count > len(block):
                raise CorruptFilesystem(f"inode {inode}: attribute node holds too many entries")
            pending.extend(struct.unpack_from(">I", block, header + 8 * i + 4)[0]
                           for i in range(count))
            continue
        found = leaf(block, read_block, block_size, inode, limit)
        limit -= sum(len(name) + len(value) for name, value in found)
        pairs.extend(found)
    return pairs


def leaf(block: bytes, read_block: BlockReader, block_size: int, inode: int,
         limit: int) -> Pairs:
    """The attributes of one leaf block (local values, or remote ones through
    ``read_block``)."""
    (magic,) = struct.unpack_from(">H", block, 8)
    header = _LEAF_MAGICS.get(magic)
    if header is None:
        raise CorruptFilesystem(f"inode {inode}: attribute block with magic 0x{magic:04x}")
    (count,) = struct.unpack_from(">H", block, header - 24 if header == 80 else 12)
    if header + 8 * count > len(block):
        raise CorruptFilesystem(f"inode {inode}: attribute leaf holds too many entries")
    pairs = []
    for index in range(count):
        _hash, name_at, flags = struct.unpack_from(">IHB", block, header + 8 * index)
        if flags & _ATTR_INCOMPLETE:
            continue  # being set or removed: the kernel does not show it
        if flags & _ATTR_LOCAL:
            if name_at + 3 > len(block):
                raise CorruptFilesystem(f"inode {inode}: attribute name out of its block")
            value_len, name_len = struct.unpack_from(">HB", block, name_at)
            name = block[name_at + 3:name_at + 3 + name_len]
            value = block[name_at + 3 + name_len:name_at + 3 + name_len + value_len]
            if len(name) != name_len or len(value) != value_len:
                raise CorruptFilesystem(f"inode {inode}: attribute overflows its block")
            limit -= name_len + value_len
        else:
            if name_at + 9 > len(block):
                raise CorruptFilesystem(f"inode {inode}: attribute name out of its block")
            value_block, value_len, name_len = struct.unpack_from(">IIB", block, name_at)
            name = block[name_at + 9:name_at + 9 + name_len]
            if len(name) != name_len:
                raise CorruptFilesystem(f"inode {inode}: attribute overflows its block")
            limit -= name_len + value_len
            if limit < 0:
                raise bound_error(inode)
            value = _remote_value(read_block, value_block, value_len, block_size,
                                  header == 80, inode)
        if limit < 0:
            raise bound_error(inode)
        pairs.append((namespace(flags) + name, value))
    return pairs


def _remote_value(read_block: BlockReader, first: int, length: int, block_size: int,
                  v5: bool, inode: int) -> bytes:
    """A value kept in blocks of its own, from logical block ``first`` of the fork."""
    parts: list[bytes] = []
    got, logical = 0, first
    while got < length:
        data = read_block(logical)
        if data is None:
            raise CorruptFilesystem(f"inode {inode}: remote attribute value block unmapped")
        if v5:
            if data[:4] != _REMOTE_MAGIC:
                raise CorruptFilesystem(f"inode {inode}: remote attribute value block has "
                                        "no XARM header")
            (nbytes,) = struct.unpack_from(">I", data, 8)
            data = data[_REMOTE_HEADER:_REMOTE_HEADER + min(nbytes, block_size)]
        if not data:
            raise CorruptFilesystem(f"inode {inode}: empty remote attribute value block")
        parts.append(data[:length - got])
        got += len(parts[-1])
        logical += 1
    return b"".join(parts)
