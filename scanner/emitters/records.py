"""Change events as records with ConfigurationChange-style field names, and value rendering.

``FieldsChanged`` and the value keys use the vocabulary of Azure's ConfigurationChange /
MDCFileIntegrityMonitoringEvents tables where one exists (FileSystemPath, Size/PreviousSize,
FileContentChecksum/PreviousFileContentChecksum, Acls/PreviousAcls, DateModified, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

FIELD_NAMES: dict[str, str] = {
    "type": "FileType",
    "size": "Size",
    "mode": "Mode",
    "uid": "OwnerId",
    "gid": "GroupId",
    "link_target": "LinkTarget",
    "sha256": "FileContentChecksum",
    "acl": "Acls",
    "capability": "Capabilities",
    "xattrs": "ExtendedAttributes",
    "mtime": "DateModified",
    "ctime": "DateChanged",
    "crtime": "DateCreated",
    "atime": "DateAccessed",
    "inode": "Inode",
    "nlink": "LinkCount",
    "attributes": "FileAttributes",
}
# Registry keys and values; a value's content change (its SHA-256) is "ValueData".
REGISTRY_FIELD_NAMES: dict[str, str] = {
    "type": "ValueType",
    "size": "ValueSize",
    "preview": "ValueData",
    "sha256": "ValueDataChecksum",
    "acl": "Acls",
    "last_write": "DateModified",
    "subkey_count": "SubkeyCount",
    "value_count": "ValueCount",
}
_REGISTRY_CHANGED_NAMES = {**REGISTRY_FIELD_NAMES, "sha256": "ValueData"}
# Software, Windows services and Linux daemons (change tracking): ConfigChangeType and names.
CHANGE_TYPES = {"file": "Files", "registry": "Registry", "software": "Software",
                "service": "WindowsServices", "daemon": "Daemons"}
INVENTORY_FIELD_NAMES: dict[str, str] = {
    "version": "Version", "architecture": "Architecture", "digest": "Checksum",
    "detail": "Detail", "source": "Source",
}
_NAME_FIELDS = {"software": "SoftwareName", "service": "SvcName", "daemon": "SvcName"}
TIME_FIELDS = frozenset({"mtime", "ctime", "crtime", "atime", "last_write"})


def ns_to_iso(value: int | None) -> str | None:
    """Integer nanoseconds since the epoch as ISO 8601 UTC with nanoseconds kept."""
    if value is None:
        return None
    seconds, nanos = divmod(value, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z" if nanos else f"{stamp}Z"


def render_value(field: str, value: Any) -> Any:
    """A stored value as people and SIEMs read it (times ISO 8601, modes octal)."""
    if value is None:
        return None
    if field in TIME_FIELDS:
        return ns_to_iso(int(value))
    if field == "mode":
        return f"{int(value):04o}"
    return value


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def event_record(row: dict[str, Any]) -> dict[str, Any]:
    """One stored change event (a row of ``Repository.changes``) as a ConfigurationChange record."""
    kind = row["entity_type"]
    is_file = kind == "file"
    names = (FIELD_NAMES if is_file else REGISTRY_FIELD_NAMES if kind == "registry"
             else INVENTORY_FIELD_NAMES)
    changed_names = (FIELD_NAMES if is_file else _REGISTRY_CHANGED_NAMES
                     if kind == "registry" else INVENTORY_FIELD_NAMES)
    record: dict[str, Any] = {
        "TimeGenerated": _iso(row["detected_at"]),
        "Computer": row["machine"],
        "ConfigChangeType": CHANGE_TYPES.get(kind, kind),
        "ChangeCategory": row["category"].capitalize(),
    }
    if is_file:
        record["FileSystemPath"] = row["path"]
        if row.get("package_verdict") is not None:
            record["Package"] = row.get("package")
            record["PackageVerdict"] = row["package_verdict"]
        if row.get("content_diff") is not None:
            record["ContentDiff"] = row["content_diff"]
    elif kind in _NAME_FIELDS:
        state = row.get("current") or row.get("previous") or {}
        record[_NAME_FIELDS[kind]] = state.get("name")
        record["InventoryId"] = row["path"]
        if row.get("package_verdict") is not None:
            record["PackageVerdict"] = row["package_verdict"]
    else:
        record["RegistryKey"] = row["path"]
        record["ValueName"] = row.get("value_name")
    record |= {
        "FieldsChanged": [changed_names.get(f, f) for f in row["fields_changed"] or ()],
        "MonitoredEntities": list(row["policies"] or ()),
        "ScanId": row["scan_id"],
        "PreviousScanId": row["previous_scan_id"],
        "WindowStart": _iso(row["window_start"]),
        "WindowEnd": _iso(row["window_end"]),
    }
    current, previous = row.get("current") or {}, row.get("previous") or {}
    for field, name in names.items():
        if field in current:
            record[name] = render_value(field, current[field])
        if field in previous:
            record["Previous" + name] = render_value(field, previous[field])
    return record


def change_lines(row: dict[str, Any]) -> list[str]:
    """What changed, one ``field: before -> after`` line per changed field."""
    lines = []
    state = row.get("current") or row.get("previous") or {}
    if row.get("package_verdict") is not None:
        owner = f"{row['package']}: " if row.get("package") else ""
        lines.append(f"package: {owner}{row['package_verdict']}")
    if not row["fields_changed"] and row["entity_type"] in _NAME_FIELDS:
        lines.append(f"{state.get('source')}: {state.get('name')} "
                     f"{state.get('version') or ''} {state.get('architecture') or ''}".rstrip())
    if not row["fields_changed"] and row["entity_type"] == "registry" and "type" in state:
        lines.append(f"{state['type']}: {_text(state.get('preview'))}")  # an added/removed value
    for field in row["fields_changed"] or ():
        before = render_value(field, (row["previous"] or {}).get(field))
        after = render_value(field, (row["current"] or {}).get(field))
        lines.append(f"{field}: {_text(before)} -> {_text(after)}")
        if field == "sha256" and row["entity_type"] == "registry":  # show the data itself
            before = (row["previous"] or {}).get("preview")
            after = (row["current"] or {}).get("preview")
            lines.append(f"data: {_text(before)!s} -> {_text(after)!s}")
    return lines


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "{}"
    return str(value)
