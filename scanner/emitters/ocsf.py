"""Change events as OCSF 1.1.0 events: File System Activity (1001) and, for registry rows, the
Windows extension's Registry Key Activity (201001) and Registry Value Activity (201002).

Mapping (checked against the OCSF 1.1.0 schema and its Windows extension ``win`` 1.1.0):

- ``file`` is the target of the activity: the current state for ``added``, the last known
  state for ``removed`` and the state *before* the change for ``modified``, whose state after
  goes in ``file_result`` ("the result of the file change"; 1001 has no ``prev_file``).
  Registry rows use ``reg_key`` / ``reg_value`` with ``prev_reg_key`` / ``prev_reg_value``.
- OCSF timestamps are integer milliseconds; stored nanoseconds are floor-divided.
- What OCSF 1.1.0 has no attribute for (gid, mode, capability, link target, nlink, ctime as
  ``changed_time``) goes in ``unmapped`` for the newest known state, and in
  ``unmapped.previous`` for the state before a modification.
- ``actor`` (required by all three classes, which extend ``system``) is the scanner itself:
  ``actor.process`` named ``snapfim`` whose ``uid`` is the scan that observed the change
  (``snapfim-scan-<id>``; the version is in ``metadata.product.version``). OCSF 1.1.0's actor
  has no ``app_name`` (added in a later version) and needs one of process / user / invoked_by
  / session. Nothing is said about who changed the file: a snapshot diff cannot tell.
- ``severity_id`` is 3 (Medium) when a change grants privilege to a program: a set-uid or
  set-gid bit newly set on a regular file, or a file capability added or changed; else 1.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from scanner import __version__
from scanner.changetracking.ocsf import INVENTORY_KINDS, inventory_record

OCSF_VERSION = "1.1.0"
WIN_EXTENSION = {"name": "win", "uid": "2", "version": "1.1.0"}
FILE_ACTIVITY, REG_KEY_ACTIVITY, REG_VALUE_ACTIVITY = 1001, 201001, 201002
CLASS_NAMES = {FILE_ACTIVITY: "File System Activity", REG_KEY_ACTIVITY: "Registry Key Activity",
               REG_VALUE_ACTIVITY: "Registry Value Activity"}
# category -> (activity_id, activity_name) per class
ACTIVITIES: dict[int, dict[str, tuple[int, str]]] = {
    FILE_ACTIVITY: {"added": (1, "Create"), "modified": (3, "Update"), "removed": (4, "Delete")},
    REG_KEY_ACTIVITY: {"added": (1, "Create"), "modified": (3, "Modify"),
                       "removed": (4, "Delete")},
    REG_VALUE_ACTIVITY: {"added": (2, "Set"), "modified": (3, "Modify"),
                         "removed": (4, "Delete")},
}
FILE_TYPE_IDS = {"file": (1, "Regular File"), "directory": (2, "Folder"),
                 "char_device": (3, "Character Device"), "block_device": (4, "Block Device"),
                 "socket": (5, "Local Socket"), "fifo": (6, "Named Pipe"),
                 "symlink": (7, "Symbolic Link")}
SEVERITIES = {1: "Informational", 3: "Medium"}
SHA256 = {"algorithm_id": 3, "algorithm": "SHA-256"}
# OCSF reg_value.type_id by Windows REG_* name; Windows type constants 0..11 in order.
REG_TYPE_IDS = {"REG_BINARY": 1, "REG_DWORD": 2, "REG_DWORD_BIG_ENDIAN": 3, "REG_EXPAND_SZ": 4,
                "REG_LINK": 5, "REG_MULTI_SZ": 6, "REG_NONE": 7, "REG_QWORD": 8,
                "REG_QWORD_LITTLE_ENDIAN": 9, "REG_SZ": 10}
WIN_REG_TYPES = ("REG_NONE", "REG_SZ", "REG_EXPAND_SZ", "REG_BINARY", "REG_DWORD",
                 "REG_DWORD_BIG_ENDIAN", "REG_LINK", "REG_MULTI_SZ", "REG_RESOURCE_LIST",
                 "REG_FULL_RESOURCE_DESCRIPTOR", "REG_RESOURCE_REQUIREMENTS_LIST", "REG_QWORD")
# python-registry's value_type_str() spellings
PY_REGISTRY_TYPES = {"RegNone": "REG_NONE", "RegSZ": "REG_SZ", "RegExpandSZ": "REG_EXPAND_SZ",
                     "RegBin": "REG_BINARY", "RegDWord": "REG_DWORD",
                     "RegBigEndian": "REG_DWORD_BIG_ENDIAN", "RegLink": "REG_LINK",
                     "RegMultiSZ": "REG_MULTI_SZ", "RegQWord": "REG_QWORD",
                     "RegResourceList": "REG_RESOURCE_LIST",
                     "RegFullResourceDescriptor": "REG_FULL_RESOURCE_DESCRIPTOR",
                     "RegResourceRequirementsList": "REG_RESOURCE_REQUIREMENTS_LIST"}
DATA_PREVIEW_CHARS = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SETID = stat.S_ISUID | stat.S_ISGID


def ns_to_ms(value: int | None) -> int | None:
    """Integer nanoseconds since the epoch as integer milliseconds (floor, no float)."""
    return None if value is None else int(value) // 1_000_000


def datetime_to_ms(value: datetime | None) -> int | None:
    """An aware datetime as integer milliseconds since the epoch (floor, no float)."""
    return None if value is None else (value - _EPOCH) // timedelta(milliseconds=1)


def severity_id(row: dict[str, Any]) -> int:
    """The OCSF severity of a stored change event (3 when it grants privilege, else 1)."""
    if row["entity_type"] != "file":
        return 1
    return _severity(row.get("previous") or None, row.get("current") or None)


def scanner_actor(scan_id: int | None) -> dict[str, Any]:
    """The OCSF ``actor`` of a record snapfim produced: the scanner's run, never a guess at
    who changed the file (a snapshot diff cannot know)."""
    process: dict[str, Any] = {"name": "snapfim"}
    process["uid"] = "snapfim" if scan_id is None else f"snapfim-scan-{scan_id}"
    return {"process": process}


def ocsf_record(row: dict[str, Any]) -> dict[str, Any]:
    """One stored change event (a row of ``Repository.changes``) as an OCSF 1.1.0 event.

    Raises:
        ValueError: a category other than added / removed / modified, or an unknown
            entity type.
    """
    category, entity = row["category"], row["entity_type"]
    if entity in INVENTORY_KINDS:  # software, services, daemons (change tracking)
        return inventory_record(row, {
            "metadata": {"version": OCSF_VERSION, "uid": str(row["id"]), "product": {
                "name": "snapfim", "vendor_name": "snapfim", "version": __version__}},
            "time": datetime_to_ms(row["detected_at"]),
            "start_time": datetime_to_ms(row.get("window_start")),
            "end_time": datetime_to_ms(row.get("window_end")),
            "device": {"hostname": row["machine"], "type_id": 0, "type": "Unknown"},
            "actor": scanner_actor(row.get("scan_id"))})
    if entity == "file":
        class_uid = FILE_ACTIVITY
    elif entity == "registry":
        class_uid = REG_KEY_ACTIVITY if row.get("value_name") is None else REG_VALUE_ACTIVITY
    else:
        raise ValueError(f"unknown entity type {entity!r}")
    if category not in ACTIVITIES[class_uid]:
        raise ValueError(f"unknown change category {category!r}: "
                         "expected added, removed or modified")
    activity_id, activity_name = ACTIVITIES[class_uid][category]
    previous, current = row.get("previous") or None, row.get("current") or None
    severity_id = _severity(previous, current) if class_uid == FILE_ACTIVITY else 1
    fields = list(row.get("fields_changed") or ())
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION, "uid": str(row["id"]),
        "product": {"name": "snapfim", "vendor_name": "snapfim", "version": __version__}}
    event: dict[str, Any] = {
        "class_uid": class_uid, "class_name": CLASS_NAMES[class_uid],
        "category_uid": 1, "category_name": "System Activity",
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{CLASS_NAMES[class_uid]}: {activity_name}",
        "severity_id": severity_id, "severity": SEVERITIES[severity_id],
        "time": datetime_to_ms(row["detected_at"]),
        "start_time": datetime_to_ms(row.get("window_start")),
        "end_time": datetime_to_ms(row.get("window_end")),
        "message": _message(entity, category, row, fields),
        "metadata": metadata,
        "device": {"hostname": row["machine"], "type_id": 0, "type": "Unknown"},
        "actor": scanner_actor(row.get("scan_id")),
    }
    unmapped: dict[str, Any] = {
        "fields_changed": fields, "policies": list(row.get("policies") or ()),
        "scan_id": row.get("scan_id"), "previous_scan_id": row.get("previous_scan_id"),
        "package": row.get("package"), "package_verdict": row.get("package_verdict")}
    newest = current if current is not None else previous or {}
    before = previous if current is not None else None      # only for a modification
    if class_uid == FILE_ACTIVITY:
        # The target of the activity is the file before the change; file_result is after it.
        event["file"] = _file(row["path"], before if before is not None else newest)
        if before is not None:
            event["file_result"] = _file(row["path"], newest)
        extras = _file_extras
    else:
        metadata["extensions"] = [dict(WIN_EXTENSION)]
        is_key = class_uid == REG_KEY_ACTIVITY
        name, prev_name = ("reg_key", "prev_reg_key") if is_key else ("reg_value", "prev_reg_value")
        event[name] = _reg_key(row, newest) if is_key else _reg_value(row, newest)
        if before is not None:
            event[prev_name] = _reg_key(row, before) if is_key else _reg_value(row, before)
        extras = _reg_key_extras if is_key else _reg_value_extras
    unmapped.update(extras(newest))
    if before is not None and extras(before):
        unmapped["previous"] = extras(before)
    event["unmapped"] = _compact(unmapped)
    return _compact(event)


def ocsf_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Stored event rows as compact OCSF JSON, one event per string (no newline)."""
    for row in rows:
        yield json.dumps(ocsf_record(row), separators=(",", ":"))


def _file(path: str, values: dict[str, Any]) -> dict[str, Any]:
    """The OCSF ``file`` object of one recorded state of ``path``."""
    parent, _, name = path.rstrip("/").rpartition("/")
    type_id, type_name = FILE_TYPE_IDS.get(values.get("type") or "", (99, "Other"))
    sha256 = values.get("sha256")
    uid, inode = values.get("uid"), values.get("inode")
    return _compact({
        "path": path, "name": name or path, "parent_folder": (parent or "/") if name else None,
        "type_id": type_id, "type": type_name, "size": values.get("size"),
        "uid": None if inode is None else str(inode),
        "owner": None if uid is None else {"uid": str(uid)},
        "hashes": [{**SHA256, "value": sha256}] if sha256 else None,
        "modified_time": ns_to_ms(values.get("mtime")),
        "created_time": ns_to_ms(values.get("crtime")),
        "accessed_time": ns_to_ms(values.get("atime")),
        "security_descriptor": values.get("acl"),
        "xattributes": values.get("xattrs") or None,
    })


def _file_extras(values: dict[str, Any]) -> dict[str, Any]:
    """File fields OCSF 1.1.0 has no attribute for."""
    mode = values.get("mode")
    return _compact({"mode": None if mode is None else f"{int(mode):04o}",
                     "gid": values.get("gid"), "nlink": values.get("nlink"),
                     "link_target": values.get("link_target"),
                     "capability": values.get("capability"),
                     "changed_time": ns_to_ms(values.get("ctime"))})


def _severity(previous: dict[str, Any] | None, current: dict[str, Any] | None) -> int:
    """3 (Medium) when set-id bits or a file capability are newly granted, else 1."""
    if current is None:
        return 1
    before = previous or {}
    new_setid = int(current.get("mode") or 0) & _SETID & ~int(before.get("mode") or 0)
    if new_setid and current.get("type") == "file":
        return 3
    capability = current.get("capability")
    if capability and capability != "=" and capability != before.get("capability"):
        return 3
    return 1


def _reg_type(value: Any) -> tuple[str | None, int | None]:
    """A stored registry value type (REG_* name, python-registry name or Windows number)."""
    if value is None:
        return None, None
    if isinstance(value, int):
        name = WIN_REG_TYPES[value] if 0 <= value < len(WIN_REG_TYPES) else str(value)
    else:
        name = PY_REGISTRY_TYPES.get(str(value), str(value))
    return name, REG_TYPE_IDS.get(name, 99)


def _preview(data: Any) -> tuple[Any, bool]:
    """Registry data bounded to about DATA_PREVIEW_CHARS characters; True when cut."""
    if data is None or isinstance(data, bool | int | float):
        return data, False
    if isinstance(data, str):
        return data[:DATA_PREVIEW_CHARS], len(data) > DATA_PREVIEW_CHARS
    if isinstance(data, list) and all(isinstance(item, str) for item in data):
        kept: list[str] = []
        used = 0
        for item in data:
            if used + len(item) > DATA_PREVIEW_CHARS:
                return kept, True
            kept.append(item)
            used += len(item)
        return kept, False
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return (text[:DATA_PREVIEW_CHARS], True) if len(text) > DATA_PREVIEW_CHARS else (data, False)


def _reg_key(row: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The win extension's ``reg_key`` object of one recorded key state."""
    return _compact({"path": row["path"], "modified_time": ns_to_ms(values.get("last_write")),
                     "security_descriptor": values.get("acl")})


def _reg_value(row: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The ``reg_value`` object; its time is its key's last write (values have none)."""
    type_name, type_id = _reg_type(values.get("type"))
    name = row["value_name"]
    return _compact({"path": row["path"], "name": name, "is_default": True if name == "" else None,
                     "type": type_name, "type_id": type_id,
                     "data": _preview(values.get("preview"))[0],
                     "modified_time": ns_to_ms(values.get("last_write"))})


def _reg_key_extras(values: dict[str, Any]) -> dict[str, Any]:
    """Registry key fields reg_key has no attribute for."""
    return _compact({"subkey_count": values.get("subkey_count"),
                     "value_count": values.get("value_count")})


def _reg_value_extras(values: dict[str, Any]) -> dict[str, Any]:
    """Registry value fields reg_value has no attribute for; whether its data was cut."""
    cut = _preview(values.get("preview"))[1]
    return _compact({"size": values.get("size"), "sha256": values.get("sha256"),
                     "acl": values.get("acl"), "data_truncated": True if cut else None})


def _message(entity: str, category: str, row: dict[str, Any], fields: list[str]) -> str:
    """One line for people: what changed where, and which fields."""
    what = row["path"] if row.get("value_name") is None else f"{row['path']}\\{row['value_name']}"
    kind = "file" if entity == "file" else (
        "registry key" if row.get("value_name") is None else "registry value")
    return f"{kind} {category}: {what}" + (f" ({', '.join(fields)})" if fields else "")


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """The dict without its None values (OCSF leaves absent attributes out)."""
    return {k: v for k, v in values.items() if v is not None}
