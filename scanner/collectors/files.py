"""File entities from walked nodes: metadata, link targets and extended attributes.

Content hashes are filled in afterwards by :mod:`scanner.collectors.hashing`, which can
spread the work over processes.
"""

from __future__ import annotations

from scanner.collectors.xattrs import render_xattrs
from scanner.disk.nodes import FileKind
from scanner.disk.walker import Found
from scanner.entities import FileEntity


def file_entity(path: str, found: Found, policies: tuple[str, ...]) -> FileEntity:
    """Build the entity for one node (hash pending). May raise the filesystem's read errors."""
    node, fs = found.node, found.mount.fs
    link = fs.read_link(node) if node.kind is FileKind.SYMLINK else None
    attrs = fs.xattrs(node)
    acl, capability, other = render_xattrs(attrs) if attrs else (None, None, {})
    return FileEntity(
        path=path,
        type=node.kind.value,
        size=node.size,
        mode=node.mode,
        uid=node.uid,
        gid=node.gid,
        mtime=node.mtime,
        ctime=node.ctime,
        crtime=node.crtime,
        atime=node.atime,
        inode=node.inode,
        nlink=node.nlink,
        link_target=link,
        acl=acl,
        capability=capability,
        xattrs=other,
        policies=policies,
    )
