"""A test oracle for the diff: what README.md ("What is monitored and compared", "Registry")
says a scan must report, written out plainly and independently of :mod:`scanner.diff` and of
the comparison tables of :mod:`scanner.entities` (only the entity dataclasses are shared, as
data holders). The SQL diff and the in-memory diff are both checked against it.

Rules, from the README:

- Files: compared fields are type, size, mode, uid, gid, link target, SHA-256, POSIX ACL,
  capability, other xattrs, NTFS attributes, mtime, ctime, crtime, inode, link count; atime is
  recorded, never a change by itself; for two directories size/mtime/ctime/link count are
  recorded, not compared. A file whose content could not be read this time (no hash, listed as
  unreadable, same type) keeps its previous hash; its metadata is still compared.
- Registry keys: the ACL is compared; last-write time and subkey/value counts are recorded.
  Registry values: type, size and SHA-256 are compared; the preview is recorded.
- Present now only: ``added`` when a policy covering it was active at the previous scan, else
  quiet new coverage. Present before only: kept when under an unreadable path (unreadable is
  not removed); else ``removed`` when a policy covering it is still active, else dropped
  quietly. A machine's state afterwards is this scan's entities plus what was kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scanner.entities import FileEntity, RegistryKeyEntity, RegistryValueEntity

# Compared fields, in the order the README lists them (FieldsChanged uses this order).
FILE_COMPARED = ("type", "size", "mode", "uid", "gid", "link_target", "sha256", "acl",
                 "capability", "xattrs", "attributes", "mtime", "ctime", "crtime", "inode",
                 "nlink")
FILE_RECORDED = (*FILE_COMPARED, "atime")
DIRECTORY_NOT_COMPARED = frozenset({"size", "mtime", "ctime", "nlink"})
KEY_COMPARED = ("acl",)
KEY_RECORDED = ("acl", "last_write", "subkey_count", "value_count")
VALUE_COMPARED = ("type", "size", "sha256")
VALUE_RECORDED = ("type", "size", "sha256", "preview")

Event = tuple[str, str, str, str | None, tuple[str, ...], dict[str, Any] | None,
              dict[str, Any] | None, tuple[str, ...]]


@dataclass
class Expected:
    """What a diff must produce."""

    events: list[Event] = field(default_factory=list)  # sorted by (type, path, value, ...)
    deletes: list[str] = field(default_factory=list)    # sorted
    kept_unreadable: int = 0
    quiet_added: int = 0
    quiet_dropped: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # the machine's state afterwards


def _kind(entity: Any) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(entity type, compared fields, recorded fields)."""
    if isinstance(entity, FileEntity):
        return "file", FILE_COMPARED, FILE_RECORDED
    if isinstance(entity, RegistryKeyEntity):
        return "registry", KEY_COMPARED, KEY_RECORDED
    assert isinstance(entity, RegistryValueEntity)
    return "registry", VALUE_COMPARED, VALUE_RECORDED


def _target(entity: Any) -> tuple[str, str | None]:
    """How an event names the entity: (path or key path, value name or None)."""
    if isinstance(entity, RegistryValueEntity):
        return entity.key_path, entity.name
    return entity.path, None


def _recorded(entity: Any) -> dict[str, Any]:
    return {f: getattr(entity, f) for f in _kind(entity)[2]}


def _event(category: str, entity: Any, fields: tuple[str, ...],
           previous: Any | None, current: Any | None) -> Event:
    path, value_name = _target(entity)
    return (_kind(entity)[0], category, path, value_name, fields,
            None if previous is None else _recorded(previous),
            None if current is None else _recorded(current), tuple(entity.policies))


def within(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it: ``/`` for Linux paths, ``\\`` for Windows paths and
    registry ids, and an NTFS stream ``C:\\f:s`` lies within its file ``C:\\f``."""
    sep = "/" if prefix.startswith("/") else "\\"
    if path == prefix or prefix == "/" or path.startswith(prefix.rstrip(sep) + sep):
        return True
    return prefix[1:2] == ":" and path.startswith(prefix + ":")


def expected_diff(before: Mapping[str, Any], after: Mapping[str, Any], *,
                  previous_policies: Collection[str], current_policies: Collection[str],
                  unreadable: Collection[str] = ()) -> Expected:
    """What a (non-first) scan finding ``after`` must report against the state ``before``."""
    out = Expected()
    was_active, is_active = set(previous_policies), set(current_policies)
    for entity_id in sorted(set(before) | set(after)):
        prev, cur = before.get(entity_id), after.get(entity_id)
        if prev is not None and cur is not None:
            if (isinstance(cur, FileEntity) and cur.sha256 is None and entity_id in unreadable
                    and cur.type == prev.type):
                cur = replace(cur, sha256=prev.sha256)
            _, compared, _ = _kind(cur)
            dirs = isinstance(cur, FileEntity) and prev.type == cur.type == "directory"
            fields = tuple(f for f in compared if getattr(prev, f) != getattr(cur, f)
                           and not (dirs and f in DIRECTORY_NOT_COMPARED))
            if fields:
                out.events.append(_event("modified", cur, fields, prev, cur))
            out.state[entity_id] = cur
        elif cur is not None:
            if was_active & set(cur.policies):
                out.events.append(_event("added", cur, (), None, cur))
            else:
                out.quiet_added += 1
            out.state[entity_id] = cur
        elif prev is not None:
            if any(within(entity_id, u) for u in unreadable):
                out.kept_unreadable += 1
                out.state[entity_id] = prev
                continue
            out.deletes.append(entity_id)
            if is_active & set(prev.policies):
                out.events.append(_event("removed", prev, (), prev, None))
            else:
                out.quiet_dropped += 1
    out.events.sort(key=event_key)
    return out


def event_key(event: Event) -> tuple[Any, ...]:
    """A total order on events (entity type, path, value name, then the rest)."""
    kind, category, path, value_name, *_ = event
    return kind, path, value_name is not None, value_name or "", category, repr(event)
