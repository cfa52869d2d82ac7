"""File entities of a walked NTFS node: the file itself (SDDL, DOS attributes, reparse
target, the four times) and one entity per alternate data stream (``C:\\dir\\file:name``,
hashed here, in process).

The default stream's hash is left to :mod:`scanner.collectors.hashing` (by inode), like on
Linux. Owner and group live in the SDDL, so ``mode``, ``uid`` and ``gid`` are 0.
"""

from __future__ import annotations

import hashlib

from scanner.disk.nodes import Node
from scanner.disk.ntfs_meta import NtfsFileInfo, format_attributes
from scanner.disk.tsk_fs import TskFilesystem
from scanner.disk.walker import Found
from scanner.entities import FileEntity
from scanner.errors import CorruptFilesystem, SourceReadError

__all__ = ["STREAM_TYPE", "windows_entities"]

STREAM_TYPE = "stream"


def windows_entities(win_path: str, found: Found, policies: tuple[str, ...]
                     ) -> tuple[list[FileEntity], dict[str, str]]:
    """The entity of one walked node (named ``win_path``, hash pending), then one entity
    per alternate data stream (hashed). Returns them with the paths whose content could not
    be read mapped to the reason (such a stream keeps ``sha256`` None).

    Errors reading the node's own metadata (CorruptFilesystem, SourceReadError) propagate.
    On a volume that is not NTFS (FAT) only the node's own metadata is recorded."""
    node, fs = found.node, found.mount.fs
    if not (isinstance(fs, TskFilesystem) and fs.is_ntfs):
        return [_node_entity(win_path, node, None, policies)], {}
    meta = fs.ntfs_meta()
    info = meta.describe(node.inode)
    entities = [_node_entity(win_path, node, info, policies)]
    unreadable: dict[str, str] = {}
    for stream in info.streams:
        path = f"{win_path}:{stream.name}"
        digest: str | None = None
        try:
            sha = hashlib.sha256()
            for chunk in meta.read_stream(node.inode, stream):
                sha.update(chunk)
            digest = sha.hexdigest()
        except (CorruptFilesystem, SourceReadError) as exc:
            unreadable[path] = str(exc)
        entities.append(FileEntity(
            path=path, type=STREAM_TYPE, size=stream.size, mode=0, uid=0, gid=0,
            mtime=None, ctime=None, crtime=None, atime=None, inode=node.inode, nlink=1,
            sha256=digest, policies=policies,
        ))
    return entities, unreadable


def _node_entity(win_path: str, node: Node, info: NtfsFileInfo | None,
                 policies: tuple[str, ...]) -> FileEntity:
    target = None
    if info is not None and info.reparse is not None and info.reparse.kind != "other":
        target = info.reparse.target
    crtime, mtime, ctime, atime = node.crtime, node.mtime, node.ctime, node.atime
    if info is not None and info.times is not None:  # the raw FILETIMEs (TSK drops far ones)
        crtime, mtime, ctime, atime = info.times
    return FileEntity(
        path=win_path, type=node.kind.value, size=node.size, mode=0, uid=0, gid=0,
        mtime=mtime, ctime=ctime, crtime=crtime, atime=atime,
        inode=node.inode, nlink=node.nlink, link_target=target,
        acl=info.acl if info else None,
        attributes=(format_attributes(info.attributes) or None) if info else None,
        policies=policies,
    )
