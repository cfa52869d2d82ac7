"""What a scan records per monitored entity (a file, a registry key, a registry value), and
which of its fields count as a change. Pure data: no I/O.

Every entity has an id (``path``: a file path, a key path, or a value id, see
:func:`value_id`), the names of the policy entities covering it (``policies``), its recorded
fields (:meth:`values`), and says which compared fields differ from a previous state of
itself (:meth:`changed_from`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Compared fields, in the order FieldsChanged lists them. atime is recorded, never compared.
FILE_COMPARED_FIELDS: tuple[str, ...] = (
    "type", "size", "mode", "uid", "gid", "link_target", "sha256", "acl", "capability",
    "xattrs", "attributes", "mtime", "ctime", "crtime", "inode", "nlink",
)
FILE_RECORDED_FIELDS: tuple[str, ...] = (*FILE_COMPARED_FIELDS, "atime")
# A directory's size, mtime, ctime and link count move whenever an entry is added or removed
# inside it, and those entries are reported themselves: recorded, not compared.
DIRECTORY_QUIET_FIELDS = frozenset({"size", "mtime", "ctime", "nlink"})
# ``attributes`` of a Linux file whose ``sha256`` is the sparse-aware digest (see
# scanner.collectors.hashing.hash_node)
SPARSE = "sparse"

# A key's last-write time, subkey and value counts move whenever something below it changes,
# and those changes are reported by their own entities: recorded, not compared.
KEY_COMPARED_FIELDS: tuple[str, ...] = ("acl",)
KEY_RECORDED_FIELDS: tuple[str, ...] = ("acl", "last_write", "subkey_count", "value_count")
VALUE_COMPARED_FIELDS: tuple[str, ...] = ("type", "size", "sha256")
VALUE_RECORDED_FIELDS: tuple[str, ...] = (*VALUE_COMPARED_FIELDS, "preview")


@dataclass(slots=True)
class FileEntity:
    """The state of one monitored path on one machine at one scan.

    Times are integer nanoseconds since the epoch (``None`` where the filesystem has none);
    ``mode`` holds permission and set-id bits; ``xattrs`` holds extended attributes other
    than the POSIX ACL (``acl``) and ``security.capability`` (``capability``), rendered as text
    (names escaped like file names); ``xattrs`` is None (and ``acl``, ``capability`` too) when
    the attributes could not be read this time: the diff keeps their previous values.
    On NTFS, ``acl`` is the security descriptor as SDDL (owner, group, DACL, SACL),
    ``attributes`` the DOS attributes (``archive,hidden``), ``link_target`` the target of a
    symlink or junction reparse point, and an alternate data stream is an entity of its own
    (type ``stream``, path ``C:\\dir\\file:stream``). ``policies`` names the monitored
    entities that cover the path.
    """

    ENTITY_TYPE: ClassVar[str] = "file"

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
    xattrs: dict[str, str] | None = field(default_factory=dict)
    attributes: str | None = None
    policies: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        """The recorded fields as a plain dict (no path, no policies; ``xattrs`` a copy)."""
        data = {name: getattr(self, name) for name in FILE_RECORDED_FIELDS}
        if data["xattrs"] is not None:
            data["xattrs"] = dict(data["xattrs"])
        return data

    def changed_from(self, previous: FileEntity) -> tuple[str, ...]:
        """Compared fields that differ from ``previous``, in FILE_COMPARED_FIELDS order."""
        return changed_fields(previous, self)

    def same_as(self, previous: FileEntity) -> bool:
        """True when nothing recorded differs (compared fields, atime, covering policies)."""
        return same_record(previous, self)

    def event_target(self) -> tuple[str, str | None]:
        """(path, value name) as a change event names the entity."""
        return self.path, None


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


# -- registry ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HiveTag:
    """The hive a registry entity was read from: its mount prefix (``HKLM\\SOFTWARE``, the
    start of every id read from it) and a digest of everything the hive's entities were made
    from (its bytes, the registry entities walking it, the collector's rules). Two scans with
    the same digest yield the same entities, so the store need not stage them again."""

    mount: str
    digest: str


def value_id(key_path: str, name: str) -> str:
    """The id of value ``name`` of the key ``key_path``: the key path, two backslashes, the
    name as stored (the default value has the empty name). Key names never hold a backslash
    and are never empty, so the double backslash cannot be confused with a key path."""
    return f"{key_path}\\\\{name}"


def split_value_id(entity_id: str) -> tuple[str, str] | None:
    """``(key_path, value_name)`` of a value id, None for a key id."""
    key, sep, name = entity_id.partition("\\\\")
    return (key, name) if sep else None


@dataclass(slots=True)
class RegistryKeyEntity:
    """One monitored key at one scan. ``last_write`` is integer ns since the epoch; ``acl``
    the SDDL of its security cell (``0x``+hex if it cannot be rendered, None if none);
    ``policies`` names the monitored entities that cover the key; ``hive`` (not recorded,
    not compared) the hive it was read from, when the whole hive was read (:class:`HiveTag`)."""

    ENTITY_TYPE: ClassVar[str] = "registry"

    path: str
    last_write: int
    acl: str | None
    subkey_count: int
    value_count: int
    policies: tuple[str, ...] = ()
    hive: HiveTag | None = field(default=None, compare=False, repr=False)  # not recorded

    def values(self) -> dict[str, Any]:
        """The recorded fields as a plain dict (no path, no policies)."""
        return {name: getattr(self, name) for name in KEY_RECORDED_FIELDS}

    def changed_from(self, previous: RegistryEntity) -> tuple[str, ...]:
        """Compared fields that differ from ``previous``."""
        return changed_registry_fields(previous, self)

    def same_as(self, previous: RegistryEntity) -> bool:
        """True when nothing recorded differs (fields and covering policies)."""
        return (isinstance(previous, RegistryKeyEntity) and previous.values() == self.values()
                and previous.policies == self.policies)

    def event_target(self) -> tuple[str, str | None]:
        """(key path, None)."""
        return self.path, None


@dataclass(slots=True)
class RegistryValueEntity:
    """One monitored value at one scan: type name (``REG_SZ``), data size in bytes, SHA-256
    of the raw data, and a bounded readable preview of it; ``hive`` as for keys."""

    ENTITY_TYPE: ClassVar[str] = "registry"

    key_path: str
    name: str
    type: str
    size: int
    sha256: str
    preview: str | None
    policies: tuple[str, ...] = ()
    hive: HiveTag | None = field(default=None, compare=False, repr=False)  # not recorded

    @property
    def path(self) -> str:
        """The value id (see :func:`value_id`)."""
        return value_id(self.key_path, self.name)

    def values(self) -> dict[str, Any]:
        """The recorded fields as a plain dict (no key path, name or policies)."""
        return {name: getattr(self, name) for name in VALUE_RECORDED_FIELDS}

    def changed_from(self, previous: RegistryEntity) -> tuple[str, ...]:
        """Compared fields that differ from ``previous``."""
        return changed_registry_fields(previous, self)

    def same_as(self, previous: RegistryEntity) -> bool:
        """True when nothing recorded differs (fields and covering policies)."""
        return (isinstance(previous, RegistryValueEntity)
                and previous.values() == self.values() and previous.policies == self.policies)

    def event_target(self) -> tuple[str, str | None]:
        """(key path, value name)."""
        return self.key_path, self.name


RegistryEntity = RegistryKeyEntity | RegistryValueEntity
Entity = FileEntity | RegistryKeyEntity | RegistryValueEntity


def changed_registry_fields(previous: RegistryEntity, current: RegistryEntity
                            ) -> tuple[str, ...]:
    """Compared fields that differ, in ``*_COMPARED_FIELDS`` order."""
    fields = (KEY_COMPARED_FIELDS if isinstance(current, RegistryKeyEntity)
              else VALUE_COMPARED_FIELDS)
    return tuple(f for f in fields if getattr(previous, f) != getattr(current, f))
