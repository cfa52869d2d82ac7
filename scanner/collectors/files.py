"""File entities from walked nodes: metadata, link targets and extended attributes.

Content hashes are filled in afterwards by :mod:`scanner.collectors.hashing`, which can
spread the work over processes.

Every path of an inode gets the inode's full state: nothing here is cached per inode, each
path reads its own link target and attributes from the filesystem.
"""

from __future__ import annotations

from scanner.collectors.xattrs import render_xattrs
from scanner.disk.nodes import FileKind
from scanner.disk.walker import Found
from scanner.entities import FileEntity
from scanner.errors import DiskError, SourceReadError


def linux_file_entities(path: str, found: Found, policies: tuple[str, ...]
                        ) -> tuple[list[FileEntity], dict[str, str]]:
    """The entity of one node and the unreadable paths it leaves.

    Extended attributes that cannot be read (inconsistent structures, more than
    ``limits.xattr_bytes``) do not hide the rest of the file: the entity is recorded with its
    ``acl``, ``capability`` and ``xattrs`` unknown (``xattrs`` None; the diff keeps their
    previous values) and the path is listed as unreadable with the reason. Errors reading the
    metadata or the link target propagate (the whole path is then unreadable).
    """
    node, fs = found.node, found.mount.fs
    link = fs.read_link(node) if node.kind is FileKind.SYMLINK else None
    error: DiskError | SourceReadError | None = None  # (one call per walked entry: inline)
    acl: str | None = None
    capability: str | None = None
    other: dict[str, str] | None = {}
    try:
        attrs = fs.xattrs(node)
    except (DiskError, SourceReadError) as exc:
        error, other = exc, None
    else:
        if attrs:
            acl, capability, other = render_xattrs(attrs)
    # positional, in FileEntity's field order (one per entry of a walk): path, type, size,
    # mode, uid, gid, mtime, ctime, crtime, atime, inode, nlink, link_target, sha256, acl,
    # capability, xattrs, attributes, policies
    entity = FileEntity(path, node.kind.value, node.size, node.mode, node.uid, node.gid,
                        node.mtime, node.ctime, node.crtime, node.atime, node.inode, node.nlink,
                        link, None, acl, capability, other, None, policies)
    if error is not None:
        return [entity], {path: f"extended attributes: {error}"}
    return [entity], {}
