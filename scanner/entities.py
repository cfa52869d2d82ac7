"""What a scan records per monitored file, and which of its fields count as a change."""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field
from typing import Any

# Compared fields, in the order FieldsChanged lists them. atime is recorded, never compared.
FILE_COMPARED_FIELDS: tuple[str, ...] = (
    "type", "size", "mode", "uid", "gid", "link_target", "sha256", "acl", "capability",
    "xattrs", "mtime", "ctime", "crtime", "inode", "nlink",
)
FILE_RECORDED_FIELDS: tuple[str, ...] = (*FILE_COMPARED_FIELDS, "atime")
# A directory's size, mtime, ctime and link count move whenever an entry is added or removed
# inside it, and those entries are reported themselves: recorded, not compared.
DIRECTORY_QUIET_FIELDS = frozenset({"size", "mtime", "ctime", "nlink"})


@dataclass(slots=True)
class FileEntity:
    """The state of one monitored path on one machine at one scan.

    Times are integer nanoseconds since the epoch (``None`` where the filesystem has none);
    ``mode`` holds permission and set-id bits; ``xattrs`` holds extended attributes other
    than the POSIX ACL (``acl``) and ``security.capability`` (``capability``), rendered as text.
    ``policies`` names the monitored entities that cover the path.
    """

    path: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: int | None
    ctime: int | None
    crtime: int | None
    atime: int | None
    inode: int
    nlink: int
    link_target: str | None = None
    sha256: str | None = None
    acl: str | None = None
    capability: str | None = None
    xattrs: dict[str, str] = field(default_factory=dict)
    policies: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        """The recorded fields as a plain dict (no path, no policies)."""
        data = asdict(self)
        return {name: data[name] for name in FILE_RECORDED_FIELDS}


def changed_fields(previous: FileEntity, current: FileEntity) -> tuple[str, ...]:
    """Compared fields whose values differ, in :data:`FILE_COMPARED_FIELDS` order."""
    both_dirs = previous.type == current.type == "directory"
    return tuple(f for f in FILE_COMPARED_FIELDS
                 if getattr(previous, f) != getattr(current, f)
                 and not (both_dirs and f in DIRECTORY_QUIET_FIELDS))


_record_key = operator.attrgetter(*FILE_RECORDED_FIELDS, "policies")


def same_record(previous: FileEntity, current: FileEntity) -> bool:
    """True when nothing recorded differs (compared fields, atime and covering policies)."""
    return bool(_record_key(previous) == _record_key(current))
